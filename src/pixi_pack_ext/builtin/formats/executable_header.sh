#!/bin/sh
# pixi-pack-ext self-extracting environment: run it (sh environment.sh -h), do not source it.
# The pack and its unpacker follow this header as raw bytes at the offsets below; the whole
# payload is checked against PIXI_PACK_SHA256 before anything is installed.
# pixi-pack.json: @METADATA@
PIXI_PACK_HEADER_SIZE=@HEADER_SIZE@
PIXI_PACK_UNPACKER_OFFSET=@UNPACKER_OFFSET@
PIXI_PACK_UNPACKER_SIZE=@UNPACKER_SIZE@
PIXI_PACK_ARCHIVE_OFFSET=@ARCHIVE_OFFSET@
PIXI_PACK_ARCHIVE_SIZE=@ARCHIVE_SIZE@
PIXI_PACK_SHA256=@SHA256@
PIXI_PACK_UNPACKER=@UNPACKER_KIND@
PIXI_PACK_PLATFORM=@PLATFORM@
PIXI_PACK_FILE_SIZE=@FILE_SIZE@

set -u
self=$0
name=${0##*/}

die() {
    printf '%s: error: %s\n' "$name" "$*" >&2
    exit 1
}

say() {
    [ "$quiet" = 1 ] || printf '%s\n' "$*" >&2
}

usage() {
    cat <<EOF
Usage: $name [OPTIONS]

Install the packed $PIXI_PACK_PLATFORM environment (like pixi-unpack on the pack's tar).

Options:
  -o, --output-directory DIR  Folder that receives the environment and the activation script [default: .]
  -e, --env-name NAME         Name of the environment folder [default: env]
  -s, --shell SHELL           Shell of the activation script: bash, zsh, fish, xonsh, powershell, cmd, nushell
  --force                     Replace an existing, non-empty environment folder
  --ignore-virtual-packages   Install even if the host lacks glibc/cuda/... versions
  -v, --verbose / -q, --quiet More / less output
  -h, --help                  Show this message and exit

Environment: TMPDIR (where temporary files go), PIXI_UNPACK_PYTHON (the python3 to use).
EOF
}

quiet=0
for arg in "$@"; do
    case $arg in
        -h | --help) usage; exit 0 ;;
        -q | --quiet) quiet=1 ;;
    esac
done

# Sourced, $0 is the shell, not this file: refuse instead of reading a wrong file.
[ -f "$self" ] || die "cannot read '$self'; run this script (sh path/to/$name), do not source it"
sed -n 2p "$self" | grep 'pixi-pack-ext self-extracting' >/dev/null 2>&1 \
    || die "run this script (sh path/to/$name), do not source it"

host_platform() {
    case "$(uname -s 2>/dev/null)-$(uname -m 2>/dev/null)" in
        Linux-x86_64) echo linux-64 ;;
        Linux-aarch64 | Linux-arm64) echo linux-aarch64 ;;
        Linux-ppc64le) echo linux-ppc64le ;;
        Linux-s390x) echo linux-s390x ;;
        Darwin-x86_64) echo osx-64 ;;
        Darwin-arm64) echo osx-arm64 ;;
        *) echo unknown ;;
    esac
}
host=$(host_platform)
if [ "$host" != unknown ] && [ "$host" != "$PIXI_PACK_PLATFORM" ]; then
    die "this pack was made for $PIXI_PACK_PLATFORM but this machine is $host; make a pack for this machine with 'pixi-pack -p $host'"
fi

expected_size=$PIXI_PACK_FILE_SIZE
actual_size=$(wc -c <"$self" | tr -d ' ')
[ "$actual_size" = "$expected_size" ] \
    || die "'$self' has $actual_size bytes where $expected_size were written: it is truncated or damaged; copy it again"

find_python() {
    for candidate in ${PIXI_UNPACK_PYTHON:-python3 python}; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

python=
if [ "$PIXI_PACK_UNPACKER" = python ]; then
    python=$(find_python) \
        || die "unpacking needs python3 >= 3.10 on PATH (or PIXI_UNPACK_PYTHON=/path/to/python3); none was found"
fi

# The sha256 of every byte after the header, with whatever tool this host has.
payload_sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        tail -c +$((PIXI_PACK_HEADER_SIZE + 1)) "$self" | sha256sum | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        tail -c +$((PIXI_PACK_HEADER_SIZE + 1)) "$self" | shasum -a 256 | awk '{print $1}'
    elif command -v sha256 >/dev/null 2>&1; then
        tail -c +$((PIXI_PACK_HEADER_SIZE + 1)) "$self" | sha256 | awk '{print $NF}'
    elif command -v openssl >/dev/null 2>&1; then
        tail -c +$((PIXI_PACK_HEADER_SIZE + 1)) "$self" | openssl dgst -sha256 | awk '{print $NF}'
    elif [ -n "$python" ]; then
        tail -c +$((PIXI_PACK_HEADER_SIZE + 1)) "$self" | "$python" -c '
import hashlib, sys
h = hashlib.sha256()
for block in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
    h.update(block)
print(h.hexdigest())'
    else
        return 1
    fi
}

say "checking the sha256 of $name ..."
actual_sha256=$(payload_sha256) \
    || die "no sha256 tool found (sha256sum, shasum, sha256, openssl or python3); cannot verify '$self'"
[ "$actual_sha256" = "$PIXI_PACK_SHA256" ] \
    || die "'$self' is corrupt (payload sha256 $actual_sha256, expected $PIXI_PACK_SHA256); nothing was installed"

tmp_root=${TMPDIR:-/tmp}
tmp=$(mktemp -d "$tmp_root/pixi-unpack.XXXXXX" 2>/dev/null) || {
    tmp=$tmp_root/pixi-unpack.$$
    mkdir -m 700 "$tmp" 2>/dev/null || die "cannot create a temporary folder in $tmp_root (set TMPDIR)"
}
cleanup() {
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Copy LENGTH bytes at OFFSET (a multiple of 4096) of this file to stdout with POSIX dd only.
copy_range() {
    blocks=$(($2 / 4096))
    rest=$(($2 % 4096))
    dd if="$self" bs=4096 skip=$(($1 / 4096)) count=$blocks 2>/dev/null || return 1
    if [ "$rest" -gt 0 ]; then
        dd if="$self" bs=1 skip=$(($1 + blocks * 4096)) count=$rest 2>/dev/null || return 1
    fi
}

unpacker=$tmp/pixi-unpack
copy_range "$PIXI_PACK_UNPACKER_OFFSET" "$PIXI_PACK_UNPACKER_SIZE" >"$unpacker" \
    && [ "$(wc -c <"$unpacker" | tr -d ' ')" = "$PIXI_PACK_UNPACKER_SIZE" ] \
    || die "could not extract the unpacker into $tmp (disk full?)"

if [ "$PIXI_PACK_UNPACKER" = python ]; then
    # The unpacker reads the pack straight from this file (no copy) and checks the sha256 again.
    PIXI_UNPACK_LIB_DIR=$tmp/lib "$python" "$unpacker" "$@" "$self"
    status=$?
else
    chmod +x "$unpacker"
    tail -c +$((PIXI_PACK_ARCHIVE_OFFSET + 1)) "$self" >"$tmp/environment.tar" \
        && [ "$(wc -c <"$tmp/environment.tar" | tr -d ' ')" = "$PIXI_PACK_ARCHIVE_SIZE" ] \
        || die "could not extract the pack into $tmp (disk full?)"
    "$unpacker" "$@" "$tmp/environment.tar"
    status=$?
fi
exit $status
