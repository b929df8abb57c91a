"""``-c/--config``: a pixi/rattler ``config.toml`` as users have it, end to end through ``pixi-pack``.

A user's pixi config must work unchanged; keys no pixi config knows draw a warning; a value of the
wrong type stops the run with one line naming the key, the file and the type expected, before
anything is downloaded or written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pack_prod
from pack_checks import (
    assert_pack_holds_channel_files,
    isolated_credentials,  # noqa: F401 - a fixture
)

from pixi_pack_ext.testing.faulty_server import FaultyServer
from pixi_pack_ext.testing.locks import relocate_workspace
from pixi_pack_ext.testing.world import ChannelServer

pytestmark = pytest.mark.usefixtures("isolated_credentials")


def test_a_users_pixi_config_works_unchanged(
    workspace: Path, channel_server: ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""\
default-channels = ["conda-forge"]
change-ps1 = false
tls-no-verify = false
detached-environments = false
pinning-strategy = "semver"
run-post-link-scripts = "false"

[mirrors]
"{channel_server.url}" = ["{channel_server.url}"]

[repodata-config]
disable-jlap = true

[pypi-config]
index-url = "https://pypi.org/simple"

[s3-options.my-bucket]
endpoint-url = "https://s3.eu-central-1.amazonaws.com"
region = "eu-central-1"
force-path-style = false

[concurrency]
downloads = 4
solves = 2

[shell]
change-ps1 = false

[proxy-config]
https = "http://proxy.example.com:8080"
"""
    )
    result = pack_prod(workspace, tmp_path / "env.tar", "-c", config)
    err = result.stderr.decode()
    assert "WARNING" not in err and "unknown key" not in err, err
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


def test_unknown_keys_warn_and_packing_goes_on(workspace: Path, channel_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'colour-scheme = "dark"\n\n[concurrency]\nparallel = 3\n\n'
        '[s3-options.bucket]\nendpoint-url = "http://127.0.0.1:9000"\nregion = "r"\nacl = "private"\n'
    )
    result = pack_prod(workspace, tmp_path / "env.tar", "-c", config)
    err = " ".join(result.stderr.decode().split())
    for key in ("colour-scheme", "concurrency.parallel", "s3-options.bucket.acl"):
        assert f"unknown key '{key}' in {config} is ignored" in err, err
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir)


WRONG = {
    "downloads-not-an-integer": (
        '[concurrency]\ndownloads = "many"\n',
        "'concurrency.downloads' in {config} must be an integer, not a string",
    ),
    "downloads-zero": (
        "[concurrency]\ndownloads = 0\n",
        "'concurrency.downloads' in {config} must be at least 1",
    ),
    "legacy-downloads": (
        "max-concurrent-downloads = 2.5\n",
        "'max-concurrent-downloads' in {config} must be an integer, not a float",
    ),
    "mirrors-not-a-table": (
        'mirrors = ["https://mirror.example.com/conda-forge"]\n',
        "'mirrors' in {config} must be a table of URL = [mirror URLs], not an array",
    ),
    "mirror-list-not-an-array": (
        '[mirrors]\n"https://conda.anaconda.org/conda-forge" = "https://mirror.example.com/conda-forge"\n',
        """'mirrors."https://conda.anaconda.org/conda-forge"' in {config} must be an array of mirror URLs, """
        "not a string",
    ),
    "mirror-not-a-url": (
        '[mirrors]\n"https://conda.anaconda.org/conda-forge" = ["mirror.example.com/conda-forge"]\n',
        """'mirrors."https://conda.anaconda.org/conda-forge"' in {config} must be a URL starting with """
        "scheme://, not 'mirror.example.com/conda-forge'",
    ),
    "endpoint-not-a-string": (
        '[s3-options.bucket]\nendpoint-url = 9000\nregion = "eu-central-1"\n',
        "'s3-options.bucket.endpoint-url' in {config} must be a URL string, not an integer",
    ),
    "endpoint-not-http": (
        '[s3-options.bucket]\nendpoint-url = "s3://bucket"\nregion = "eu-central-1"\n',
        "'s3-options.bucket.endpoint-url' in {config} must be a URL starting with http:// or https://",
    ),
    "path-style-not-a-boolean": (
        '[s3-options.bucket]\nendpoint-url = "http://127.0.0.1:9000"\nregion = "r"\nforce-path-style = "yes"\n',
        "'s3-options.bucket.force-path-style' in {config} must be a boolean, not a string",
    ),
    "s3-options-incomplete": (
        '[s3-options.bucket]\nregion = "eu-central-1"\n',
        "'s3-options.bucket' in {config} needs both 'endpoint-url' and 'region'",
    ),
    "tls-not-a-boolean": (
        "tls-no-verify = 1\n",
        "'tls-no-verify' in {config} must be a boolean, not an integer",
    ),
    "not-toml": ("[mirrors\n", "config file '{config}' is not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_wrong_values_stop_with_one_line(case: str, workspace: Path, tmp_path: Path) -> None:
    text, expected = WRONG[case]
    config = tmp_path / "config.toml"
    config.write_text(text)
    result = pack_prod(workspace, tmp_path / "env.tar", "-c", config, check=False)
    err = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: " + expected.format(config=config)), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "home"]  # nothing written


def test_missing_config_and_auth_files_are_one_line(workspace: Path, tmp_path: Path) -> None:
    result = pack_prod(workspace, tmp_path / "env.tar", "-c", tmp_path / "nope.toml", check=False)
    assert result.stderr.decode().strip() == (
        f"error: config file '{tmp_path / 'nope.toml'}' does not exist; check the -c/--config path"
    )
    result = pack_prod(workspace, tmp_path / "env.tar", "--auth-file", tmp_path / "nope.json", check=False)
    assert (
        result.stderr.decode()
        .strip()
        .startswith(f"error: auth file '{tmp_path / 'nope.json'}' does not exist")
    )
    bad = tmp_path / "auth.json"
    bad.write_text('{"conda.example.com": {"Password": "x"}}')
    result = pack_prod(workspace, tmp_path / "env.tar", "--auth-file", bad, check=False)
    assert result.stderr.decode().strip() == (
        f"error: auth entry 'conda.example.com' in {bad} has an unknown or malformed kind 'Password'"
    )
    assert not (tmp_path / "env.tar").exists()


def test_authentication_override_file_and_snake_case_keys(
    workspace: Path, channel_server: ChannelServer, channel_dir: Path, tmp_path: Path
) -> None:
    """pixi's older ``snake_case`` spellings still work, and the config can name the auth file."""
    secret = "override-secret-99"
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"127.0.0.1": {"BasicHTTP": {"username": "u", "password": secret}}}))
    config = tmp_path / "config.toml"
    config.write_text(f"tls_no_verify = false\nauthentication_override_file = {json.dumps(str(auth))}\n")
    with FaultyServer(channel_dir, basic_auth=("u", secret)) as server:
        ws = relocate_workspace(workspace, tmp_path / "ws", channel_server.url, server.url)
        result = pack_prod(ws, tmp_path / "env.tar", "-c", config, "-v")
        assert server.fault_log.paths("401") == []
    err = result.stderr.decode()
    assert "unknown key" not in err and secret not in err
    assert_pack_holds_channel_files(tmp_path / "env.tar", channel_dir, secrets=(secret,))
