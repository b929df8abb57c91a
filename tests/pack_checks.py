"""What a user checks after packing from some source: the pack holds the channel's exact files, and
no secret went into it or onto the terminal; plus a fixture that keeps this machine's credentials
(``~/.rattler``, ``~/.netrc``, AWS profiles, proxies) out of a test."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest


def assert_pack_holds_channel_files(
    pack_file: Path, channel_dir: Path, secrets: tuple[str, ...] = ()
) -> None:
    """Every package in the pack is byte for byte the channel's file, and no secret is anywhere in it."""
    with tarfile.open(pack_file) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    packages = {name: data for name, data in files.items() if name.endswith((".conda", ".tar.bz2"))}
    assert packages, sorted(files)
    for name, data in packages.items():
        assert data == (channel_dir / name.removeprefix("channel/")).read_bytes(), name
    everything = b"".join([name.encode() for name in files] + list(files.values()))
    for secret in secrets:
        assert secret.encode() not in everything, f"a secret went into the pack: {secret[:3]}..."


def assert_no_secret(output: bytes, *secrets: str) -> None:
    for secret in secrets:
        assert secret.encode() not in output, f"a secret was shown: {secret[:3]}..."


def package_paths(channel_dir: Path) -> list[str]:
    """``/subdir/file`` of every package file in a channel (as a server sees the request path)."""
    return sorted(
        "/" + p.relative_to(channel_dir).as_posix()
        for p in channel_dir.rglob("*")
        if p.name.endswith((".conda", ".tar.bz2"))
    )


@pytest.fixture
def isolated_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A HOME with nothing in it, and no credential or proxy variables from this machine."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "RATTLER_AUTH_FILE",
        "NETRC",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home
