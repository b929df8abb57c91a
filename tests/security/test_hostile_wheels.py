"""Hostile wheels in a pack (right hash, listed in the lock): a member that climbs out of its
install folder, or names an absolute path, is refused; nothing is written outside, no env is left."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from conftest import needs_linux64, run
from pypi_world import PythonWorld, needs_host_python

from pixi_pack_ext.testing.python import _rewrite_wheel, sha256_of
from pixi_pack_ext.testing.world import PypiEntry

from .hostile import error_line, snapshot

pytestmark = [needs_linux64, needs_host_python]

#: From site-packages (``target/env/lib/pythonX.Y/site-packages``) up to ``tmp_path``.
UP_FROM_SITE_PACKAGES = "../../../../../"


def _hostile_wheel(wheel: Path, output: Path, member: str) -> Path:
    def edit(dist_info: str, contents: dict[str, bytes]) -> None:
        contents[member] = b"escaped\n"

    return _rewrite_wheel(wheel, output / wheel.name, edit)


@pytest.mark.parametrize("kind", ["dot-dot", "data dot-dot", "absolute"])
def test_hostile_wheel_is_refused(kind: str, py_world: PythonWorld, tmp_path: Path) -> None:
    name = f"escaped-{uuid.uuid4().hex[:8]}.txt"
    member = {
        "dot-dot": UP_FROM_SITE_PACKAGES + name,
        "data dot-dot": f"greet_two-1.0.data/data/../../{name}",
        "absolute": str(tmp_path / name),
    }[kind]
    wheel = _hostile_wheel(py_world.wheels["greet-two"], tmp_path / "ws", member)
    workspace = py_world.lock(
        tmp_path / "ws", pypi=[PypiEntry("greet-two", "1.0", wheel.name, sha256_of(wheel))]
    )
    pack = tmp_path / "environment.tar"
    run("pixi-pack", workspace, "-p", "linux-64", "-o", pack)
    before = snapshot(tmp_path)
    line = error_line(run("pixi-unpack", pack, "-o", tmp_path / "target", check=False))
    reason = "an absolute path" if kind == "absolute" else "a '..' component"
    assert f"refusing wheel {wheel.name}: it holds '{member}', {reason}" in line, line
    assert snapshot(tmp_path) == before
    assert not Path("/", name).exists()
