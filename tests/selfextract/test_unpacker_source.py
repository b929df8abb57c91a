"""``--pixi-unpack-source``: an executable unpacker (path or URL) embedded in place of the bundled
one, needing only ``sh``; a self-extracting pack cannot stream."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
from conftest import needs_linux64, run

from pixi_pack_ext.selfextract.reader import read_layout

from .helpers import STAND_IN, _pack_with_stand_in, _restricted_path, clean_env, run_script


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
