#!/usr/bin/env bash
# sid-root.sh -- a minimal Debian unstable (sid) root for building and testing
# against Python 3.14 and 3.15, which only sid ships (PLATFORM.md, "Python
# 3.14 and 3.15 ... through a Debian unstable root").
#
#   bash scripts/sid-root.sh [ensure]   create the root, or reuse it if its stamp matches
#   bash scripts/sid-root.sh run [--bind HOST:INNER[:ro]]... [--env NAME=VALUE]... -- CMD [ARG...]
#                                       ensure, mount, run CMD inside with chroot, unmount;
#                                       exits with CMD's exit code
#   bash scripts/sid-root.sh shell      an interactive shell inside (same mounts as run)
#   bash scripts/sid-root.sh status     print the stamp and what is mounted
#   bash scripts/sid-root.sh umount     unmount everything under the root (after a crash)
#   bash scripts/sid-root.sh remove     unmount and delete the root
#
# Environment: FS_SID_ROOT          where the root lives (default /var/tmp/frozenshare-sid;
#                                   outside the repository: 725 MiB fresh, ~1.6 GiB once
#                                   setup.sh has added clang, venvs and build-sid)
#              FS_SID_MIRROR        Debian mirror URL (default: the first mirror of the host's
#                                   apt sources that serves sid)
#              FS_SID_MAX_AGE_DAYS  recreate a root older than this; 0 = never (default 30)
#              FS_SID_REFRESH=1     recreate unconditionally
#
# Reuse: the root carries a stamp, written last, holding the spec below (suite,
# architecture, mirror, package set, SPEC version). A root without a stamp, with a
# different spec, or too old is rebuilt. The new root is bootstrapped into
# <root>.partial and renamed into place only when complete, so an interrupted run
# leaves at most a partial directory, which the next run deletes. Creation and
# every run hold an exclusive flock on <root>.lock: concurrent runs wait.
# Nothing is ever deleted while something is still mounted below it.
# Needs root (debootstrap, mount, chroot).
set -euo pipefail
SPEC=1                                   # bump when anything below changes the root's content
SUITE=sid
# Required packages (the brief's set; rsync lets test-in-root.sh copy the source in).
PKGS_REQUIRED=(python3.14-dev python3.15-dev gcc make cmake libcriterion-dev bzip2
               ca-certificates rsync)
# Wanted but dropped, with a warning, when sid does not have them (the -venv
# packages provide ensurepip; setup.sh installs them on demand otherwise).
PKGS_OPTIONAL=(python3.14-venv python3.15-venv)
R=${FS_SID_ROOT:-/var/tmp/frozenshare-sid}
say() { printf '[sid-root] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot)"
case $R in /*) ;; *) die "FS_SID_ROOT must be an absolute path: $R" ;; esac
case $R in *[[:space:]]*) die "FS_SID_ROOT must not contain white space: $R" ;; esac
R=$(realpath -m -- "$R")
[ "$R" != / ] || die "FS_SID_ROOT must not be /"
STAMP=$R/.frozenshare-sid-root
PARTIAL=$R.partial
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)

# ---- mounts --------------------------------------------------------------------
mounts_under() {   # mount points at or below $1, deepest first (findmnt -r escapes blanks)
    findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1' | sort -r
}
umount_under() {   # unmount everything at or below $1; fail if anything stays mounted
    local d=$1 m i
    for i in 1 2 3 4 5; do
        [ -n "$(mounts_under "$d")" ] || return 0
        while read -r m; do
            [ -n "$m" ] || continue
            umount "$m" 2>/dev/null || { say "busy, detaching lazily: $m"; umount -l "$m" 2>/dev/null || true; }
        done < <(mounts_under "$d")
    done
    [ -z "$(mounts_under "$d")" ] || { say "still mounted under $d:"; mounts_under "$d" >&2; return 1; }
}
foreign() {        # $R holds something that is neither empty nor a Debian root
    [ -d "$R" ] && [ ! -f "$STAMP" ] && [ ! -f "$R/etc/debian_version" ] && [ -n "$(ls -A "$R" 2>/dev/null)" ]
}
safe_rm() {        # delete a root (or a partial one) only after everything below it is unmounted
    local d=$1
    [ -e "$d" ] || return 0
    case $d in "$R"|"$PARTIAL") ;; *) die "refusing to delete $d" ;; esac
    umount_under "$d" || die "not deleting $d: something is still mounted below it"
    [ "$d" != "$R" ] || ! foreign || die "$R exists but is not a root made by this script; move it away or set FS_SID_ROOT"
    rm -rf --one-file-system -- "$d"
}

# ---- the host's Debian mirror ----------------------------------------------------
host_mirrors() {   # "deb" URIs of the host's apt sources (deb822 and one-line), not -security
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'function flush() {
                 if (deb && enabled && suites !~ /-security/) {
                     n = split(uris, u, /[ \t]+/); for (i = 1; i <= n; i++) if (u[i] != "") print u[i]
                 }
                 deb = 0; uris = ""; suites = ""; enabled = 1
             }
             BEGIN { enabled = 1 }
             /^[ \t]*$/ { flush(); next }
             /^[ \t]*#/ { next }
             tolower($1) == "types:"   { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
             tolower($1) == "uris:"    { uris = substr($0, index($0, ":") + 1) }
             tolower($1) == "suites:"  { suites = $0 }
             tolower($1) == "enabled:" && tolower($2) == "no" { enabled = 0 }
             END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" { i = 2
                 if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                 if ($(i + 1) !~ /-security/) print $i }' "$f"
    done
}
url_ok() {         # HEAD request; without wget or curl, assume the URL works
    if command -v wget >/dev/null; then wget -q -T 20 --spider "$1"
    elif command -v curl >/dev/null; then curl -fsI -m 20 -o /dev/null "$1"
    else return 0; fi
}
url_get() {        # url, file
    if command -v wget >/dev/null; then wget -q -T 60 -O "$2" "$1"
    else curl -fsS -m 120 -o "$2" "$1"; fi
}
pick_mirror() {    # the existing root's mirror if the host still lists it (no network needed
    local u old       # to reuse a root), else the first host mirror that serves dists/sid
    if [ -n "${FS_SID_MIRROR:-}" ]; then echo "${FS_SID_MIRROR%/}"; return; fi
    old=$(sed -n 's/^mirror=//p' "$STAMP" 2>/dev/null || true)
    if [ -n "$old" ] && host_mirrors | sed 's:/*$::' | grep -qxF "$old"; then echo "$old"; return; fi
    while read -r u; do
        u=${u%/}
        case $u in http://*|https://*) ;; *) continue ;; esac
        if url_ok "$u/dists/$SUITE/InRelease"; then echo "$u"; return; fi
    done < <(host_mirrors | awk '!seen[$0]++')
    return 1
}

# ---- spec, stamp ------------------------------------------------------------------
spec_text() {      # what the root is made from; a stamp with other text means rebuild
    printf 'spec=%s\nsuite=%s\narch=%s\nmirror=%s\nrequired=%s\noptional=%s\n' \
        "$SPEC" "$SUITE" "$ARCH" "$1" "${PKGS_REQUIRED[*]}" "${PKGS_OPTIONAL[*]}"
}
stamp_reason() {   # empty when the root at $R can be reused as is
    [ -d "$R" ] || { echo "no root yet"; return; }
    [ -f "$STAMP" ] || { echo "no stamp (partial or foreign root)"; return; }
    [ "${FS_SID_REFRESH:-0}" != 1 ] || { echo "FS_SID_REFRESH=1"; return; }
    [ "$(grep -v '^#' "$STAMP")" = "$(spec_text "$1")" ] || { echo "spec changed"; return; }
    local created max=${FS_SID_MAX_AGE_DAYS:-30}
    created=$(sed -n 's/^# created-epoch=//p' "$STAMP")
    if [ "$max" -gt 0 ] && [ $(( $(date +%s) - ${created:-0} )) -gt $(( max * 86400 )) ]; then
        echo "older than $max days"; return
    fi
    local p
    for p in /usr/bin/python3.14 /usr/bin/python3.15 /usr/bin/gcc /usr/bin/cmake; do
        [ -x "$R$p" ] || { echo "$p missing"; return; }
    done
}

# ---- creation ---------------------------------------------------------------------
check_packages() { # prints the --include list; drops missing optional packages
    local mirror=$1 tmp p missing=() have
    tmp=$(mktemp -d)
    local base="$mirror/dists/$SUITE/main/binary-$ARCH/Packages"
    if command -v xz >/dev/null && url_get "$base.xz" "$tmp/P.xz"; then
        xz -dc "$tmp/P.xz" >"$tmp/P"
    elif url_get "$base.gz" "$tmp/P.gz"; then
        gzip -dc "$tmp/P.gz" >"$tmp/P"
    else
        rm -rf "$tmp"; die "cannot fetch $base.{xz,gz}"
    fi
    have=$(awk '$1 == "Package:" { print $2 }' "$tmp/P" | sort -u)
    rm -rf "$tmp"
    local inc=()
    for p in "${PKGS_REQUIRED[@]}"; do
        grep -qxF "$p" <<<"$have" && inc+=("$p") || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] || die "not in $SUITE at $mirror: ${missing[*]}"
    for p in "${PKGS_OPTIONAL[@]}"; do
        if grep -qxF "$p" <<<"$have"; then inc+=("$p"); else say "warning: $p is not in $SUITE; leaving it out"; fi
    done
    (IFS=,; echo "${inc[*]}")
}
# shellcheck disable=SC2016  # dpkg-query formats are literal
create_root() {
    local mirror=$1 include t0 log=$R.debootstrap.log
    say "checking package names in $SUITE at $mirror"
    include=$(check_packages "$mirror")
    safe_rm "$PARTIAL"
    trap 'umount_under "$PARTIAL" || true' EXIT     # debootstrap mounts proc/sys in the target
    say "debootstrap --variant=minbase $SUITE into $PARTIAL (log: $log)"
    t0=$(date +%s)
    if ! debootstrap --variant=minbase --arch="$ARCH" --components=main \
            --include="$include" "$SUITE" "$PARTIAL" "$mirror" >"$log" 2>&1; then
        tail -n 25 "$log" >&2
        die "debootstrap failed; full log: $log (the partial root is deleted by the next run)"
    fi
    umount_under "$PARTIAL"
    # apt inside the root follows the host's choice about expired Release files (a mirror
    # that is a dated snapshot serves a Release whose Valid-Until has passed).
    local vu
    vu=$(apt-config dump Acquire::Check-Valid-Until 2>/dev/null | sed -n 's/^Acquire::Check-Valid-Until "\(.*\)";$/\1/p')
    {
        echo '// written by frozenshare scripts/sid-root.sh'
        echo 'APT::Install-Recommends "false";'
        [ -z "$vu" ] || echo "Acquire::Check-Valid-Until \"$vu\";"
    } >"$PARTIAL/etc/apt/apt.conf.d/99frozenshare"
    printf '#!/bin/sh\nexit 101\n' >"$PARTIAL/usr/sbin/policy-rc.d"   # no daemons in a chroot
    chmod 755 "$PARTIAL/usr/sbin/policy-rc.d"
    apt_clean "$PARTIAL"
    local secs=$(( $(date +%s) - t0 )) size
    size=$(du -sm --one-file-system "$PARTIAL" | cut -f1)
    {
        spec_text "$mirror"
        echo "# created-epoch=$(date +%s)"
        echo "# created=$(date -u +%FT%TZ) in ${secs}s, ${size} MiB"
        echo "# debootstrap=$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null)"
        echo "# included=$include"
        chroot "$PARTIAL" dpkg-query -W -f='# ${Package}=${Version}\n' \
            python3.14 python3.15 gcc cmake libcriterion-dev 2>/dev/null || true
    } >"$PARTIAL/.frozenshare-sid-root"
    safe_rm "$R"
    mv -T -- "$PARTIAL" "$R"
    trap - EXIT
    say "created $R in ${secs}s, ${size} MiB"
}
apt_clean() { rm -f "$1"/var/cache/apt/archives/*.deb; }

lock() {           # exclusive, for the rest of this process
    mkdir -p "$(dirname "$R")"
    exec 9>"$R.lock"
    flock -n 9 || { say "waiting for another user of $R ($R.lock)"; flock 9; }
}
ensure() {         # create or reuse; caller holds the lock
    local mirror reason
    mirror=$(pick_mirror) || die "no mirror serving $SUITE in the host's apt sources; set FS_SID_MIRROR"
    reason=$(stamp_reason "$mirror")
    if [ -z "$reason" ]; then
        say "reusing $R ($(sed -n 's/^# created=//p' "$STAMP"))"
        [ ! -e "$PARTIAL" ] || { say "deleting the leftover $PARTIAL"; safe_rm "$PARTIAL"; }
        return
    fi
    say "(re)creating $R: $reason"
    ! foreign || die "$R exists but is not a root made by this script; move it away or set FS_SID_ROOT"
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
    fi
    create_root "$mirror"
}

# ---- running inside -----------------------------------------------------------------
mount_at() {       # fstype-or-"bind"/"rbind", source, target[, ro]; the target must be free
    local kind=$1 src=$2 dst=$3 ro=${4:-}
    mkdir -p "$dst"
    ! mountpoint -q "$dst" || die "$dst is mounted already"
    case $kind in
        bind)  mount --bind "$src" "$dst"
               [ -z "$ro" ] || mount -o remount,bind,ro "$dst" ;;
        rbind) mount --rbind "$src" "$dst"; mount --make-rslave "$dst" ;;
        *)     mount -t "$kind" "$src" "$dst" ;;
    esac
}
run_inside() {     # [--bind H:I[:ro]]... [--env N=V]... [--] cmd...
    local binds=() envs=() b h i ro
    while [ $# -gt 0 ]; do
        case $1 in
            --bind) binds+=("$2"); shift 2 ;;
            --env)  envs+=("$2"); shift 2 ;;
            --)     shift; break ;;
            *)      break ;;
        esac
    done
    [ $# -gt 0 ] || die "run: no command"
    lock
    ensure
    # Mounts left by a run that was killed (its EXIT trap never ran) are stale: a bind
    # there may name another checkout or a deleted report directory, and mount_at
    # would refuse it. The lock is ours, so no live run owns them: start from none.
    if [ -n "$(mounts_under "$R")" ]; then
        say "unmounting what an interrupted run left under $R"
        umount_under "$R" || die "cannot unmount the leftovers under $R"
    fi
    trap 'umount_under "$R" || true' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mount_at proc proc "$R/proc"
    mount_at rbind /dev "$R/dev"               # /dev/null, urandom, shm (POSIX semaphores), pts
    for b in "${binds[@]}"; do
        IFS=: read -r h i ro <<<"$b"
        [ -d "$h" ] || die "--bind: $h is not a directory"
        mount_at bind "$h" "$R$i" "$ro"
    done
    # Network set-up follows the host: DNS for pip, and the host's CA bundle (the root's own
    # bundle does not know a TLS-inspecting proxy's CA, should the host sit behind one).
    rm -f "$R/etc/resolv.conf"; cp -L /etc/resolv.conf "$R/etc/resolv.conf"
    local ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}} cenv=()
    if [ -f "$ca" ]; then
        mkdir -p "$R/etc/frozenshare"; cp -L "$ca" "$R/etc/frozenshare/host-ca.crt"
        cenv=(PIP_CERT=/etc/frozenshare/host-ca.crt SSL_CERT_FILE=/etc/frozenshare/host-ca.crt
              REQUESTS_CA_BUNDLE=/etc/frozenshare/host-ca.crt)
    fi
    # A clean environment: host paths (PATH, pyenv, pip find-links) mean nothing inside.
    local penv=() v
    for v in CI TERM http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
             PIP_INDEX_URL PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK; do
        [ -z "${!v:-}" ] || penv+=("$v=${!v}")
    done
    local rc=0
    chroot "$R" /usr/bin/env -i HOME=/root LANG=C.UTF-8 FS_SID_HOST_ROOT="$R" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        "${penv[@]}" "${cenv[@]}" "${envs[@]}" "$@" || rc=$?
    umount_under "$R" || { [ $rc -ne 0 ] || rc=1; }
    trap - EXIT INT TERM
    return $rc
}

cmd=${1:-ensure}; [ $# -eq 0 ] || shift
case $cmd in
    ensure) lock; ensure; echo "$R" ;;
    run)    run_inside "$@" ;;
    shell)  run_inside -- /bin/bash -l ;;
    status)
        if [ -f "$STAMP" ]; then cat "$STAMP"; else say "no stamp at $STAMP"; fi
        mounts_under "$R" ;;
    umount) lock; umount_under "$R" ;;
    remove) lock; safe_rm "$PARTIAL"; safe_rm "$R"; rm -f "$R.debootstrap.log" "$R.lock"; say "removed $R" ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
