"""HTTP sources end to end through ``pixi-pack``: mirrors, retries and resume, credentials, concurrency.

Each test serves the demo channel from real servers on 127.0.0.1 and moves the session's lock onto
them (``relocate_workspace``), so the lock's hashes are the solver's own.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest
from conftest import pack_prod
from pack_checks import (
    assert_no_secret,
    assert_pack_holds_channel_files,
    isolated_credentials,  # noqa: F401 - a fixture
    package_paths,
)

from pixi_pack_ext.testing.faulty_server import Corrupt, FaultyServer, Reset, Served, Stall, Status, Truncate
from pixi_pack_ext.testing.locks import relocate_workspace
from pixi_pack_ext.testing.world import ChannelServer, _QuietHandler

pytestmark = pytest.mark.usefixtures("isolated_credentials")

SECRET = "pw-never-shown-4711"
QUICK_TIMEOUT = {"PIXI_PACK_READ_TIMEOUT": "0.5"}


def dead_url() -> str:
    """An address on 127.0.0.1 where nothing listens (the original channel is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    err = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def hello_bin(channel_dir: Path) -> str:
    """The request path of the linux-64 hello-bin package (the largest file of the environment)."""
    return next(p for p in package_paths(channel_dir) if p.startswith("/linux-64/hello-bin-"))


def mirrors_config(path: Path, original: str, mirrors: list[str], downloads: int | None = None) -> Path:
    text = f'[mirrors]\n"{original}" = {json.dumps(mirrors)}\n'
    if downloads is not None:
        text += f"\n[concurrency]\ndownloads = {downloads}\n"
    path.write_text(text)
    return path


@pytest.fixture
def moved(workspace: Path, channel_server: ChannelServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``moved(url)``: the demo workspace with its lock pointing at ``url``."""

    def move(url: str, name: str = "ws") -> Path:
        return relocate_workspace(workspace, tmp_path / name, channel_server.url, url)

    return move


# --------------------------------------------------------------------------------------------------
# Mirrors
# --------------------------------------------------------------------------------------------------


def test_mirror_serves_while_the_original_is_down(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    original = dead_url()
    ws = moved(original)
    with ChannelServer(channel_dir) as mirror:
        config = mirrors_config(tmp_path / "config.toml", original, [mirror.url])
        pack_prod(ws, tmp_path / "env.tar", "-c", config)
        served = [p for p in mirror.log.paths if p.endswith((".conda", ".tar.bz2"))]
    assert len(served) == 4
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_mirror_with_wrong_bytes_is_refused_and_the_next_one_used(
    moved,  # type: ignore[no-untyped-def]
    channel_dir: Path,
    tmp_path: Path,
) -> None:
    original = dead_url()
    ws = moved(original)
    with FaultyServer(channel_dir) as bad, ChannelServer(channel_dir) as good:
        for path in package_paths(channel_dir):
            bad.add_faults(path, Corrupt(), always=True)
        config = mirrors_config(tmp_path / "config.toml", original, [bad.url, good.url])
        result = pack_prod(ws, tmp_path / "env.tar", "-c", config)
        assert len(bad.fault_log.paths("corrupt")) == 4
        assert len([p for p in good.log.paths if p.endswith((".conda", ".tar.bz2"))]) == 4
    err = result.stderr.decode()
    assert "checksum mismatch" in err and bad.url.rstrip("/") in err
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_original_listed_among_the_mirrors_is_tried_after_them(
    moved, channel_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A dead mirror costs the first file its retries; later files skip it and go to the original,
    which pixi asks only because it is listed among the mirrors."""
    dead = dead_url()
    with ChannelServer(channel_dir) as original:
        ws = moved(original.url)
        config = mirrors_config(tmp_path / "config.toml", original.url, [dead, original.url])
        result = pack_prod(ws, tmp_path / "env.tar", "-c", config, "--concurrent-downloads", "1", "-v")
        assert len([p for p in original.log.paths if p.endswith((".conda", ".tar.bz2"))]) == 4
    err = " ".join(result.stderr.decode().split())
    assert err.count("ConnectError after 4 attempts") == 1
    assert err.count(f"{dead.rstrip('/')} was unreachable earlier in this run (ConnectError)") == 3
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_no_source_with_the_right_bytes_is_one_error(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir) as bad:
        for path in package_paths(channel_dir):
            bad.add_faults(path, Corrupt(), always=True)
        ws = moved(bad.url)
        config = mirrors_config(tmp_path / "config.toml", bad.url, [bad.url + "mirror-a/", bad.url])
        result = pack_prod(ws, tmp_path / "env.tar", "-c", config, check=False)
    line = one_error_line(result)
    assert "could not fetch" in line or "checksum mismatch" in line
    assert not (tmp_path / "env.tar").exists()
    assert not list(tmp_path.glob(".pixi-pack-*"))


# --------------------------------------------------------------------------------------------------
# Retries and resume
# --------------------------------------------------------------------------------------------------


def test_500_twice_then_200(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir) as server:
        path = hello_bin(channel_dir)
        server.add_faults(path, Status(500), Status(503, retry_after="0"))
        pack_prod(moved(server.url), tmp_path / "env.tar")
        outcomes = [r.outcome for r in server.fault_log.requests if r.path == path]
    assert outcomes == ["500", "503", "ok"]
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_connection_dropped_mid_file_is_resumed(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir) as server:
        path = hello_bin(channel_dir)
        server.add_faults(path, Truncate(after=1000))
        pack_prod(moved(server.url), tmp_path / "env.tar")
        requests = [(r.range, r.outcome) for r in server.fault_log.requests if r.path == path]
    assert requests == [(None, "truncated"), ("bytes=1000-", "ok")]
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_connection_reset_mid_file_is_retried(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir) as server:
        path = hello_bin(channel_dir)
        server.add_faults(path, Reset(after=1500))
        pack_prod(moved(server.url), tmp_path / "env.tar")
        outcomes = [r.outcome for r in server.fault_log.requests if r.path == path]
    assert outcomes == ["reset", "ok"]
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_a_server_that_keeps_failing_is_one_error(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir) as server:
        path = hello_bin(channel_dir)
        server.add_faults(path, Status(500), always=True)
        result = pack_prod(moved(server.url), tmp_path / "env.tar", check=False)
        attempts = server.fault_log.count(path)
    line = one_error_line(result)
    assert path.rsplit("/", 1)[1] in line and "HTTP 500" in line and f"after {attempts} attempts" in line
    assert not (tmp_path / "env.tar").exists()


# --------------------------------------------------------------------------------------------------
# rattler's downloader first, httpx for the rest
# --------------------------------------------------------------------------------------------------


def by_httpx(request: Served) -> bool:
    return request.user_agent.startswith("python-httpx/")


def test_plain_downloads_go_to_rattlers_downloader(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir) as server:
        pack_prod(moved(server.url), tmp_path / "env.tar")
        requests = list(server.fault_log.requests)
    assert requests and not any(by_httpx(r) for r in requests), [r.user_agent for r in requests]
    assert len({r.path for r in requests}) == len(requests)  # each file asked for once
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_a_stalled_native_download_is_resumed_by_httpx(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir) as server:
        path = hello_bin(channel_dir)
        server.add_faults(path, Stall(after=1000))
        pack_prod(moved(server.url), tmp_path / "env.tar", env=QUICK_TIMEOUT)
        requests = [r for r in server.fault_log.requests if r.path == path]
    assert [(r.range, by_httpx(r)) for r in requests] == [(None, False), ("bytes=1000-", True)]
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_an_origin_that_fails_natively_is_left_to_httpx(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A connection-level failure (here a reset) is not tried natively again on that server."""
    with FaultyServer(channel_dir) as server:
        first = package_paths(channel_dir)[0]
        server.add_faults(first, Reset(after=0))
        pack_prod(moved(server.url), tmp_path / "env.tar", "--concurrent-downloads", "1")
        requests = list(server.fault_log.requests)
    reset = next(i for i, r in enumerate(requests) if r.outcome == "reset")
    assert not by_httpx(requests[reset])
    assert requests[reset + 1 :] and all(by_httpx(r) for r in requests[reset + 1 :])
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


@pytest.mark.parametrize("setting", ["credentials", "proxy", "no retries"])
def test_httpx_alone_where_the_native_path_does_not_apply(  # type: ignore[no-untyped-def]
    moved, channel_dir: Path, tmp_path: Path, setting: str
) -> None:
    """Credentials, a proxy (here one that 127.0.0.1 bypasses) and ``PIXI_PACK_RETRIES=0`` (no
    retry left to take over a failed native try) keep every request on httpx."""
    auth = ("pack-user", SECRET) if setting == "credentials" else None
    with FaultyServer(channel_dir, basic_auth=auth) as server:
        extra: list[object] = []
        env: dict[str, str] = {}
        if setting == "credentials":
            entries = {"127.0.0.1": {"BasicHTTP": {"username": "pack-user", "password": SECRET}}}
            extra = ["--auth-file", write_auth(tmp_path / "auth.json", entries)]
        elif setting == "proxy":
            env = {"HTTP_PROXY": dead_url(), "NO_PROXY": "127.0.0.1"}
        else:
            env = {"PIXI_PACK_RETRIES": "0"}
        pack_prod(moved(server.url), tmp_path / "env.tar", *extra, env=env)
        requests = list(server.fault_log.requests)
    assert requests and all(by_httpx(r) for r in requests), [r.user_agent for r in requests]
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


# --------------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------------


def write_auth(path: Path, entries: dict[str, object]) -> Path:
    path.write_text(json.dumps(entries))
    return path


def test_basic_auth_from_the_auth_file_and_netrc(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir, basic_auth=("pack-user", SECRET)) as server:
        ws = moved(server.url)
        refused = pack_prod(ws, tmp_path / "env.tar", check=False)
        line = one_error_line(refused)
        assert "127.0.0.1 needs credentials (HTTP 401" in line and "--auth-file" in line
        assert not (tmp_path / "env.tar").exists()

        auth = write_auth(
            tmp_path / "auth.json",
            {"127.0.0.1": {"BasicHTTP": {"username": "pack-user", "password": SECRET}}},
        )
        result = pack_prod(ws, tmp_path / "env.tar", "--auth-file", auth, "-vv")
        assert_no_secret(result.stdout + result.stderr, SECRET)
        assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir, secrets=(SECRET,))

        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine 127.0.0.1 login pack-user password {SECRET}\n")
        netrc.chmod(0o600)
        result = pack_prod(ws, tmp_path / "netrc.tar", env={"NETRC": str(netrc)})
        assert_pack_holds_channel_files(tmp_path / "netrc.tar", channel_dir, secrets=(SECRET,))


def test_wrong_credentials_are_named_but_not_shown(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir, bearer_token="right-token-0815") as server:
        auth = write_auth(tmp_path / "auth.json", {"127.0.0.1": {"BearerToken": SECRET}})
        result = pack_prod(moved(server.url), tmp_path / "env.tar", "--auth-file", auth, "-vv", check=False)
    line = one_error_line(result)
    assert "127.0.0.1 refused the credentials given for it (HTTP 401" in line
    assert_no_secret(result.stdout + result.stderr, SECRET)
    assert not (tmp_path / "env.tar").exists()


def test_bearer_token_and_auth_file_precedence(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``--auth-file`` wins over ``RATTLER_AUTH_FILE``, which still serves hosts the first lacks."""
    with FaultyServer(channel_dir, bearer_token=SECRET) as server:
        explicit = write_auth(tmp_path / "explicit.json", {"127.0.0.1": {"BearerToken": SECRET}})
        env_file = write_auth(tmp_path / "env.json", {"127.0.0.1": {"BearerToken": "stale-token"}})
        result = pack_prod(
            moved(server.url), tmp_path / "env.tar", "--auth-file", explicit, "-vv",
            env={"RATTLER_AUTH_FILE": str(env_file)},
        )  # fmt: skip
        assert server.fault_log.paths("401") == []
    assert_no_secret(result.stdout + result.stderr, SECRET)
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir, secrets=(SECRET,))


def test_conda_token_from_rattler_auth_file(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with FaultyServer(channel_dir, conda_token=SECRET) as server:
        auth = write_auth(tmp_path / "auth.json", {"127.0.0.1": {"CondaToken": SECRET}})
        result = pack_prod(
            moved(server.url), tmp_path / "env.tar", "-vv", env={"RATTLER_AUTH_FILE": str(auth)}
        )
    assert_no_secret(result.stdout + result.stderr, SECRET)
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir, secrets=(SECRET,))


def test_credentials_in_the_lock_url_stay_out_of_messages_and_pack(
    moved,  # type: ignore[no-untyped-def]
    channel_dir: Path,
    tmp_path: Path,
) -> None:
    with FaultyServer(channel_dir, basic_auth=("pack-user", SECRET)) as server:
        url = server.url.replace("http://", f"http://pack-user:{SECRET}@")
        result = pack_prod(moved(url), tmp_path / "env.tar", "-vv")
    assert_no_secret(result.stdout + result.stderr, SECRET)
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir, secrets=(SECRET,))


# --------------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------------


class _GateHandler(_QuietHandler):
    """Holds the first ``gate`` downloads until all of them are under way at once (at most 5 s), then
    slows every download a little so that more than the limit at once would show.

    With a limit of N and ``gate = N`` the server must see exactly N at a time: fewer means no
    concurrency, more means the limit was ignored.
    """

    gate = 0

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        log = self.request_log
        with log.lock:
            first_wave = len(log.paths) <= self.gate
        deadline = time.monotonic() + (5.0 if first_wave else 0.05)
        while time.monotonic() < deadline:
            with log.lock:
                if first_wave and log.active >= self.gate:
                    break
            time.sleep(0.005)
        super().copyfile(source, outputfile)


def test_concurrency_limit_from_config_is_honoured(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    handler = type("Gate2", (_GateHandler,), {"gate": 2})
    with ChannelServer(channel_dir, handler=handler) as server:
        config = tmp_path / "config.toml"
        config.write_text("[concurrency]\ndownloads = 2\n")
        pack_prod(moved(server.url), tmp_path / "env.tar", "-c", config)
        assert server.log.max_active == 2
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_concurrent_downloads_flag_overrides_config(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with ChannelServer(channel_dir, handler=_GateHandler) as server:
        config = tmp_path / "config.toml"
        config.write_text("[concurrency]\ndownloads = 3\n")
        pack_prod(moved(server.url), tmp_path / "env.tar", "-c", config, "--concurrent-downloads", "1")
        assert server.log.max_active == 1
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


# --------------------------------------------------------------------------------------------------
# Local channels: file:// URLs and plain paths
# --------------------------------------------------------------------------------------------------


def test_file_urls_and_plain_paths_in_the_lock(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name, location in (
        ("file-url", channel_dir.as_uri() + "/"),
        ("absolute-path", str(channel_dir) + "/"),
    ):
        ws = moved(location, name)
        pack_prod(ws, tmp_path / f"{name}.tar")
        assert_pack_holds_channel_files(tmp_path / f"{name}.tar", channel_dir)
    # a path relative to the workspace, as pixi writes for packages kept next to it
    ws = moved("./local-channel/", "relative")
    shutil.copytree(channel_dir, ws / "local-channel")
    pack_prod(ws / "pixi.toml", tmp_path / "relative.tar")
    assert_pack_holds_channel_files(tmp_path / "relative.tar", channel_dir)


def test_a_missing_local_package_is_one_error(moved, channel_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = moved(str(tmp_path / "gone") + "/")
    result = pack_prod(ws, tmp_path / "env.tar", check=False)
    line = one_error_line(result)
    assert f"local package file '{tmp_path / 'gone'}/" in line and "does not exist" in line
    assert not (tmp_path / "env.tar").exists()
