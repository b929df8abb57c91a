"""``[mirrors]`` as pixi reads it, counted on real servers on 127.0.0.1: a mirror replaces the
original URL (the original is asked only when it is listed among the mirrors), each candidate is
asked once per file, and a file no candidate has is one error naming every URL tried and why."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import pack_prod
from pack_checks import assert_pack_holds_channel_files, isolated_credentials  # noqa: F401

from pixi_pack_ext.testing.locks import relocate_workspace
from pixi_pack_ext.testing.world import ChannelServer

pytestmark = pytest.mark.usefixtures("isolated_credentials")

PACKAGES = (".conda", ".tar.bz2")


def config_with_mirrors(path: Path, original: str, mirrors: list[str]) -> Path:
    path.write_text(f'[mirrors]\n"{original}" = {json.dumps(mirrors)}\n')
    return path


def package_requests(server: ChannelServer) -> list[str]:
    return [p for p in server.log.paths if p.endswith(PACKAGES)]


def error_line(result) -> str:  # type: ignore[no-untyped-def]
    err = result.stderr.decode()
    assert result.returncode != 0 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def servers(channel_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An original channel, an empty mirror (HTTP 404 for everything) and a full mirror."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with (
        ChannelServer(channel_dir) as original,
        ChannelServer(empty) as missing,
        ChannelServer(channel_dir) as good,
    ):
        yield original, missing, good


@pytest.fixture
def pack_with_mirrors(servers, workspace: Path, channel_server: ChannelServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Pack the workspace, its lock pointing at the original server, into tmp_path/env.tar with a
    config whose ``[mirrors]`` lists the given servers for the original."""
    original = servers[0]
    ws = relocate_workspace(workspace, tmp_path / "ws", channel_server.url, original.url)

    def pack(
        mirrors: list[ChannelServer], *extra: object, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        config = config_with_mirrors(tmp_path / "config.toml", original.url, [m.url for m in mirrors])
        return pack_prod(ws, tmp_path / "env.tar", "-c", config, *extra, check=check)

    return pack


def test_mirrors_replace_the_original_and_each_is_asked_once(
    servers, pack_with_mirrors, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    original, missing, good = servers
    pack_with_mirrors([missing, good])
    asked_missing = package_requests(missing)
    asked_good = package_requests(good)
    assert len(asked_good) == 4 and len(set(asked_good)) == 4, asked_good
    assert sorted(asked_missing) == sorted(asked_good), asked_missing  # once per file, not twice
    assert package_requests(original) == []  # not listed among the mirrors: never asked
    assert_pack_holds_channel_files(tmp_path / "env.tar", original.directory)


def test_the_original_is_asked_when_listed_among_the_mirrors(
    servers, pack_with_mirrors, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    original, missing, _good = servers
    pack_with_mirrors([missing, original])
    assert len(package_requests(missing)) == 4
    assert len(package_requests(original)) == 4
    assert_pack_holds_channel_files(tmp_path / "env.tar", original.directory)


def test_no_candidate_has_the_file_names_every_url_tried(servers, pack_with_mirrors, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    original, missing, _good = servers
    other_empty = tmp_path / "empty2"
    other_empty.mkdir()
    with ChannelServer(other_empty) as missing_too:
        result = pack_with_mirrors([missing, missing_too], "--concurrent-downloads", "1", check=False)
        asked = package_requests(missing), package_requests(missing_too)
    line = error_line(result)
    failed = asked[0][0]  # the first file asked for, the one the run stopped at
    for server in (missing, missing_too):
        assert f"{server.url.rstrip('/')}{failed}: HTTP 404" in line, line
    assert line.count("HTTP 404") == 2, line
    assert original.url not in line, line
    assert asked[0].count(failed) == 1 and asked[1].count(failed) == 1, asked
    assert package_requests(original) == []
    assert not (tmp_path / "env.tar").exists()
