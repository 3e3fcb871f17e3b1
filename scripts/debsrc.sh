# debsrc.sh -- sourced by setup.sh and ft-python.sh: fetch one orig tarball of
# a Debian source package, checked against its SHA-256.
#
#   debsrc_fetch SUITE PACKAGE FILE SHA256 DEST
#
# A private apt configuration (its own sources file and lists dir, in a
# temporary directory) names SUITE's deb-src, so the system's sources are
# never touched and Debian 12 gets a trixie tarball the same way as 13 does.
# Only the orig tarball matters: the mirror's source pool is patchy
# (PLATFORM.md), so `apt-get source --download-only` may exit non-zero after
# fetching it; the file and its hash decide. Returns 0 when DEST holds FILE
# with SHA256 (fetched now or already there), 1 otherwise.

debsrc_sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

debsrc_fetch() {
    local suite=$1 pkg=$2 file=$3 sha=$4 dest=$5 tmp rc=1
    debsrc_sha_ok "$dest" "$sha" && return 0
    command -v apt-get >/dev/null || return 1
    tmp=$(mktemp -d) || return 1
    mkdir -p "$tmp/lists/partial" "$(dirname "$dest")"
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$suite" > "$tmp/src.sources"
    local opt=(-o "Dir::Etc::SourceList=$tmp/src.sources" -o Dir::Etc::SourceParts=/dev/null
               -o "Dir::State::Lists=$tmp/lists" -o Acquire::Check-Valid-Until=false -q)
    apt-get "${opt[@]}" update >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get "${opt[@]}" source --download-only "$pkg" >/dev/null 2>&1) || true
    if debsrc_sha_ok "$tmp/$file" "$sha"; then cp "$tmp/$file" "$dest.part" && mv "$dest.part" "$dest" && rc=0; fi
    rm -rf "$tmp"
    return $rc
}
