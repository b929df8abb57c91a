"""Self-extracting packs (``--create-executable``): run with ``sh`` alone, verified, cleaned up.

The scripts run with a PATH that lacks this virtualenv (no pixi-unpack, no pixi-pack-ext), so what
runs is what the file carries. The default embedded unpacker's wheels come from the user cache
(one download from the Python index, ever) or, offline, from this environment's installed packages.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
from conftest import gone_pid, needs_linux64, run
from hypothesis import given
from hypothesis import strategies as st

from pixi_pack_ext.selfextract.layout import PS1_TRAILER, escape, unescape
from pixi_pack_ext.selfextract.reader import PayloadReader, copy_unpacker, read_layout, skeleton_sha256
from pixi_pack_ext.selfextract.writer import _Escaper
from pixi_pack_ext.staging_owner import owner_line

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")
#: Tools a target without Python must have for a --pixi-unpack-source executable.
SHELL_TOOLS = (
    "sh",
    "tail",
    "dd",
    "tee",
    "wc",
    "tr",
    "awk",
    "sha256sum",
    "mktemp",
    "rm",
    "chmod",
    "uname",
    "cat",
)
#: All the bundled unpacker needs besides python3.
PYTHON_KIND_TOOLS = ("sh", "wc", "tr", "mktemp", "rm", "uname")


def _python_ok(python: str | None) -> bool:
    if python is None:
        return False
    check = subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info < (3, 10))"], check=False)
    return check.returncode == 0


needs_system_python = pytest.mark.skipif(
    not _python_ok(SYSTEM_PYTHON), reason="needs a python3 >= 3.10 outside the virtualenv (/usr/bin)"
)


def clean_env(tmp: Path, path: str = "/usr/bin:/bin") -> dict[str, str]:
    """An environment like a fresh target's: no virtualenv on PATH, its own TMPDIR."""
    tmpdir = tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    return {"PATH": path, "HOME": str(tmp), "TMPDIR": str(tmpdir), "LC_ALL": "C"}


def run_script(
    *args: str | os.PathLike[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


@pytest.fixture(scope="module")
def executable(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prod environment of the demo as environment.sh with the bundled pixi-unpack."""
    out = tmp_path_factory.mktemp("exe") / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable", "-o", out, timeout=600)
    return out


@needs_linux64
@needs_system_python
def test_environment_sh_installs_with_sh_and_system_python(executable: Path, tmp_path: Path) -> None:
    path = _restricted_path(tmp_path, PYTHON_KIND_TOOLS)  # a few shell tools and python3, nothing else
    os.symlink(str(SYSTEM_PYTHON), Path(path) / "python3")
    env = clean_env(tmp_path, path=path)
    result = run_script("sh", executable, "-o", tmp_path / "target", "-e", "demo", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    prefix = tmp_path / "target" / "demo"
    hello = subprocess.run([prefix / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == f"hello-bin prefix={prefix}"
    assert (tmp_path / "target" / "activate.sh").is_file()
    assert not list((tmp_path / "tmpdir").iterdir()), "temporary files were left behind"


@needs_linux64
@needs_system_python
def test_pixi_unpack_reads_the_executable_directly(executable: Path, tmp_path: Path) -> None:
    run("pixi-unpack", executable, "-o", tmp_path / "out", "-s", "zsh")
    prefix = tmp_path / "out" / "env"
    hello = subprocess.run([prefix / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == f"hello-bin prefix={prefix}"
    assert (tmp_path / "out" / "activate.zsh").is_file()


def test_help_installs_nothing(executable: Path, tmp_path: Path) -> None:
    result = run_script("sh", executable, "-h", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage: environment.sh [OPTIONS]" in result.stdout
    assert (
        "--output-directory" in result.stdout and "--env-name" in result.stdout and "--shell" in result.stdout
    )
    assert "--compile-bytecode" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpdir"]


@needs_linux64
@needs_system_python
def test_the_bundled_unpacker_takes_compile_bytecode(executable: Path, tmp_path: Path) -> None:
    """The option reaches the bundled pixi-unpack (the demo has no wheels: nothing is compiled)."""
    env = clean_env(tmp_path)
    result = run_script(
        "sh", executable, "-o", tmp_path / "target", "--compile-bytecode", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "target" / "env" / "conda-meta").is_dir()


def test_the_executable_is_executable_and_self_describing(executable: Path) -> None:
    assert os.access(executable, os.X_OK)
    layout = read_layout(executable)
    assert layout is not None
    assert layout.platform == "linux-64" and layout.unpacker == "python" and layout.script == "sh"
    # header | tar | zipapp: the zipapp ends the file, so Python imports it in place
    assert layout.header_size % 4096 == 0 and layout.archive_offset == layout.header_size
    assert layout.unpacker_offset == layout.archive_offset + layout.archive_size
    assert layout.unpacker_offset + layout.unpacker_size == layout.file_size == executable.stat().st_size
    assert '"platform": "linux-64"' in (layout.metadata or "")
    data = executable.read_bytes()
    archive = data[layout.archive_offset : layout.unpacker_offset]
    assert hashlib.sha256(archive).hexdigest() == layout.archive_sha256
    # the header checks the zipapp from its check offset on; the compiled libraries in front of it
    # are checked by the zipapp itself, against the sha256s of its bundle.json (in the checked part)
    assert layout.unpacker_offset < layout.unpacker_check_offset < layout.file_size
    assert hashlib.sha256(data[layout.unpacker_check_offset :]).hexdigest() == layout.unpacker_sha256
    bundle = zipfile.ZipFile(io.BytesIO(data[layout.unpacker_offset :]))
    libraries = json.loads(bundle.read("bundle.json"))["libraries"]
    assert libraries and all(hashlib.sha256(bundle.read(n)).hexdigest() == d for n, d in libraries.items())
    front = layout.unpacker_check_offset - layout.unpacker_offset
    assert all((i.header_offset < front) == (i.filename in libraries) for i in bundle.infolist()), (
        "the libraries, and only they, come before the check offset"
    )
    header = data[: layout.header_size]
    assert header.startswith(b"#!/bin/sh\n") and b"\r" not in header
    check = subprocess.run(["sh", "-n"], input=header, capture_output=True, check=False)
    assert check.returncode == 0, check.stderr


def _shells() -> list[list[str]]:
    shells = [["sh"], ["bash", "--posix"]]
    if shutil.which("busybox"):
        shells.append(["busybox", "sh"])
    if shutil.which("zsh"):
        shells.append(["zsh", "--emulate", "sh"])
    return shells


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
@pytest.mark.parametrize("where", ["archive", "library", "unpacker"])
@pytest.mark.parametrize("shell", _shells(), ids=lambda s: s[0])
def test_a_corrupt_byte_is_refused_before_anything_is_installed(
    executable: Path, tmp_path: Path, where: str, shell: list[str]
) -> None:
    layout = read_layout(executable)
    assert layout is not None
    broken = tmp_path / "environment.sh"
    shutil.copy(executable, broken)
    unpacker_end = layout.unpacker_offset + layout.unpacker_size
    offset = {
        "archive": layout.archive_offset + layout.archive_size // 2,
        "library": (layout.unpacker_offset + layout.unpacker_check_offset) // 2,  # py-rattler's
        "unpacker": (layout.unpacker_check_offset + unpacker_end) // 2,
    }[where]
    with open(broken, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    env = clean_env(tmp_path)
    result = run_script(*shell, broken, "-o", tmp_path / "target", env=env, cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "is corrupt" in errors[0] and "nothing was installed" in errors[0]
    assert not (tmp_path / "target").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
def test_a_truncated_file_is_refused(executable: Path, tmp_path: Path) -> None:
    broken = tmp_path / "environment.sh"
    with open(executable, "rb") as src, open(broken, "wb") as dst:
        dst.write(src.read(executable.stat().st_size - 1000))
    result = run_script("sh", broken, env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    assert "truncated or damaged" in result.stderr
    assert not (tmp_path / "env").exists()


@needs_linux64
@needs_system_python
def test_pixi_unpack_refuses_a_corrupt_executable_before_installing(executable: Path, tmp_path: Path) -> None:
    layout = read_layout(executable)
    assert layout is not None
    broken = tmp_path / "environment.sh"
    shutil.copy(executable, broken)
    with open(broken, "r+b") as f:  # flip a byte in the tar's padding: the tar itself still reads
        f.seek(layout.archive_offset + layout.archive_size - 10)
        f.write(b"\x01")
    result = run("pixi-unpack", broken, "-o", tmp_path / "out", check=False)
    assert result.returncode != 0
    assert b"is corrupt" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# -- --pixi-unpack-source ------------------------------------------------------------------------

STAND_IN = """#!/bin/sh
# Stands in for a static pixi-unpack: records its arguments and what the pack it got contains.
record="{record}"
printf '%s\\n' "$@" > "$record.args"
for last; do :; done
tar -tf "$last" > "$record.members"
exit 7
"""


def _restricted_path(tmp_path: Path, tools: tuple[str, ...] = SHELL_TOOLS) -> str:
    """A PATH holding only these shell tools (no python anywhere)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (*tools, "tar"):  # tar: for the stand-in unpacker only
        found = shutil.which(tool, path="/usr/bin:/bin")
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def _pack_with_stand_in(workspace: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(the stand-in pixi-unpack, environment.sh embedding it with --pixi-unpack-source)."""
    stand_in = tmp_path / "pixi-unpack"
    stand_in.write_text(STAND_IN.format(record=tmp_path / "record"))
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--pixi-unpack-source", stand_in, "-o", script)  # fmt: skip
    return stand_in, script


def _check_stand_in_run(script: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    env = clean_env(tmp_path, path=_restricted_path(tmp_path))
    result = run_script("sh", script, "-o", "somewhere", "-e", "named", "--force", env=env, cwd=tmp_path)
    assert result.returncode == 7, result.stderr  # the embedded executable's own exit status
    args = Path(f"{record}.args").read_text().splitlines()
    assert args[:5] == ["-o", "somewhere", "-e", "named", "--force"]
    assert len(args) == 6 and args[5].endswith("/environment.tar")
    assert args[5].startswith(str(tmp_path / "tmpdir"))
    members = Path(f"{record}.members").read_text().splitlines()
    assert "pixi-pack.json" in members and "environment.yml" in members
    assert not list((tmp_path / "tmpdir").iterdir()), "the extracted pack was left behind"


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
def test_pixi_unpack_source_local_path_needs_only_sh(workspace: Path, tmp_path: Path) -> None:
    stand_in, script = _pack_with_stand_in(workspace, tmp_path)
    layout = read_layout(script)
    assert layout is not None and layout.unpacker == "executable"
    assert layout.unpacker_size == stand_in.stat().st_size
    _check_stand_in_run(script, tmp_path)


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(served)))
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
def test_pixi_unpack_source_url(workspace: Path, tmp_path: Path, http_folder: tuple[Path, str]) -> None:
    served, url = http_folder
    (served / "pixi-unpack-x86_64-unknown-linux-musl").write_text(STAND_IN.format(record=tmp_path / "record"))
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--pixi-unpack-source", f"{url}/pixi-unpack-x86_64-unknown-linux-musl", "-o", script)  # fmt: skip
    _check_stand_in_run(script, tmp_path)


def test_pixi_unpack_source_errors_are_one_line_and_leave_nothing(
    workspace: Path, tmp_path: Path, http_folder: tuple[Path, str]
) -> None:
    _, url = http_folder
    out = tmp_path / "out"
    out.mkdir()
    for source, message in (
        (f"{url}/missing", b"HTTP 404"),
        (str(tmp_path / "nope"), b"is not a file"),
    ):
        result = run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
                     "--pixi-unpack-source", source, "-o", out / "environment.sh", check=False)  # fmt: skip
        assert result.returncode != 0
        assert message in result.stderr and b"Traceback" not in result.stderr
        assert list(out.iterdir()) == []


def test_executable_cannot_stream(workspace: Path, tmp_path: Path) -> None:
    result = run("pixi-pack", workspace, "-e", "prod", "--create-executable", "-o", "-", check=False)
    assert result.returncode != 0 and b"cannot write to standard output" in result.stderr
    assert result.stdout == b""


# -- environment.ps1 ------------------------------------------------------------------------------


def _decode_region(path: Path, offset: int, size: int) -> bytes:
    """A region of a self-extracting file as it was before storing (PowerShell payloads are escaped)."""
    layout = read_layout(path)
    assert layout is not None
    with open(path, "rb") as f:
        f.seek(offset)
        stored = f.read(size)
    return unescape(stored) if layout.escaped else stored


def test_ps1_layout_crlf_markers_offsets(workspace: Path, tmp_path: Path) -> None:
    fake = tmp_path / "pixi-unpack.exe"
    fake.write_bytes(b"MZ" + bytes(range(256)) * 64 + b"#>#~>##>" * 50)  # '#>' must not end the comment
    script = tmp_path / "environment.ps1"
    tar_file = tmp_path / "environment.tar"
    run("pixi-pack", workspace, "-e", "prod", "-p", "win-64", "--create-executable",
        "--pixi-unpack-source", fake, "-o", script)  # fmt: skip
    run("pixi-pack", workspace, "-e", "prod", "-p", "win-64", "-o", tar_file)
    data = script.read_bytes()
    layout = read_layout(script)
    assert layout is not None
    assert layout.script == "ps1" and layout.platform == "win-64" and layout.unpacker == "executable"
    assert layout.file_size == len(data)

    header = data[: layout.header_size]
    assert header.endswith(b"\r\n<#\r\n")
    assert b"\n" not in header.replace(b"\r\n", b"")  # CRLF line endings only
    assert b"$PIXI_PACK_ARCHIVE_OFFSET = %d\r\n" % layout.archive_offset in header
    assert b"$PIXI_PACK_UNPACKER_SHA256 = '%s'\r\n" % (layout.unpacker_sha256 or "").encode() in header
    assert b"$PIXI_PACK_ARCHIVE_SHA256 = '%s'\r\n" % layout.archive_sha256.encode() in header
    assert header.count(b"<#") == 1 and b"#>" not in header

    payload = data[layout.header_size : layout.file_size - len(PS1_TRAILER)]
    assert b"#>" not in payload  # the block comment holding the payload cannot end early
    assert data.endswith(PS1_TRAILER)
    assert layout.archive_offset == layout.header_size  # header | tar | CRLF | unpacker | trailer
    assert data[layout.unpacker_offset - 2 : layout.unpacker_offset] == b"\r\n"
    archive_end = layout.archive_offset + layout.archive_size
    assert hashlib.sha256(data[layout.archive_offset : archive_end]).hexdigest() == layout.archive_sha256
    unpacker_end = layout.unpacker_offset + layout.unpacker_size
    assert hashlib.sha256(data[layout.unpacker_offset : unpacker_end]).hexdigest() == layout.unpacker_sha256
    assert _decode_region(script, layout.unpacker_offset, layout.unpacker_size) == fake.read_bytes()
    assert _decode_region(script, layout.archive_offset, layout.archive_size) == tar_file.read_bytes()

    copied = tmp_path / "unpacker"
    copy_unpacker(script, layout, copied)
    assert copied.read_bytes() == fake.read_bytes()
    # The reader pixi-unpack uses gives the same tar, and checks the hash.
    with open(script, "rb") as f:
        reader = PayloadReader(f, script, layout)
        chunks = []
        while block := reader.read(7777):
            chunks.append(block)
        reader.verify()
    assert b"".join(chunks) == tar_file.read_bytes()


def test_ps1_with_the_bundled_unpacker_carries_windows_wheels(workspace: Path, tmp_path: Path) -> None:
    script = tmp_path / "environment.ps1"
    packed = run("pixi-pack", workspace, "-e", "prod", "-p", "win-64", "--create-executable", "-o", script,
                 timeout=600, check=False)  # fmt: skip
    if packed.returncode != 0 and b"could not get the wheels" in packed.stderr:
        pytest.skip("the Python index is not reachable and no win-64 wheels are cached")
    assert packed.returncode == 0, packed.stderr.decode()
    layout = read_layout(script)
    assert layout is not None and layout.unpacker == "python"
    bundle = zipfile.ZipFile(io.BytesIO(_decode_region(script, layout.unpacker_offset, layout.unpacker_size)))
    names = bundle.namelist()
    wheels = json.loads(bundle.read("bundle.json"))["wheels"]
    assert "__main__.py" in names and "lib/pixi_pack_ext/cli/unpack.py" in names
    assert any(w.startswith("py_rattler-") and w.endswith("win_amd64.whl") for w in wheels)
    assert any(n.startswith("native/rattler/") and n.endswith(".pyd") for n in names)
    assert "lib/tomli/__init__.py" in names  # Python 3.10 targets need it
    assert not any(n.startswith("lib/httpx/") or n.startswith("httpx-") for n in [*names, *wheels])
    assert not any("manylinux" in w for w in wheels)
    with tarfile.open(
        fileobj=io.BytesIO(_decode_region(script, layout.archive_offset, layout.archive_size))
    ) as tar:
        assert "pixi-pack.json" in tar.getnames()


# -- the escape codec -----------------------------------------------------------------------------


@given(st.binary(max_size=600).map(lambda b: b.replace(b"a", b"#").replace(b"b", b"~").replace(b"c", b">")))
def test_escape_round_trips_and_never_holds_the_comment_end(data: bytes) -> None:
    stored = escape(data)
    assert b"#>" not in stored
    assert unescape(stored) == data


@given(
    st.binary(max_size=400).map(lambda b: b.replace(b"a", b"#").replace(b"b", b"~").replace(b"c", b">")),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30),
)
def test_streaming_escape_matches_whole_escape(data: bytes, cuts: list[int]) -> None:
    out = io.BytesIO()
    escaper = _Escaper(out, hashlib.sha256())
    position = 0
    for cut in cuts:
        escaper.write(data[position : position + cut])
        position += cut
    escaper.write(data[position:])
    escaper.close()
    assert out.getvalue() == escape(data)


def test_zipapp_runs_on_its_own(executable: Path, tmp_path: Path) -> None:
    """The embedded unpacker is a plain zipapp: copied out, it is a standalone pixi-unpack."""
    if not _python_ok(SYSTEM_PYTHON):
        pytest.skip("needs a python3 >= 3.10 outside the virtualenv")
    layout = read_layout(executable)
    assert layout is not None
    pyz = tmp_path / "pixi-unpack.pyz"
    copy_unpacker(executable, layout, pyz)
    env = clean_env(tmp_path)
    result = run_script(str(SYSTEM_PYTHON), pyz, "--version", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pixi-unpack" in result.stdout
    assert not list((tmp_path / "tmpdir").iterdir())


def _pack_with_waiting_stand_in(workspace: Path, tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """``environment.sh`` whose embedded unpacker writes ``record.started``, then sleeps while the file
    ``hold`` exists and exits 7; the environment to run it with, and the folder its PATH names."""
    stand_in = tmp_path / "pixi-unpack"
    hold, record = tmp_path / "hold", tmp_path / "record"
    stand_in.write_text(f'#!/bin/sh\n: > "{record}.started"\n[ -e "{hold}" ] && sleep 120\nexit 7\n')
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--pixi-unpack-source", stand_in, "-o", script)  # fmt: skip
    path = _restricted_path(tmp_path)
    os.symlink(shutil.which("sleep", path="/usr/bin:/bin") or "sleep", Path(path) / "sleep")
    hold.touch()
    return script, clean_env(tmp_path, path=path), Path(path)


def _run_until_the_stand_in_waits(
    script: Path, env: dict[str, str], tmp_path: Path
) -> subprocess.Popen[bytes]:
    """Start ``script`` in a session of its own; return once its embedded unpacker is running."""
    started = tmp_path / "record.started"
    process = subprocess.Popen(["sh", str(script)], env=env, cwd=tmp_path, start_new_session=True)
    try:
        for _ in range(1200):  # up to a minute
            if started.exists() or process.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert started.exists(), "the embedded unpacker never started"
    except BaseException:
        _stop(process)
        raise
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
def test_ctrl_c_removes_the_temporary_files(workspace: Path, tmp_path: Path) -> None:
    script, env, _ = _pack_with_waiting_stand_in(workspace, tmp_path)
    process = _run_until_the_stand_in_waits(script, env, tmp_path)
    try:
        assert list((tmp_path / "tmpdir").iterdir()), "the pack should be extracted while it runs"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert process.wait(timeout=60) == 130
    finally:
        _stop(process)
    assert not list((tmp_path / "tmpdir").iterdir())


def _namespace() -> str:
    return owner_line().split(" ", 1)[1].strip()


@needs_linux64
def test_a_killed_run_leaves_its_folder_and_the_next_run_removes_only_abandoned_ones(
    workspace: Path, tmp_path: Path
) -> None:
    script, env, path = _pack_with_waiting_stand_in(workspace, tmp_path)
    # readlink tells the pid namespace; without it no folder is removed (checked at the end)
    os.symlink(shutil.which("readlink", path="/usr/bin:/bin") or "readlink", path / "readlink")
    tmpdir = tmp_path / "tmpdir"
    process = _run_until_the_stand_in_waits(script, env, tmp_path)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # kill -9: no trap runs
        process.wait(timeout=60)
    finally:
        _stop(process)
    (killed,) = tmpdir.iterdir()
    assert (killed / "environment.tar").is_file(), "the killed run's copy of the pack stays"
    assert (killed / "owner.pid").read_text() == f"{process.pid} {_namespace()}\n"

    sleeper = subprocess.Popen(["sleep", "120"])
    gone, live, namespace = gone_pid(), sleeper.pid, _namespace()
    kept = {
        "pixi-unpack.running": f"{live} {namespace}\n",
        "pixi-unpack.one-of-two-running": f"{gone} {namespace}\n{live} {namespace}\n",
        "pixi-unpack.other-namespace": f"{gone} pid:[1]\n",  # a container's: its pids mean nothing here
        "pixi-unpack.no-owner-yet": None,
    }
    try:
        for name, owner in kept.items():
            (tmpdir / name).mkdir()
            if owner is not None:
                (tmpdir / name / "owner.pid").write_text(owner)
        (tmpdir / "pixi-unpack.gone").mkdir()
        (tmpdir / "pixi-unpack.gone" / "owner.pid").write_text(f"{gone} {namespace}\n")
        (tmp_path / "hold").unlink()
        again = run_script("sh", script, env=env, cwd=tmp_path)
        assert again.returncode == 7, again.stderr  # the stand-in's own exit code
        assert sorted(p.name for p in tmpdir.iterdir()) == sorted(kept)

        (path / "readlink").unlink()  # the namespace is unknown now: no folder is removed
        (tmpdir / "pixi-unpack.gone").mkdir()
        (tmpdir / "pixi-unpack.gone" / "owner.pid").write_text(f"{gone} {namespace}\n")
        again = run_script("sh", script, env=env, cwd=tmp_path)
        assert again.returncode == 7, again.stderr
        assert sorted(p.name for p in tmpdir.iterdir()) == sorted([*kept, "pixi-unpack.gone"])
    finally:
        sleeper.kill()
        sleeper.wait()


@needs_linux64
@needs_system_python
def test_the_bundled_unpacker_names_itself_in_the_owner_file(executable: Path, tmp_path: Path) -> None:
    """A run that kills only the shell leaves Python working in the folder: it must stay."""
    env = clean_env(tmp_path)
    tmpdir = tmp_path / "tmpdir"
    process = subprocess.Popen(["sh", str(executable), "-o", str(tmp_path / "out"), "-q"], env=env,
                               cwd=tmp_path, stderr=subprocess.PIPE)  # fmt: skip
    owners: list[str] = []
    while process.poll() is None and len(owners) < 2:
        with contextlib.suppress(FileNotFoundError):  # the run may end between the glob and the read
            owners = [line for f in tmpdir.glob("*/owner.pid") for line in f.read_text().splitlines()]
        time.sleep(0.005)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert len(owners) == 2, "the shell's line and the Python unpacker's"
    assert owners[0].split(" ")[0] == str(process.pid) and owners[1].split(" ")[0] != owners[0].split(" ")[0]
    assert len({line.partition(" ")[2] for line in owners}) == 1
    assert not list(tmpdir.iterdir())


# -- where the bundled unpacker's wheels come from ------------------------------------------------


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No user cache and no reachable Python index: only a wheelhouse or this environment remain."""
    return {
        "XDG_CACHE_HOME": str(tmp_path / "empty-cache"),
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }


def _bundle_of(script: Path) -> zipfile.ZipFile:
    layout = read_layout(script)
    assert layout is not None and layout.unpacker == "python"
    return zipfile.ZipFile(io.BytesIO(_decode_region(script, layout.unpacker_offset, layout.unpacker_size)))


def test_wheelhouse_packs_offline(executable: Path, workspace: Path, tmp_path: Path) -> None:
    from pixi_pack_ext.selfextract.unpacker_wheels import cache_dir

    cached = cache_dir() / "wheels" / "linux-64"  # filled when the module's executable was made
    if not list(cached.glob("py_rattler-*.whl")):
        pytest.skip("no cached wheels: the Python index was not reachable when the executable was made")
    wheelhouse = tmp_path / "wheelhouse"
    shutil.copytree(cached, wheelhouse, ignore=shutil.ignore_patterns(".*"))
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--unpacker-wheelhouse", wheelhouse, "-o", script, env=_offline_env(tmp_path))  # fmt: skip
    wheels = set(json.loads(_bundle_of(script).read("bundle.json"))["wheels"])
    assert any(w.startswith("py_rattler-") for w in wheels) and wheels <= {
        p.name for p in wheelhouse.iterdir()
    }

    for wheel in wheelhouse.glob("py_rattler-*"):
        wheel.unlink()
    result = run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
                 "--unpacker-wheelhouse", wheelhouse, "-o", tmp_path / "again.sh",
                 env=_offline_env(tmp_path), check=False)  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode != 0 and "lacks wheels" in err and "Traceback" not in err
    assert not (tmp_path / "again.sh").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@needs_linux64
def test_offline_without_wheels_embeds_this_environment(workspace: Path, tmp_path: Path) -> None:
    script = tmp_path / "environment.sh"
    result = run("pixi-pack", workspace, "-e", "prod", "--create-executable", "-o", script,
                 env=_offline_env(tmp_path))  # fmt: skip
    python = sys.version_info[:2]
    assert b"embedding this environment's installed packages" in result.stderr
    bundle = _bundle_of(script)
    assert json.loads(bundle.read("bundle.json"))["python"] == list(python)
    assert "lib/rattler/__init__.py" in bundle.namelist()
    assert not any(n.startswith("lib/httpx/") for n in bundle.namelist())
    if not _python_ok(SYSTEM_PYTHON):
        return
    system = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if tuple(map(int, system.stdout.split())) < python:
        pytest.skip("the system python is older than this environment's")
    result2 = run_script("sh", script, "-o", tmp_path / "target", env=clean_env(tmp_path), cwd=tmp_path)
    assert result2.returncode == 0, result2.stderr
    prefix = tmp_path / "target" / "env"
    hello = subprocess.run([prefix / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == f"hello-bin prefix={prefix}"


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
@pytest.mark.parametrize("tool", ["sha256sum", "shasum", "openssl", None])
def test_the_payload_is_checked_with_whatever_sha256_tool_the_host_has(
    workspace: Path, tmp_path: Path, tool: str | None
) -> None:
    if tool is not None and shutil.which(tool, path="/usr/bin:/bin") is None:
        pytest.skip(f"{tool} is not installed here")
    stand_in = tmp_path / "pixi-unpack"
    stand_in.write_text(STAND_IN.format(record=tmp_path / "record"))
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--pixi-unpack-source", stand_in, "-o", script)  # fmt: skip
    tools = tuple(t for t in SHELL_TOOLS if t != "sha256sum") + ((tool,) if tool else ())
    env = clean_env(tmp_path, path=_restricted_path(tmp_path, tools))
    result = run_script("sh", script, env=env, cwd=tmp_path)
    if tool is None:
        assert result.returncode == 1 and "no sha256 tool found" in result.stderr
        assert not Path(f"{tmp_path / 'record'}.args").exists()
        return
    assert result.returncode == 7, result.stderr  # verified, then the stand-in ran
    layout = read_layout(script)
    assert layout is not None
    with open(script, "r+b") as f:
        f.seek(layout.archive_offset + 1000)
        byte = f.read(1)
        f.seek(layout.archive_offset + 1000)
        f.write(bytes([byte[0] ^ 0x80]))
    Path(f"{tmp_path / 'record'}.args").unlink()
    result = run_script("sh", script, env=env, cwd=tmp_path)
    assert result.returncode == 1 and "is corrupt" in result.stderr
    assert not Path(f"{tmp_path / 'record'}.args").exists()


@needs_linux64
@needs_system_python
def test_environment_sh_gives_what_pixi_unpack_gives_on_the_tar(
    executable: Path, workspace: Path, tmp_path: Path
) -> None:
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "environment.tar")
    run("pixi-unpack", tmp_path / "environment.tar", "-o", tmp_path / "tar-out", "-e", "app", "-s", "fish")
    result = run_script("sh", executable, "-o", tmp_path / "shs-out", "-e", "app", "-s", "fish",
                        env=clean_env(tmp_path), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr

    def listing(out: Path) -> dict[str, str]:
        files = {}
        for path in sorted(out.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                text = path.read_bytes().replace(str(out).encode(), b"OUT")
                files[path.relative_to(out).as_posix()] = hashlib.sha256(text).hexdigest()
        return files

    # equal-length folders: binaries get the prefix patched in place, padded to its length
    from_tar, from_sh = listing(tmp_path / "tar-out"), listing(tmp_path / "shs-out")
    assert from_tar.keys() == from_sh.keys() and "activate.fish" in from_sh
    differing = [name for name in from_tar if from_tar[name] != from_sh[name]]
    assert all(name.startswith("app/conda-meta/") for name in differing), differing


def test_unpacking_imports_no_httpx() -> None:
    """The bundled pixi-unpack carries no httpx: the unpack path must not import it."""
    code = (
        "import sys, pixi_pack_ext.cli.unpack, pixi_pack_ext.unpack.driver\n"
        "from pixi_pack_ext.plugins import get_plugin_manager\n"
        "pm = get_plugin_manager(); pm.check()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'httpx'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PIXI_PACK_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    assert result.stdout.strip() == "[]"


# -- checking each part once ----------------------------------------------------------------------


def _largest_member_data(script: Path) -> tuple[int, int]:
    """(file offset, size) of the biggest file's bytes in the tar of ``script``."""
    biggest = max(_members(script), key=lambda m: m.size)
    return biggest.offset_data, biggest.size


def _members(script: Path) -> list[tarfile.TarInfo]:
    """The tar's members in ``script``, their offsets counted from the start of the file."""
    layout = read_layout(script)
    assert layout is not None
    with open(script, "rb") as f:
        f.seek(layout.archive_offset)
        with tarfile.open(fileobj=f, mode="r:") as tar:  # tarfile counts from where the tar starts
            return tar.getmembers()


def _member(script: Path, suffix: str) -> tarfile.TarInfo:
    return next(m for m in _members(script) if m.name.endswith(suffix))


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def _touch_header(path: Path, member: tarfile.TarInfo) -> None:
    """Give ``member``'s tar header another mtime, with a checksum that matches: a sound tar."""
    with open(path, "r+b") as f:
        f.seek(member.offset)
        header = bytearray(f.read(tarfile.BLOCKSIZE))
        header[136:148] = b"%011o\0" % (member.mtime + 1)
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header)
        f.seek(member.offset)
        f.write(header)
    assert any(m.name == member.name and m.mtime == member.mtime + 1 for m in _members(path))


@needs_linux64
@needs_system_python
def test_a_corrupt_package_inside_a_sound_tar_is_refused_before_anything_is_installed(
    executable: Path, tmp_path: Path
) -> None:
    """Package bytes are checked once, against the pack's repodata.json, as they are extracted."""
    broken = tmp_path / "environment.sh"
    shutil.copy(executable, broken)
    package = _member(broken, ".conda")
    _flip(broken, package.offset_data + package.size // 2)
    result = run_script("sh", broken, "-o", tmp_path / "target", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert f"{package.name} in '{broken}' is corrupt: expected sha256" in errors[0]
    assert "nothing was installed" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "target").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


@needs_linux64
@needs_system_python
@pytest.mark.parametrize("where", ["repodata.json", "environment.yml", "a package's tar header"])
def test_whatever_the_packages_sha256_does_not_cover_is_checked_by_the_skeleton(
    executable: Path, tmp_path: Path, where: str
) -> None:
    broken = tmp_path / "environment.sh"
    shutil.copy(executable, broken)
    if where == "a package's tar header":
        _touch_header(broken, _member(broken, ".conda"))
    else:
        member = _member(broken, where)
        _flip(broken, member.offset_data + member.size // 2)
    result = run_script("sh", broken, "-o", tmp_path / "target", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "is corrupt (archive skeleton sha256" in errors[0], result.stderr
    assert "nothing was installed" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "target").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


def test_the_skeleton_sha256_leaves_out_the_package_bodies_and_nothing_else(
    executable: Path, tmp_path: Path
) -> None:
    layout = read_layout(executable)
    assert layout is not None and layout.archive_skeleton_sha256 is not None
    data = executable.read_bytes()
    members = _members(executable)
    kept, position = hashlib.sha256(), layout.archive_offset
    for m in members:
        if m.isreg() and m.name.startswith("channel/") and m.name.endswith((".conda", ".tar.bz2")):
            kept.update(data[position : m.offset_data])
            position = m.offset_data + m.size
    kept.update(data[position : layout.archive_offset + layout.archive_size])
    assert kept.hexdigest() == layout.archive_skeleton_sha256 != layout.archive_sha256

    def skeleton(path: Path) -> str | None:
        with open(path, "rb") as f:
            return skeleton_sha256(f, layout.archive_offset, layout.archive_size)

    copy = tmp_path / "copy.sh"
    for m in members:
        if not m.size:
            continue
        shutil.copy(executable, copy)
        _flip(copy, m.offset_data)
        is_package = m.name.endswith((".conda", ".tar.bz2"))
        assert (skeleton(copy) == layout.archive_skeleton_sha256) == is_package, m.name
    copy.write_bytes(data[: layout.archive_offset + layout.archive_size - 1])
    assert skeleton(copy) is None


def _as_before_the_skeleton(script: Path, target: Path) -> None:
    """Rewrite ``script``'s header as packs were written before the skeleton sha256: without it."""
    data = bytearray(script.read_bytes())
    line = data.index(b"PIXI_PACK_ARCHIVE_SKELETON_SHA256=")
    end = data.index(b"\n", line)
    data[line:end] = b"#" * (end - line)
    target.write_bytes(data)


@needs_linux64
def test_pixi_unpack_checks_the_whole_tar_of_a_pack_from_before_the_skeleton(
    executable: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.sh"
    _as_before_the_skeleton(executable, old)
    layout = read_layout(old)
    assert layout is not None and layout.archive_skeleton_sha256 is None
    run("pixi-unpack", old, "-o", tmp_path / "out")
    assert (tmp_path / "out" / "env" / "bin" / "hello").is_file()

    package = _member(old, ".conda")
    _flip(old, package.offset_data + package.size // 2)
    result = run("pixi-unpack", old, "-o", tmp_path / "again", check=False)
    assert result.returncode != 0 and b"is corrupt (archive sha256" in result.stderr
    assert b"Traceback" not in result.stderr and not (tmp_path / "again").exists()


OLD_PYTHON = """#!/bin/sh
# A python3 that reports 3.9: the real interpreter, with sys.version_info set before the bootstrap.
[ "$1" = -S ] && [ "$2" = -c ] || exit 2
boot=$3
shift 3
exec {python} -S -c "import sys; sys.version_info = (3, 9, 18); exec(sys.argv.pop(1))" "$boot" "$@"
"""


@needs_linux64
@needs_system_python
def test_a_python3_older_than_3_10_is_passed_over_for_python(executable: Path, tmp_path: Path) -> None:
    path = _restricted_path(tmp_path, PYTHON_KIND_TOOLS)
    old = Path(path) / "python3"
    old.write_text(OLD_PYTHON.format(python=SYSTEM_PYTHON))
    old.chmod(0o755)
    env = clean_env(tmp_path, path=path)
    result = run_script("sh", executable, "-o", tmp_path / "none", "-q", env=env, cwd=tmp_path)
    assert result.returncode == 1 and "python3 >= 3.10" in result.stderr and "none was found" in result.stderr
    assert not (tmp_path / "none").exists()

    os.symlink(str(SYSTEM_PYTHON), Path(path) / "python")
    result = run_script("sh", executable, "-o", tmp_path / "target", "-q", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "target" / "env" / "bin" / "hello").is_file()
    assert not list((tmp_path / "tmpdir").iterdir())


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
def test_a_corrupt_embedded_executable_never_runs(workspace: Path, tmp_path: Path) -> None:
    _, script = _pack_with_stand_in(workspace, tmp_path)
    layout = read_layout(script)
    assert layout is not None
    _flip(script, layout.unpacker_offset + 20)
    result = run_script("sh", script, env=clean_env(tmp_path, path=_restricted_path(tmp_path)), cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "is corrupt (unpacker sha256" in errors[0]
    assert not Path(f"{tmp_path / 'record'}.args").exists()
    assert not list((tmp_path / "tmpdir").iterdir())


def _as_before_the_split(script: Path, target: Path) -> None:
    """Rewrite ``script`` as packs were written before each part got its own sha256: the unpacker
    first, then the tar, and one sha256 over both."""
    layout = read_layout(script)
    assert layout is not None
    data = script.read_bytes()
    unpacker = data[layout.unpacker_offset : layout.unpacker_offset + layout.unpacker_size]
    archive = data[layout.archive_offset : layout.archive_offset + layout.archive_size]
    size = 4096
    lines = [
        "#!/bin/sh",
        "# pixi-pack-ext self-extracting environment: run it (sh environment.sh -h), do not source it.",
        f"# pixi-pack.json: {layout.metadata}",
        f"PIXI_PACK_HEADER_SIZE={size}",
        f"PIXI_PACK_UNPACKER_OFFSET={size}",
        f"PIXI_PACK_UNPACKER_SIZE={len(unpacker)}",
        f"PIXI_PACK_ARCHIVE_OFFSET={size + len(unpacker)}",
        f"PIXI_PACK_ARCHIVE_SIZE={len(archive)}",
        f"PIXI_PACK_SHA256={hashlib.sha256(unpacker + archive).hexdigest()}",
        f"PIXI_PACK_UNPACKER={layout.unpacker}",
        f"PIXI_PACK_PLATFORM={layout.platform}",
        f"PIXI_PACK_FILE_SIZE={size + len(unpacker) + len(archive)}",
    ]
    target.write_bytes("\n".join(lines).encode().ljust(size, b"\n") + unpacker + archive)


@needs_linux64
def test_pixi_unpack_reads_a_pack_from_before_the_split_sha256(executable: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.sh"
    _as_before_the_split(executable, old)
    layout = read_layout(old)
    assert layout is not None and layout.unpacker_sha256 is None
    assert layout.archive_check_offset == layout.header_size
    run("pixi-unpack", old, "-o", tmp_path / "out")
    assert (tmp_path / "out" / "env" / "bin" / "hello").is_file()

    _flip(old, layout.unpacker_offset + 100)  # the old sha256 covers the unpacker too
    result = run("pixi-unpack", old, "-o", tmp_path / "again", check=False)
    assert result.returncode != 0 and b"is corrupt" in result.stderr and b"Traceback" not in result.stderr
    assert not (tmp_path / "again").exists()


def test_the_zipapp_extracts_only_compiled_code_and_metadata(executable: Path) -> None:
    """Everything else is imported from the zip, with bytecode for the Python that made it."""
    bundle = _bundle_of(executable)
    native = [i for i in bundle.infolist() if i.filename.startswith("native/") and not i.is_dir()]
    assert native and all(
        i.filename.endswith((".so", ".pyd")) or ".dist-info/" in i.filename for i in native
    ), [i.filename for i in native]
    so = [i for i in native if i.filename.endswith(".so")]
    # deflated: inflated once per machine into the unpacker's cache (tests/selfextract/test_unpacker_size.py)
    assert so and all(i.compress_type == zipfile.ZIP_DEFLATED for i in so)
    names = set(bundle.namelist())
    assert "lib/rattler/__init__.py" in names and "lib/pixi_pack_ext/unpack/driver.py" in names
    assert "lib/rattler/utils/" in names  # zipimport finds namespace packages by their folder entry
    sources = [n for n in names if n.startswith("lib/") and n.endswith(".py")]
    assert all(f"{n}c" in names for n in sources)


def test_a_pyc_for_another_python_is_passed_over_for_the_source(tmp_path: Path) -> None:
    """The zipapp's bytecode is for the packing Python; another version imports the sources."""
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("lib/", b"")
        bundle.writestr("lib/probe.py", b"VALUE = 'from the source'\n")
        bundle.writestr("lib/probe.pyc", b"\x00\x00\r\n" + b"\x01\x00\x00\x00" + b"\x00" * 8 + b"junk")
    code = f"import sys; sys.path.insert(0, {str(archive / 'lib')!r}); import probe; print(probe.VALUE)"
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "from the source"
