"""examples/run_demo.py: the README's first command and the quick start's first step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, needs_linux64, run

SCRIPT = REPO / "examples" / "run_demo.py"


def demo(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_help_only_prints_usage(tmp_path: Path) -> None:
    result = demo("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: run_demo.py")
    assert "--workspace DIR" in result.stdout
    assert "building" not in result.stdout


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    result = demo("--keep", cwd=tmp_path)
    assert result.returncode == 2
    assert "unrecognized arguments: --keep" in result.stderr


def test_workspace_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = demo("--workspace", "mine", cwd=tmp_path)
    assert result.returncode == 1
    assert "is not empty and is no demo workspace" in result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@needs_linux64
def test_workspace_works_offline_without_a_server(tmp_path: Path) -> None:
    """The workspace's lock names a channel folder, not a server: packing reads the files, and the
    pack unpacks into an environment whose program runs."""
    result = demo("--workspace", "ws", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    workspace = tmp_path / "ws"
    assert result.stdout.splitlines()[-1] == str(workspace)
    lock = (workspace / "pixi.lock").read_text()
    assert "http" not in lock
    assert (workspace / "demo-channel").as_uri() in lock
    run("pixi-pack", "-e", "prod", "-o", tmp_path / "env.tar", cwd=workspace)
    run("pixi-unpack", tmp_path / "env.tar", "-o", tmp_path / "target")
    hello = run(tmp_path / "target" / "env" / "bin" / "hello")
    assert hello.stdout.strip()
    # made again in place: the earlier demo workspace is replaced, not refused
    assert demo("--workspace", "ws", cwd=tmp_path).returncode == 0


def test_building_the_demo_recipes_writes_nothing_into_the_source_tree(tmp_path: Path) -> None:
    """rattler-build writes the recipe it parses into its folder: the test world builds from a copy,
    so examples/ stays as checked out (two test runs at once once truncated a recipe there)."""
    from pixi_pack_ext.testing.world import build_recipe

    recipes = REPO / "examples" / "demo" / "recipes"

    def snapshot() -> dict[str, tuple[bytes, int]]:
        return {
            str(p.relative_to(recipes)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(recipes.rglob("*"))
            if p.is_file()
        }

    before = snapshot()
    for recipe in sorted(recipes.glob("*/recipe.yaml")):
        assert build_recipe(recipe, tmp_path / "channel")
    assert snapshot() == before
