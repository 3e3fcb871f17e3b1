"""python -m frozenshare: look at image files.

    python -m frozenshare info FILE     what the image holds: format version,
                                        sizes, objects by kind, root, hash
                                        domain, checksum
    python -m frozenshare verify FILE   prove it well formed: exit 0, or 1
                                        with the defect named
    python -m frozenshare from-json IN [OUT]
                                        parse the JSON file IN straight into
                                        an image (fs.from_json) and write it
                                        to OUT (fs.dump); without OUT, print
                                        what the image would hold

info and verify check the file in full before trusting anything in it
(load's verify=True); info shows the header fields of the verified, mapped
image.
"""
import argparse
import mmap
import sys

import frozenshare as fs
from frozenshare import _frozenshare as _c


def _load(path):
    try:
        return fs.load(path)
    except fs.ImageError as e:
        print(f"{path}: {e}", file=sys.stderr)
    except OSError as e:
        print(f"{path}: {e.strerror or e}", file=sys.stderr)
    return None


def cmd_info(args):
    p = _load(args.file)
    if p is None:
        return 1
    _describe(p, args.file)
    return 0


def _describe(p, name):
    h = _c._image_summary(p)
    kinds = h["kinds"]
    root = type(p).__name__
    if hasattr(p, "__len__"):
        root += f" of {len(p)}"
    domain = {1: "process (this process's hash(): lookups elsewhere scan)",
              2: f"keyed (XXH3, seed {h['seed']:#018x})"}.get(h["hash_domain"], "?")
    checksum = f"xxh3 {h['checksum']:#018x}" if h["checksum_kind"] == 1 else "none"
    lines = [
        f"file:           {name}",
        f"format:         version {h['version']}, "
        f"{'little' if h['byte_order'] == 1 else 'big'}-endian, {h['word_size'] * 8}-bit",
        f"image bytes:    {h['image_size']}",
        f"objects:        {h['object_count']}"
        + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])) + ")"
           if kinds else ""),
        f"root:           {root}",
        f"hash domain:    {domain}",
        f"checksum:       {checksum}",
        f"imports:        {h['nimports']}",
    ]
    if h["record_classes"]:      # what load(..., classes=...) must name (stdlib values need not)
        lines.append("record classes: " + ", ".join(sorted(n.replace(":", ".", 1)
                                                          for n in h["record_classes"])))
    print("\n".join(lines))


def cmd_from_json(args):
    try:
        with open(args.input, "rb") as f:
            size = f.seek(0, 2)
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as e:
        print(f"{args.input}: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        value = fs.from_json(data)
    except ValueError as e:                       # json.JSONDecodeError, UnicodeDecodeError
        print(f"{args.input}: not JSON: {e}", file=sys.stderr)
        return 1
    if not fs.is_frozen(value):                   # a top-level scalar: no container
        value = fs.freeze(value)
    if args.output is None:
        _describe(value, f"{args.input} (as an image, not written)")
        return 0
    fs.dump(value, args.output)
    print(f"{args.output}: {fs.info(value)['image_bytes']} bytes from {size} bytes of JSON")
    return 0


def cmd_verify(args):
    p = _load(args.file)
    if p is None:
        return 1
    info = fs.info(p)
    print(f"{args.file}: ok ({info['image_bytes']} bytes, {info['object_count']} objects)")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m frozenshare",
                                 description="Look at frozenshare image files, or make one "
                                             "from JSON.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="what an image file holds",
                       description="Verify FILE, then print its format version, sizes, "
                                   "objects by kind, root, hash domain and checksum.")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(run=cmd_info)
    p = sub.add_parser("verify", help="prove an image file well formed",
                       description="Verify FILE in full: exit status 0 if it is a well-formed "
                                   "image, 1 (the defect named on stderr) if not.")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(run=cmd_verify)
    p = sub.add_parser("from-json", help="parse a JSON file into an image file",
                       description="Parse the JSON file IN straight into an image "
                                   "(fs.from_json) and write it to OUT; without OUT, "
                                   "print what the image holds.")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT", nargs="?")
    p.set_defaults(run=cmd_from_json)
    args = ap.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
