"""Credentials never leave the process: not in logs (-vv), errors, the progress bar on a terminal,
the pack (every byte of the tar: pixi-pack.json, environment.yml, repodata.json, names), nor in
what pixi-unpack prints and installs. Each way of giving credentials is tried on success and on
failure."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import cli, host_platform, run
from pack_checks import isolated_credentials  # noqa: F401 - a fixture

from pixi_pack_ext.testing.faulty_server import Corrupt, FaultyServer, Status
from pixi_pack_ext.testing.locks import relocate_workspace
from pixi_pack_ext.testing.world import ChannelServer

pytestmark = pytest.mark.usefixtures("isolated_credentials")

SECRET = "tok-9f3c1e7a-never-shown"
FAST = {"PIXI_PACK_RETRIES": "0", "PIXI_PACK_READ_TIMEOUT": "5"}


@dataclass
class Way:
    """One way of giving credentials: what the server asks, how the lock URL looks, extra args."""

    server: dict[str, object]
    url: Callable[[str], str]
    auth_file: dict[str, object] | None = None
    via_env: bool = False


def _with_userinfo(userinfo: str) -> Callable[[str], str]:
    return lambda url: url.replace("http://", f"http://{userinfo}@")


WAYS = {
    "user and password in the lock URL": Way(
        {"basic_auth": ("alice", SECRET)}, _with_userinfo(f"alice:{SECRET}")
    ),
    "token as the URL user": Way({"basic_auth": (SECRET, "")}, _with_userinfo(SECRET)),
    "conda token in the lock URL": Way({"conda_token": SECRET}, lambda url: f"{url}t/{SECRET}/"),
    "bearer token in --auth-file": Way(
        {"bearer_token": SECRET}, lambda url: url, {"127.0.0.1": {"BearerToken": SECRET}}
    ),
    "conda token in --auth-file": Way(
        {"conda_token": SECRET}, lambda url: url, {"127.0.0.1": {"CondaToken": SECRET}}
    ),
    "password in RATTLER_AUTH_FILE": Way(
        {"basic_auth": ("bob", SECRET)},
        lambda url: url,
        {"127.0.0.1": {"BasicHTTP": {"username": "bob", "password": SECRET}}},
        via_env=True,
    ),
}


def run_on_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run with a pseudo-terminal as stdout and stderr (so the progress bar is drawn)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    code = process.wait(timeout=300)
    reader.join(timeout=30)
    os.close(leader)
    return code, b"".join(chunks)


def _everything_in(folder: Path) -> bytes:
    data = []
    for path in sorted(folder.rglob("*")):
        data.append(str(path).encode())
        if path.is_file() and not path.is_symlink():
            data.append(path.read_bytes())
    return b"\n".join(data)


@pytest.mark.parametrize("way", list(WAYS))
def test_secret_is_never_shown_nor_packed(
    way: str, workspace: Path, channel_server: ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    spec = WAYS[way]
    outputs: list[bytes] = []
    with FaultyServer(channel_dir, **spec.server) as server:  # type: ignore[arg-type]
        ws = relocate_workspace(workspace, tmp_path / "ws", channel_server.url, spec.url(server.url))
        env = {**os.environ, **FAST, "COLUMNS": "200", "TERM": "xterm"}
        extra: list[str] = []
        if spec.auth_file is not None:
            auth = tmp_path / "auth.json"
            auth.write_text(json.dumps(spec.auth_file))
            if spec.via_env:
                env["RATTLER_AUTH_FILE"] = str(auth)
            else:
                extra = ["--auth-file", str(auth)]
        base = [cli("pixi-pack"), str(ws), "-e", "prod", "-p", "linux-64", *extra]

        pack_file = tmp_path / "env.tar"
        code, shown = run_on_terminal([*base, "-o", str(pack_file), "-vv"], env)
        outputs.append(shown)
        assert code == 0, shown.decode(errors="replace")
        assert server.fault_log.paths("401") == [], "the credentials were not used"

        hello = next(r.path for r in server.fault_log.requests if r.path.startswith("/linux-64/hello-bin-"))
        for fault in (Status(500), Corrupt()):
            server.add_faults(hello, fault, always=True)
            failed = subprocess.run(
                [*base, "-o", str(tmp_path / "failed.tar"), "-vv"], capture_output=True, env=env
            )
            assert failed.returncode != 0
            outputs.append(failed.stdout + failed.stderr)
            server.clear_faults()

    everything = b"".join(outputs)
    at = everything.find(SECRET.encode())
    assert at < 0, "a secret was shown: " + everything[max(0, at - 300) : at + 60].decode(errors="replace")
    assert SECRET.encode() not in pack_file.read_bytes(), "a secret went into the pack"
    # The pack's repodata keeps where each package came from (conda-meta records it after the
    # unpack), as a URL without its credentials: no user info, no token path, no query.
    with tarfile.open(pack_file) as tar:
        indexes = b"".join(
            tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and not m.name.endswith((".conda", ".tar.bz2", ".whl"))
        )
    assert b"@127.0.0.1" not in indexes and b"/t/" not in indexes, (
        "the pack names the server with credentials"
    )
    assert b'"url":"http://127.0.0.1:' in indexes

    if host_platform() == "linux-64":
        out = tmp_path / "out"
        unpacked = run("pixi-unpack", pack_file, "-o", out, "-vv")
        assert SECRET.encode() not in unpacked.stdout + unpacked.stderr
        assert SECRET.encode() not in _everything_in(out), "a secret went into the environment"
