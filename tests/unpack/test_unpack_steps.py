"""Unpack steps: ``prepare`` runs while rattler installs, ``run`` after it; the wheel step uses both."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
import rattler
from conftest import needs_linux64
from pypi_world import PythonWorld

from pixi_pack_ext.errors import UnpackError
from pixi_pack_ext.hookspecs import UnpackContext, UnpackStep, hookimpl
from pixi_pack_ext.plugins import PluginManager
from pixi_pack_ext.unpack.driver import UnpackOptions, unpack
from pixi_pack_ext.unpack.step_runner import StepRunner
from pixi_pack_ext.unpack.wheel_install import STAGED_PREFIX, install_wheels, stage_wheels


class _RecordingStep:
    """A third-party step: ``prepare`` notes what it was given and leaves a file in its scratch
    folder; ``run`` copies that file into the environment."""

    def __init__(self, fail_in_prepare: bool = False) -> None:
        self.fail_in_prepare = fail_in_prepare
        self.seen: dict[str, object] = {}

    def prepare(self, context: UnpackContext) -> None:
        assert context.scratch is not None
        self.seen["records"] = sorted(str(r.name.normalized) for r in context.records)
        self.seen["scratch"] = context.scratch
        if self.fail_in_prepare:
            raise UnpackError("the recording step refused the pack while preparing")
        (context.scratch / "made-while-installing.txt").write_text("prepared\n")

    def run(self, context: UnpackContext) -> None:
        assert context.scratch is not None
        shutil.copy(context.scratch / "made-while-installing.txt", context.prefix / "from-prepare.txt")

    @hookimpl
    def pixi_pack_unpack_steps(self) -> list[UnpackStep]:
        return [UnpackStep(name="recording step", run=self.run, prepare=self.prepare)]


@needs_linux64
def test_prepare_overlaps_the_install_and_hands_its_work_to_run(prod_tar: Path, tmp_path: Path) -> None:
    step = _RecordingStep()
    prefix = unpack(
        UnpackOptions(pack=prod_tar, output_directory=tmp_path), PluginManager(extra_plugins=[step])
    )
    assert (prefix / "from-prepare.txt").read_text() == "prepared\n"
    assert "hello-bin" in step.seen["records"]  # type: ignore[operator]
    assert not Path(step.seen["scratch"]).exists()  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["activate.sh", "env"]


@needs_linux64
def test_an_error_in_prepare_fails_the_unpack_and_leaves_nothing(prod_tar: Path, tmp_path: Path) -> None:
    step = _RecordingStep(fail_in_prepare=True)
    out = tmp_path / "target"
    with pytest.raises(UnpackError, match="refused the pack while preparing"):
        unpack(UnpackOptions(pack=prod_tar, output_directory=out), PluginManager(extra_plugins=[step]))
    assert step.seen["records"] and not out.exists()


def test_prepare_runs_while_the_body_of_preparing_runs(tmp_path: Path) -> None:
    """The body waits for ``prepare`` to start and ``prepare`` for the body: run one after the
    other, either would time out."""
    body_running, prepare_running = threading.Event(), threading.Event()
    seen: list[str] = []

    def prepare(context: UnpackContext) -> None:
        prepare_running.set()
        seen.append("prepare saw the body" if body_running.wait(30) else "prepare waited alone")

    def run(context: UnpackContext) -> None:
        seen.append("run")

    runner = StepRunner(
        [UnpackStep(name="overlapping", run=run, prepare=prepare)],
        pack_dir=tmp_path,
        prefix=tmp_path / "env",
        platform="linux-64",
        records=[],
        scratch_root=tmp_path / "steps",
    )
    with runner.preparing():
        body_running.set()
        seen.append("body saw prepare" if prepare_running.wait(30) else "body waited alone")
    runner.run_all()
    assert sorted(seen[:2]) == ["body saw prepare", "prepare saw the body"] and seen[2:] == ["run"]


def test_an_error_in_prepare_is_raised_after_the_body(tmp_path: Path) -> None:
    done: list[str] = []

    def prepare(context: UnpackContext) -> None:
        raise UnpackError("prepare failed")

    runner = StepRunner(
        [UnpackStep(name="failing", run=lambda context: None, prepare=prepare)],
        pack_dir=tmp_path,
        prefix=tmp_path / "env",
        platform="linux-64",
        records=[],
        scratch_root=tmp_path / "steps",
    )
    with pytest.raises(UnpackError, match="prepare failed"), runner.preparing():
        time.sleep(0.05)
        done.append("body")
    assert done == ["body"]


def _wheel_context(py_world: PythonWorld, tmp_path: Path, interpreter: str) -> UnpackContext:
    """A pack folder with the greet-cli wheel, and an environment whose python record matches this
    interpreter and whose only executable is ``interpreter`` (a link to the running python)."""
    pack_dir = tmp_path / "pack"
    (pack_dir / "pypi").mkdir(parents=True)
    shutil.copy(py_world.wheels["greet-cli"], pack_dir / "pypi")
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    prefix = tmp_path / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    record = {"name": "python", "version": version, "build": "h0_cpython"}
    (prefix / "conda-meta" / f"python-{version}-h0_cpython.json").write_text(json.dumps(record))
    (prefix / "bin").mkdir()
    (prefix / interpreter).symlink_to(os.path.realpath(sys.executable))
    records = (rattler.PackageRecord("python", version, rattler.BuildString("h0_cpython"), 0, "linux-64"),)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return UnpackContext(
        pack_dir=pack_dir, prefix=prefix, platform="linux-64", records=records, scratch=scratch
    )  # type: ignore[arg-type]


def _site(context: UnpackContext) -> Path:
    return (
        context.prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a POSIX environment layout")
def test_wheels_installed_while_staging_are_moved_into_place(py_world: PythonWorld, tmp_path: Path) -> None:
    context = dataclasses.replace(_wheel_context(py_world, tmp_path, "bin/python"), compile_bytecode=True)
    stage_wheels(context)
    assert context.scratch is not None
    staged = context.scratch / STAGED_PREFIX
    assert (staged / "bin" / "greet").is_file() and not (context.prefix / "bin" / "greet").exists()

    install_wheels(context)
    script = context.prefix / "bin" / "greet"
    assert script.read_text().splitlines()[0] == f"#!{context.prefix / 'bin' / 'python'}"
    assert (_site(context) / "greet_cli" / "__init__.py").is_file()
    assert "../../../bin/greet,sha256=" in (_site(context) / "greet_cli-1.0.dist-info" / "RECORD").read_text()
    assert [p for p in staged.rglob("*") if not p.is_dir()] == []  # moved, not installed twice
    assert list((_site(context) / "greet_cli" / "__pycache__").glob("__init__.*.pyc"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a POSIX environment layout")
def test_wheels_are_installed_again_when_the_staged_interpreter_is_not_there(
    py_world: PythonWorld, tmp_path: Path
) -> None:
    context = _wheel_context(py_world, tmp_path, "bin/python3")  # staging guessed bin/python
    stage_wheels(context)
    install_wheels(context)
    script = context.prefix / "bin" / "greet"
    assert script.read_text().splitlines()[0] == f"#!{context.prefix / 'bin' / 'python3'}"
    assert (_site(context) / "greet_cli" / "__init__.py").is_file()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a POSIX environment layout")
def test_no_bytecode_is_compiled_unless_asked(py_world: PythonWorld, tmp_path: Path) -> None:
    """Compiling runs the environment's python (code from the pack): only with --compile-bytecode."""
    context = _wheel_context(py_world, tmp_path, "bin/python")
    stage_wheels(context)
    install_wheels(context)
    assert (_site(context) / "greet_cli" / "__init__.py").is_file()
    assert not list(context.prefix.rglob("*.pyc"))
