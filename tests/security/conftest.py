"""A real pack of the demo workspace, and a harness that unpacks a hostile variant of it."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import host_platform, run

from pixi_pack_ext.metadata import SEAL_FILES

from .hostile import Member, read_members, snapshot, write_pack


@pytest.fixture(scope="session")
def good_pack(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo ``prod`` environment packed for this machine (a real pixi-pack pack)."""
    if host_platform() != "linux-64":
        pytest.skip("the demo workspace is locked for linux-64, win-64 and osx-arm64 only")
    pack = tmp_path_factory.mktemp("good-pack") / "environment.tar"
    run("pixi-pack", workspace, "-e", "prod", "-p", host_platform(), "-o", pack)
    return pack


@pytest.fixture
def members(good_pack: Path) -> list[Member]:
    """A fresh, editable copy of the good pack's members, without its manifest: an attacker drops it
    (only ``--trusted-key`` makes one required), so every check behind it must hold on its own.
    Hostile packs that keep a manifest are tested in tests/test_signing.py."""
    return [m for m in read_members(good_pack) if m.info.name not in SEAL_FILES]


@dataclass
class Outcome:
    """What a user sees after an unpack: the process, and whether anything changed on disk."""

    result: subprocess.CompletedProcess[bytes]
    changed: set[str]
    output: Path


@pytest.fixture
def escape(tmp_path: Path) -> Path:
    """Where hostile entries try to write: a fresh name next to (outside) the output folder."""
    return tmp_path / f"escaped-{uuid.uuid4().hex[:8]}"


#: From the extraction folder (``run/out/.pixi-unpack-*/pack``) up to ``tmp_path``.
UP_TO_TMP = "../../../../"


@pytest.fixture
def unpack_hostile(tmp_path: Path) -> Callable[..., Outcome]:
    """Write the members as a pack, unpack it into a new folder and report every change on disk."""

    def go(
        members: list[Member], *extra: str, stdin: bool = False, env: dict[str, str] | None = None
    ) -> Outcome:
        pack = write_pack(tmp_path / "hostile.tar", members)
        (tmp_path / "run").mkdir(exist_ok=True)
        output = tmp_path / "run" / "out"
        before = snapshot(tmp_path)
        if stdin:
            result = run(
                "pixi-unpack", "-", "-o", output, *extra, input=pack.read_bytes(), check=False, env=env
            )
        else:
            result = run("pixi-unpack", pack, "-o", output, *extra, check=False, env=env)
        after = snapshot(tmp_path)
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        return Outcome(result, changed, output)

    return go
