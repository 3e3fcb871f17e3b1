"""Record classes for the tests (not a test module): importable by name from
every interpreter and child process the tests start, as records require."""
import collections
import dataclasses
import enum
import typing

INIT_CALLS = []          # __init__ / __post_init__ of the classes below append here


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int
    label: str = ""

    def __post_init__(self):
        INIT_CALLS.append(("Point", self.x))


@dataclasses.dataclass(frozen=True, slots=True)
class Slotted:
    a: object
    b: object = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class KwOnly:
    name: str
    tags: tuple = ()
    derived: int = dataclasses.field(init=False, default=0)

    def __post_init__(self):
        object.__setattr__(self, "derived", len(self.name))
        INIT_CALLS.append(("KwOnly", self.name))


@dataclasses.dataclass(frozen=True)
class Node:
    """A record that can take part in a cycle (children is a list)."""
    name: str
    children: list = dataclasses.field(default_factory=list, compare=False, hash=False)


@dataclasses.dataclass
class Mutable:
    x: int


@dataclasses.dataclass(frozen=True)
class Token:
    id: int
    text: str
    rank: int
    score: float
    flags: int
    lang: str
    kind: str


Pair = collections.namedtuple("Pair", "left right")


class Row(typing.NamedTuple):
    id: int
    name: str = "?"


class PairSub(Pair):      # a named tuple subclass with a __dict__: refused
    pass


class Color(enum.Enum):
    RED = 1
    GREEN = "green"
    BLUE = (1, 2)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    READ = "r"
    WRITE = "w"


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


class Bits(enum.IntFlag):
    A = 1
    B = 2


class Frozen:
    """Immutable by contract: __slots__ and a __setattr__ that refuses."""
    __slots__ = ("key", "value")

    def __init__(self, key, value):
        INIT_CALLS.append(("Frozen", key))
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "value", value)

    def __setattr__(self, name, value):
        raise AttributeError("Frozen is immutable")

    def __eq__(self, other):
        return type(other) is Frozen and (self.key, self.value) == (other.key, other.value)

    def __hash__(self):
        return hash((self.key, self.value))


class Plain:
    """A class with a __dict__ and no contract: freeze refuses it (unless registered)."""

    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return type(other) is Plain and other.__dict__ == self.__dict__


def local_class():
    @dataclasses.dataclass(frozen=True)
    class Local:
        x: int
    return Local
