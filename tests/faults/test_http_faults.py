"""pixi-pack against a misbehaving server: each fault is retried or ends with one clear line, a
non-zero exit and no partial pack; the pack it does write holds exactly the locked bytes."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from pathlib import Path

from pack_checks import assert_pack_holds_channel_files, package_paths

from pixi_pack_ext.testing.faulty_server import (
    Corrupt,
    FaultyServer,
    Garbage,
    Overlong,
    Reset,
    Stall,
    Status,
    Truncate,
)

from .conftest import assert_cache_is_verified, error_line, leftovers, lock_hashes, pack


def _hello_bin(channel_dir: Path) -> str:
    return next(p for p in package_paths(channel_dir) if p.startswith("/linux-64/hello-bin-"))


def _outcomes(server: FaultyServer, path: str) -> list[str]:
    return [r.outcome for r in server.fault_log.requests if r.path == path]


def test_429_with_retry_after_is_retried(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    path = _hello_bin(channel_dir)
    date = email.utils.formatdate(time.time() - 5, usegmt=True)  # a date in the past: retry now
    faulty.add_faults(path, Status(429, retry_after="0"), Status(429, retry_after=date))
    pack(moved(faulty.url), tmp_path / "env.tar", env={"PIXI_PACK_RETRIES": "2"})
    assert _outcomes(faulty, path) == ["429", "429", "ok"]
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_429_forever_is_one_error_and_no_pack(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    path = _hello_bin(channel_dir)
    faulty.add_faults(path, Status(429, retry_after="0"), always=True)
    line = error_line(pack(moved(faulty.url), tmp_path / "env.tar", check=False))
    assert "HTTP 429 after 2 attempts" in line and path.rsplit("/", 1)[1] in line, line
    assert not (tmp_path / "env.tar").exists() and leftovers(tmp_path) == []


def test_body_longer_than_content_length(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    """Extra bytes after the declared length are not part of the file (and spoil no other one)."""
    for path in package_paths(channel_dir):
        faulty.add_faults(path, Overlong(extra=b"\xde\xad" * 700))
    pack(moved(faulty.url), tmp_path / "env.tar", "--concurrent-downloads", "1")
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_body_shorter_than_content_length_every_time(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    path = _hello_bin(channel_dir)
    faulty.add_faults(path, Truncate(after=0), always=True)
    line = error_line(pack(moved(faulty.url), tmp_path / "env.tar", check=False))
    assert "after 2 attempts" in line and path.rsplit("/", 1)[1] in line, line
    assert not (tmp_path / "env.tar").exists() and leftovers(tmp_path) == []


def test_connection_reset_every_time(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    path = _hello_bin(channel_dir)
    faulty.add_faults(path, Reset(after=700), always=True)
    line = error_line(pack(moved(faulty.url), tmp_path / "env.tar", check=False))
    assert "after 2 attempts" in line and path.rsplit("/", 1)[1] in line, line
    assert _outcomes(faulty, path) == ["reset", "reset"]
    assert not (tmp_path / "env.tar").exists() and leftovers(tmp_path) == []


def test_body_without_length_and_with_junk_is_stopped_at_the_locks_size(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    """The lock records each file's size: a byte beyond it is refused (the hash is never reached)."""
    path = _hello_bin(channel_dir)
    size = (channel_dir / path.lstrip("/")).stat().st_size
    faulty.add_faults(path, Garbage(), always=True)
    line = error_line(pack(moved(faulty.url), tmp_path / "env.tar", check=False))
    assert f"more than the {size} bytes the lock records" in line and path.rsplit("/", 1)[1] in line, line
    assert not (tmp_path / "env.tar").exists() and leftovers(tmp_path) == []


def test_stalled_server_times_out(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    path = _hello_bin(channel_dir)
    faulty.add_faults(path, Stall(after=100), always=True)
    line = error_line(pack(moved(faulty.url), tmp_path / "env.tar", check=False))
    assert "the server sent nothing for 0.5 s" in line and "PIXI_PACK_READ_TIMEOUT" in line, line
    assert "after 2 attempts" in line
    assert len(_outcomes(faulty, path)) == 2
    assert not (tmp_path / "env.tar").exists() and leftovers(tmp_path) == []


def test_one_stall_then_the_rest_of_the_file(
    faulty: FaultyServer, moved: Callable[..., Path], channel_dir: Path, tmp_path: Path
) -> None:
    path = _hello_bin(channel_dir)
    faulty.add_faults(path, Stall(after=1000))
    pack(moved(faulty.url), tmp_path / "env.tar")
    ranges = [r.range for r in faulty.fault_log.requests if r.path == path]
    assert ranges == [None, "bytes=1000-"]
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_unknown_host_is_one_error(moved: Callable[..., Path], tmp_path: Path) -> None:
    """A host name that cannot resolve (``.invalid`` never does) names the host and the reason."""
    workspace = moved("http://conda-channel.invalid/demo/")
    line = error_line(pack(workspace, tmp_path / "env.tar", env={"PIXI_PACK_RETRIES": "0"}, check=False))
    assert "conda-channel.invalid" in line and "ConnectError" in line, line
    assert not (tmp_path / "env.tar").exists() and leftovers(tmp_path) == []


def test_wrong_bytes_from_every_mirror(moved: Callable[..., Path], channel_dir: Path, tmp_path: Path) -> None:
    """Two mirrors and the original (listed after them) all corrupt one file: one error naming
    each, no pack, nothing cached."""
    path = _hello_bin(channel_dir)
    with (
        FaultyServer(channel_dir) as original,
        FaultyServer(channel_dir) as a,
        FaultyServer(channel_dir) as b,
    ):
        for server in (original, a, b):
            server.add_faults(path, Corrupt(), always=True)
        workspace = moved(original.url)
        config = tmp_path / "config.toml"
        config.write_text(f'[mirrors]\n"{original.url}" = ["{a.url}", "{b.url}", "{original.url}"]\n')
        cache = tmp_path / "cache"
        result = pack(workspace, tmp_path / "env.tar", "-c", config, "--use-cache", cache, check=False)
        tried = [server.fault_log.count(path) for server in (a, b, original)]
    line = error_line(result)
    assert "from any of its 3 mirrors" in line and line.count("checksum mismatch") == 3, line
    for server in (a, b, original):
        assert f"{server.url.rstrip('/')}{path}: checksum mismatch" in line, line
    assert tried == [1, 1, 1]
    assert not (tmp_path / "env.tar").exists() and leftovers(tmp_path) == []
    cached = assert_cache_is_verified(cache, lock_hashes(workspace))
    assert f"linux-64/{path.rsplit('/', 1)[1]}" not in cached


def test_bad_network_settings_are_one_error(moved: Callable[..., Path], tmp_path: Path) -> None:
    workspace = moved("http://conda-channel.invalid/demo/")
    for name, value in [
        ("PIXI_PACK_READ_TIMEOUT", "soon"),
        ("PIXI_PACK_READ_TIMEOUT", "0"),
        ("PIXI_PACK_RETRIES", "-1"),
    ]:
        line = error_line(pack(workspace, tmp_path / "env.tar", env={name: value}, check=False))
        assert line.startswith(f"error: {name} must be") and f"not '{value}'" in line, line
