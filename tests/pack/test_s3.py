"""s3:// channels end to end: a real S3 endpoint on 127.0.0.1 (moto) holding the demo channel.

The lock names ``s3://conda-channel/channel/...`` for every package, as pixi writes it for an S3
channel; ``[s3-options.conda-channel]`` says where the bucket lives, credentials come from the auth
file or the AWS environment. Nothing on the machine (``~/.aws``, ``~/.rattler``, proxies) leaks in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import pack_prod
from pack_checks import (
    assert_no_secret,
    assert_pack_holds_channel_files,
    isolated_credentials,  # noqa: F401 - a fixture
)

from pixi_pack_ext.testing.locks import relocate_workspace
from pixi_pack_ext.testing.s3 import REGION, S3ChannelServer
from pixi_pack_ext.testing.world import ChannelServer

pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
# No AWS profile, env credentials, auth file, netrc or proxy of this machine.
pytestmark = pytest.mark.usefixtures("isolated_credentials")

BUCKET = "conda-channel"
SECRET = "s3-secret-never-shown"


@pytest.fixture(scope="module")
def s3(channel_dir: Path) -> Iterator[S3ChannelServer]:
    with S3ChannelServer(channel_dir, bucket=BUCKET) as server:
        yield server


@pytest.fixture
def s3_workspace(workspace: Path, channel_server: ChannelServer, s3: S3ChannelServer, tmp_path: Path) -> Path:
    return relocate_workspace(workspace, tmp_path / "ws", channel_server.url, s3.url)


def write_config(path: Path, s3: S3ChannelServer, *, path_style: bool = True) -> Path:
    host = "127.0.0.1" if path_style else "localhost"
    path.write_text(
        f'[s3-options.{BUCKET}]\nendpoint-url = "http://{host}:{s3.port}"\nregion = "{REGION}"\n'
        f"force-path-style = {'true' if path_style else 'false'}\n"
    )
    return path


def write_auth(path: Path) -> Path:
    credentials = {"access_key_id": "pack-reader", "secret_access_key": SECRET}
    path.write_text(json.dumps({f"s3://{BUCKET}": {"S3Credentials": credentials}}))
    return path


def test_path_style_with_credentials_from_auth_file(
    s3_workspace: Path, s3: S3ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", s3)
    auth = write_auth(tmp_path / "auth.json")
    pack_file = tmp_path / "environment.tar"
    result = pack_prod(s3_workspace, pack_file, "-c", config, "--auth-file", auth, "-v")
    assert_pack_holds_channel_files(pack_file, channel_dir, secrets=(SECRET,))
    assert_no_secret(result.stderr + result.stdout, SECRET)


def test_credentials_from_rattler_auth_file_env(
    s3_workspace: Path, s3: S3ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", s3)
    auth = write_auth(tmp_path / "auth.json")
    pack_file = tmp_path / "environment.tar"
    pack_prod(s3_workspace, pack_file, "-c", config, env={"RATTLER_AUTH_FILE": str(auth)})
    assert_pack_holds_channel_files(pack_file, channel_dir)


def test_credentials_from_the_aws_environment(
    s3_workspace: Path, s3: S3ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", s3)
    pack_file = tmp_path / "environment.tar"
    pack_prod(
        s3_workspace,
        pack_file,
        "-c",
        config,
        env={"AWS_ACCESS_KEY_ID": "env-reader", "AWS_SECRET_ACCESS_KEY": SECRET},
    )
    assert_pack_holds_channel_files(pack_file, channel_dir)


def test_no_credentials_is_one_clear_line(s3_workspace: Path, s3: S3ChannelServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", s3)
    pack_file = tmp_path / "environment.tar"
    result = pack_prod(s3_workspace, pack_file, "-c", config, check=False)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert f"no usable S3 credentials for bucket '{BUCKET}'" in lines[0]
    assert "--auth-file" in lines[0] and "AWS_ACCESS_KEY_ID" in lines[0]
    assert "Traceback" not in result.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "home", "ws"]  # nothing half-written


def test_missing_object_names_the_url_without_signature(
    s3_workspace: Path, s3: S3ChannelServer, tmp_path: Path
) -> None:
    lock = s3_workspace / "pixi.lock"
    name = "hello-bin-1.0-"
    assert name in lock.read_text()
    lock.write_text(lock.read_text().replace(name, "hello-bin-1.0-gone-"))
    config = write_config(tmp_path / "config.toml", s3)
    auth = write_auth(tmp_path / "auth.json")
    result = pack_prod(
        s3_workspace, tmp_path / "environment.tar", "-c", config, "--auth-file", auth, check=False
    )
    err = result.stderr.decode()
    assert result.returncode == 1
    assert f"s3://{BUCKET}/channel/linux-64/hello-bin-1.0-gone-" in err and "HTTP 404" in err
    assert "X-Amz-" not in err and "pack-reader" not in err
    assert not (tmp_path / "environment.tar").exists()


def test_virtual_host_style(
    s3_workspace: Path, s3: S3ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    """``force-path-style = false`` asks ``conda-channel.localhost:PORT`` for ``/channel/...``.

    That name need not resolve here, so the first run must fail naming it (proof that the bucket
    went into the host name); moto as the HTTP proxy then plays the DNS and the pack succeeds.
    """
    config = write_config(tmp_path / "config.toml", s3, path_style=False)
    auth = write_auth(tmp_path / "auth.json")
    pack_file = tmp_path / "environment.tar"
    options = ("-c", config, "--auth-file", auth)
    import socket

    try:
        socket.getaddrinfo(f"{BUCKET}.localhost", s3.port)
    except OSError:
        failed = pack_prod(s3_workspace, pack_file, *options, check=False)
        assert failed.returncode == 1
        assert f"could not connect to {BUCKET}.localhost:{s3.port}" in failed.stderr.decode()
        assert not pack_file.exists()
    pack_prod(s3_workspace, pack_file, *options, env={"HTTP_PROXY": s3.proxy, "http_proxy": s3.proxy})
    assert_pack_holds_channel_files(pack_file, channel_dir)


def test_s3_mirror_of_an_http_channel(
    workspace: Path, channel_server: ChannelServer, s3: S3ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    """A ``[mirrors]`` entry may point an http channel at a bucket (the original is then not asked)."""
    config = write_config(tmp_path / "config.toml", s3)
    with config.open("a") as f:
        f.write(f'\n[mirrors]\n"{channel_server.url}" = ["{s3.url}"]\n')
    auth = write_auth(tmp_path / "auth.json")
    pack_file = tmp_path / "environment.tar"
    before = channel_server.log.count(".conda") + channel_server.log.count(".tar.bz2")
    pack_prod(workspace, pack_file, "-c", config, "--auth-file", auth)
    assert channel_server.log.count(".conda") + channel_server.log.count(".tar.bz2") == before
    assert_pack_holds_channel_files(pack_file, channel_dir)


def test_a_bucket_without_options_is_reached_the_aws_way(
    s3_workspace: Path, s3: S3ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    """No config at all: endpoint, region and credentials come from the AWS environment variables."""
    pack_file = tmp_path / "environment.tar"
    aws = {
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "env-reader",
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    result = pack_prod(s3_workspace, pack_file, "-vv", env=aws)
    assert_no_secret(result.stdout + result.stderr, SECRET)
    assert_pack_holds_channel_files(pack_file, channel_dir, secrets=(SECRET,))


def test_an_object_larger_than_the_lock_says_is_refused(
    s3_workspace: Path, s3: S3ChannelServer, tmp_path: Path
) -> None:
    """S3 (rattler's client, the sink's writer) stops at the lock's size like http does."""
    lock = s3_workspace / "pixi.lock"
    text, count = re.subn(
        r"(- conda: s3://\S+/linux-64/hello-bin-[^\n]+\n(?:  [^\n]*\n)*?  size: )\d+",
        r"\g<1>100",
        lock.read_text(),
    )
    assert count == 1
    lock.write_text(text)
    config = write_config(tmp_path / "config.toml", s3)
    auth = write_auth(tmp_path / "auth.json")
    out = tmp_path / "out"
    out.mkdir()
    result = pack_prod(s3_workspace, out / "environment.tar", "-c", config, "--auth-file", auth, check=False)
    err = result.stderr.decode()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "hello-bin" in lines[0] and "more than the 100 bytes the lock records" in lines[0], lines[0]
    assert list(out.iterdir()) == []
