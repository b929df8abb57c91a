#!/bin/sh
# pixi-pack-ext self-extracting environment: run it (sh environment.sh -h), do not source it.
# The pack (a tar) and its unpacker follow this header as raw bytes at the offsets below. The
# unpacker's bytes from PIXI_PACK_UNPACKER_CHECK_OFFSET on are checked against
# PIXI_PACK_UNPACKER_SHA256 before it runs (the bundled unpacker checks the compiled libraries in
# front of that itself, before it loads them). Before anything is installed, the bundled unpacker
# checks the pack against PIXI_PACK_ARCHIVE_SKELETON_SHA256 (the tar less its conda packages' bodies;
# each package is checked against the pack's repodata.json, which that covers), an embedded
# executable's pack is checked against PIXI_PACK_ARCHIVE_SHA256 (the whole tar) by this script.
# pixi-pack.json: @METADATA@
PIXI_PACK_HEADER_SIZE=@HEADER_SIZE@
PIXI_PACK_UNPACKER_OFFSET=@UNPACKER_OFFSET@
PIXI_PACK_UNPACKER_SIZE=@UNPACKER_SIZE@
PIXI_PACK_UNPACKER_CHECK_OFFSET=@UNPACKER_CHECK_OFFSET@
PIXI_PACK_ARCHIVE_OFFSET=@ARCHIVE_OFFSET@
PIXI_PACK_ARCHIVE_SIZE=@ARCHIVE_SIZE@
PIXI_PACK_UNPACKER_SHA256=@UNPACKER_SHA256@
PIXI_PACK_ARCHIVE_SHA256=@ARCHIVE_SHA256@
PIXI_PACK_ARCHIVE_SKELETON_SHA256=@ARCHIVE_SKELETON_SHA256@
PIXI_PACK_UNPACKER=@UNPACKER_KIND@
PIXI_PACK_PLATFORM=@PLATFORM@
PIXI_PACK_ENVIRONMENTS=@ENVIRONMENTS@
PIXI_PACK_FILE_SIZE=@FILE_SIZE@
PIXI_PACK_MANIFEST_OFFSET=@MANIFEST_OFFSET@
PIXI_PACK_MANIFEST_SIZE=@MANIFEST_SIZE@
PIXI_PACK_SIGNATURE_OFFSET=@SIGNATURE_OFFSET@
PIXI_PACK_SIGNATURE_SIZE=@SIGNATURE_SIZE@

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
    what="Install the packed $PIXI_PACK_PLATFORM environment (like pixi-unpack on the pack's tar)."
    choices=
    if [ -n "$PIXI_PACK_ENVIRONMENTS" ]; then
        what="Install one or all of the packed $PIXI_PACK_PLATFORM environments (like pixi-unpack on the pack's tar):
$(printf '%s' "$PIXI_PACK_ENVIRONMENTS" | sed 's/,/, /g')."
        choices="
  --environment NAME          Install this environment of the pack (required unless --all)
  --all                       Install each environment into a folder of its name (activation script: activate-NAME)"
    fi
    cat <<EOF
Usage: $name [OPTIONS]

$what

Options:$choices
  -o, --output-directory DIR  Folder that receives the environment and the activation script [default: .]
  -e, --env-name NAME         Name of the environment folder [default: env]
  -s, --shell SHELL           Shell of the activation script: bash, zsh, fish, xonsh, powershell, cmd, nushell
  --force                     Replace an existing environment folder and activation script
  --ignore-virtual-packages   Install even if the host lacks glibc/cuda/... versions
  -k, --trusted-key PUB       Only install if the pack is signed by this OpenSSH public key (repeatable;
                              checked with ssh-keygen before anything in this file runs)
  --compile-bytecode          Compile the PyPI wheels' bytecode (runs the packed python)
  -v, --verbose / -q, --quiet More / less output
  -h, --help                  Show this message and exit

Environment: TMPDIR (where temporary files go), PIXI_UNPACK_PYTHON (the python3 to use),
PIXI_UNPACK_CACHE_DIR (where the unpacker keeps its libraries between runs; empty: nowhere).
EOF
}

quiet=0
signed=0
for arg in "$@"; do
    case $arg in
        -h | --help) usage; exit 0 ;;
        -q | --quiet) quiet=1 ;;
        -k | --trusted-key | --trusted-key=*) signed=1 ;;
    esac
done

# Sourced, $0 is the shell, not this file: refuse instead of reading a wrong file.
[ -f "$self" ] || die "cannot read '$self'; run this script (sh path/to/$name), do not source it"
# (The shell reads the two lines itself: `sed -n 2p` read the whole file to print one line.)
{ IFS= read -r line && IFS= read -r line; } <"$self" 2>/dev/null || line=
case $line in
    *'pixi-pack-ext self-extracting'*) ;;
    *) die "run this script (sh path/to/$name), do not source it" ;;
esac

host_platform() {
    case "$(uname -sm 2>/dev/null)" in
        "Linux x86_64") echo linux-64 ;;
        "Linux aarch64" | "Linux arm64") echo linux-aarch64 ;;
        "Linux ppc64le") echo linux-ppc64le ;;
        "Linux s390x") echo linux-s390x ;;
        "Darwin x86_64") echo osx-64 ;;
        "Darwin arm64") echo osx-arm64 ;;
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

# A run stopped by SIGKILL (kill -9, the OOM killer) cannot remove its temporary folder, which holds
# the unpacker's libraries or a copy of the pack. Each folder has an owner file, a line "pid
# pid-namespace" per process working in it; the next run removes this user's folders whose
# processes are all gone. Another namespace's folder (a container sharing TMPDIR), a running one
# or one without an owner file yet is left alone; so is every folder when this system has pid
# namespaces but no readlink to tell which one this is.
tmp_root=${TMPDIR:-/tmp}
namespace=
if [ -e /proc/self/ns/pid ]; then
    namespace=$(readlink /proc/self/ns/pid 2>/dev/null) || namespace=unknown
fi
abandoned() {
    [ "$namespace" != unknown ] && [ -d "$1" ] && [ ! -h "$1" ] && [ -O "$1" ] && [ -f "$1/owner.pid" ] \
        || return 1
    owners=0
    while read -r pid owner_namespace; do
        case $pid in '' | 0* | *[!0-9]*) return 1 ;; esac
        [ "$owner_namespace" = "$namespace" ] || return 1
        kill -0 "$pid" 2>/dev/null && return 1
        owners=$((owners + 1))
    done <"$1/owner.pid"
    [ "$owners" -gt 0 ]
}
for old in "$tmp_root"/pixi-unpack.*; do
    abandoned "$old" && rm -rf "$old"
done
tmp=$(mktemp -d "$tmp_root/pixi-unpack.XXXXXX" 2>/dev/null) || {
    tmp=$tmp_root/pixi-unpack.$$
    mkdir -m 700 "$tmp" 2>/dev/null || die "cannot create a temporary folder in $tmp_root (set TMPDIR)"
}
cleanup() {
    rm -rf "$tmp"
}
trap cleanup EXIT
printf '%s %s\n' "$$" "$namespace" >"$tmp/owner.pid" || die "cannot write in $tmp (disk full?)"
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# The sha256 of standard input, with whatever tool this host has.
sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum | awk '{print $1}'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 | awk '{print $1}'
    elif command -v sha256 >/dev/null 2>&1; then
        sha256 | awk '{print $NF}'
    elif command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha256 | awk '{print $NF}'
    elif python=$(command -v python3 || command -v python); then
        "$python" -c '
import hashlib, sys
h = hashlib.sha256()
stdin = getattr(sys.stdin, "buffer", sys.stdin)
for block in iter(lambda: stdin.read(1 << 20), b""):
    h.update(block)
print(h.hexdigest())'
    else
        return 1
    fi
}
# With -k/--trusted-key, the pack's manifest (the tar's first member) must carry an sshsig by one of
# the given keys, checked by this host's ssh-keygen before anything from the payload runs. The
# signed manifest records the sha256 the unpacker is checked against below, and the sha256 of the
# manifest goes to the unpacker, which checks every file of the pack against it.
if [ "$signed" = 1 ]; then
    allowed=$tmp/allowed_signers
    : >"$allowed"
    want_key=0
    for arg in "$@"; do
        key=
        if [ "$want_key" = 1 ]; then
            key=$arg
            want_key=0
        else
            case $arg in
                -k | --trusted-key) want_key=1 ;;
                --trusted-key=*) key=${arg#--trusted-key=} ;;
            esac
        fi
        [ -n "$key" ] || continue
        [ -f "$key" ] || die "trusted key '$key' does not exist; give an OpenSSH public key file (.pub)"
        { printf 'pixi-pack namespaces="pixi-pack" '; head -n 1 "$key"; } >>"$allowed"
    done
    [ "$want_key" = 0 ] || die "-k/--trusted-key needs a public key file"
    [ "$PIXI_PACK_SIGNATURE_SIZE" -gt 0 ] 2>/dev/null \
        || die "the pack is not signed; refusing it because a trusted key was given (nothing was run or installed)"
    command -v ssh-keygen >/dev/null 2>&1 \
        || die "checking the signature (-k) needs ssh-keygen (OpenSSH 8.1 or newer) on this machine; install it or check the pack with 'pixi-pack verify' elsewhere"
    tail -c +$((PIXI_PACK_MANIFEST_OFFSET + 1)) "$self" | head -c "$PIXI_PACK_MANIFEST_SIZE" >"$tmp/manifest.json"
    tail -c +$((PIXI_PACK_SIGNATURE_OFFSET + 1)) "$self" | head -c "$PIXI_PACK_SIGNATURE_SIZE" >"$tmp/manifest.json.sig"
    found=$(ssh-keygen -Y verify -f "$allowed" -I pixi-pack -n pixi-pack -s "$tmp/manifest.json.sig" \
        <"$tmp/manifest.json" 2>&1) \
        || die "the pack's signature does not verify with the trusted key(s): $(printf '%s' "$found" | tail -n 1); nothing was run or installed"
    say "${found%% with *} ($(printf '%s' "$found" | sed -n 's/.* key //p'))"
    grep -F -q "\"unpacker-sha256\":\"$PIXI_PACK_UNPACKER_SHA256\"" "$tmp/manifest.json" \
        || die "the signed manifest does not cover this file's unpacker; nothing was run or installed"
    PIXI_UNPACK_MANIFEST_SHA256=$(sha256_of <"$tmp/manifest.json") \
        || die "no sha256 tool found (sha256sum, shasum, sha256 or openssl); cannot check '$self'"
    export PIXI_UNPACK_MANIFEST_SHA256
    # The bundled unpacker checks the pack against that sha256 (the keys were used here); an
    # embedded executable gets the keys too, and one that does not know them refuses to run.
    if [ "$PIXI_PACK_UNPACKER" = python ]; then
        for arg in "$@"; do
            shift
            if [ "$want_key" = 1 ]; then want_key=0; continue; fi
            case $arg in
                -k | --trusted-key) want_key=1; continue ;;
                --trusted-key=*) continue ;;
            esac
            set -- "$@" "$arg"
        done
    fi
fi

# The bundled unpacker, a zipapp ending this file, needs Python >= 3.10 (an older candidate exits 86
# at once and the next is tried). One Python process checks the unpacker's sha256 and runs it in
# place; the unpacker checks the pack itself while it reads it.
# Python runs with -S: the unpacker imports nothing from the host's site-packages, whose .pth
# files would only cost start-up time.
bootstrap='
import sys
if sys.version_info < (3, 10):
    sys.exit(86)
import hashlib, mmap, os, runpy
name, path, tmp, expected = sys.argv[1:5]
offset, end = map(int, sys.argv[5:7])
hasher = hashlib.sha256()
with open(path, "rb") as source:
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        while start < end:
            length = min(end - start, 1 << 25)
            with mmap.mmap(source.fileno(), length, offset=start, access=mmap.ACCESS_READ) as window:
                with memoryview(window)[max(offset - start, 0):] as view:
                    hasher.update(view)
            start += length
    except OSError:
        hasher = hashlib.sha256()
        source.seek(offset)
        hasher.update(source.read(end - offset))
actual = hasher.hexdigest()
if actual != expected:
    sys.stderr.write("%s: error: \x27%s\x27 is corrupt (unpacker sha256 %s, expected %s); "
                     "nothing was installed\n" % (name, path, actual, expected))
    sys.exit(1)
with open(os.path.join(tmp, "owner.pid"), "r+") as owner:  # this process works in the folder too
    namespace = owner.readline().rstrip("\n").partition(" ")[2]  # as the shell sees it
    owner.seek(0, 2)
    owner.write("%d %s\n" % (os.getpid(), namespace))
os.environ["PIXI_UNPACK_LIB_DIR"] = os.path.join(tmp, "lib")
sys.argv = [path] + sys.argv[7:] + [path]
runpy.run_path(path, run_name="__main__")
'

if [ "$PIXI_PACK_UNPACKER" = python ]; then
    for candidate in ${PIXI_UNPACK_PYTHON:-python3 python}; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        "$candidate" -S -c "$bootstrap" "$name" "$self" "$tmp" "$PIXI_PACK_UNPACKER_SHA256" \
            "$PIXI_PACK_UNPACKER_CHECK_OFFSET" "$((PIXI_PACK_UNPACKER_OFFSET + PIXI_PACK_UNPACKER_SIZE))" "$@"
        status=$?
        [ "$status" = 86 ] || exit "$status"
    done
    die "unpacking needs python3 >= 3.10 on PATH (or PIXI_UNPACK_PYTHON=/path/to/python3); none was found"
fi

# An embedded executable (--pixi-unpack-source): the shell checks both parts itself.

: | sha256_of >/dev/null \
    || die "no sha256 tool found (sha256sum, shasum, sha256, openssl or python3); cannot verify '$self'"

# Copy LENGTH bytes at OFFSET (a multiple of 4096) of this file to stdout with POSIX dd only.
copy_range() {
    blocks=$(($2 / 4096))
    rest=$(($2 % 4096))
    dd if="$self" bs=4096 skip=$(($1 / 4096)) count=$blocks 2>/dev/null || return 1
    if [ "$rest" -gt 0 ]; then
        dd if="$self" bs=1 skip=$(($1 + blocks * 4096)) count=$rest 2>/dev/null || return 1
    fi
}

say "checking the sha256 of $name ..."
unpacker=$tmp/pixi-unpack
tail -c +$((PIXI_PACK_UNPACKER_OFFSET + 1)) "$self" >"$unpacker" \
    && [ "$(wc -c <"$unpacker" | tr -d ' ')" = "$PIXI_PACK_UNPACKER_SIZE" ] \
    || die "could not extract the unpacker into $tmp (disk full?)"
actual_sha256=$(tail -c +$((PIXI_PACK_UNPACKER_CHECK_OFFSET - PIXI_PACK_UNPACKER_OFFSET + 1)) "$unpacker" | sha256_of)
[ "$actual_sha256" = "$PIXI_PACK_UNPACKER_SHA256" ] \
    || die "'$self' is corrupt (unpacker sha256 $actual_sha256, expected $PIXI_PACK_UNPACKER_SHA256); nothing was installed"

# The pack is copied out and hashed in one read.
actual_sha256=$(copy_range "$PIXI_PACK_ARCHIVE_OFFSET" "$PIXI_PACK_ARCHIVE_SIZE" | tee "$tmp/environment.tar" | sha256_of)
[ "$(wc -c <"$tmp/environment.tar" | tr -d ' ')" = "$PIXI_PACK_ARCHIVE_SIZE" ] \
    || die "could not extract the pack into $tmp (disk full?)"
[ "$actual_sha256" = "$PIXI_PACK_ARCHIVE_SHA256" ] \
    || die "'$self' is corrupt (archive sha256 $actual_sha256, expected $PIXI_PACK_ARCHIVE_SHA256); nothing was installed"

chmod +x "$unpacker"
"$unpacker" "$@" "$tmp/environment.tar"
exit $?
