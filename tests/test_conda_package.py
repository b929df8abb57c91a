"""The tool as it ships: the conda package of recipe/recipe.yaml, and the sdist and wheel.

No conda channel and no package index are reachable here, so the channel the recipe builds against
is made offline: a ``python`` package running this interpreter (as the test world makes it), and
conda packages of the installed distributions the recipe needs (``pip``, ``setuptools`` and every
run requirement; py-rattler's carries its compiled library). The recipe is built as written (only
``python_min`` follows this interpreter, the one Python that exists here), the package is installed
with the tool itself (``pixi-pack`` of a lock that names it, ``pixi-unpack``), and the installed
commands pack and unpack the demo. The wheel goes into a clean virtual environment, its
dependencies from wheels of the installed distributions, and runs the demo too.

These builds take a minute or two: ``-m "not slow"`` leaves them out.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rattler
import rattler.package_streaming
from conftest import REPO, needs_linux64, run

from pixi_pack_ext.testing.installed_dists import (
    package_closure,
    requirement_closure,
    wheel_of_installed,
)
from pixi_pack_ext.testing.python import HostPython, build_host_python_package, build_package
from pixi_pack_ext.testing.world import clean_build_leftovers, index_channel, write_lock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAMES = tomllib.loads((REPO / "recipe" / "conda-names.toml").read_text())["names"]
RECIPE = REPO / "recipe" / "recipe.yaml"

pytestmark = [
    needs_linux64,
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="the host python package is POSIX only"),
]


def runtime_requirements() -> list[str]:
    return [r for r in PYPROJECT["dependencies"] if "extra ==" not in r]


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """python, pip, setuptools and the recipe's run requirements, as conda packages."""
    folder = tmp_path_factory.mktemp("conda-world") / "channel"
    platform = str(rattler.Subdir.current())
    build_host_python_package(folder / platform)
    package_closure([*runtime_requirements(), "pip", "setuptools>=68"], folder, platform, NAMES)
    if not _installed("tomli"):
        # the recipe always requires tomli (a noarch package cannot say "python < 3.11"); this
        # Python never imports it, so a stand-in does
        build_package(folder / "noarch", "tomli", "2.0.1", depends=["python"])
    index_channel(folder)
    return folder


@pytest.fixture(scope="module")
def conda_package(channel: Path) -> Path:
    """recipe/recipe.yaml built against the offline channel, into it."""
    from rattler_build import PlatformConfig, RenderConfig, Stage0Recipe, ToolConfiguration

    # rattler-build writes the recipe it builds into its folder: build from a copy of the source
    source = _source_copy(channel.parent / "source")
    recipe = source / "recipe" / "recipe.yaml"
    text = recipe.read_text()
    pinned = 'python_min: "{}"'.format(PYPROJECT["requires-python"].removeprefix(">="))
    assert pinned in text
    recipe.write_text(text.replace(pinned, f'python_min: "{HostPython.current().short_version}"'))
    results = Stage0Recipe.from_file(recipe).run_build(
        tool_config=ToolConfiguration(test_strategy="skip"),
        output_dir=channel,
        channels=[channel.as_uri()],
        no_build_id=True,
        package_format="conda",
        render_config=RenderConfig(platform=PlatformConfig(experimental=False)),
    )
    clean_build_leftovers(channel)
    packages = [Path(p) for result in results for p in result.packages]
    assert len(packages) == 1
    return packages[0]


def _package_info(package: Path, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    rattler.package_streaming.extract(package, tmp_path / "package")
    info = tmp_path / "package" / "info"
    paths = json.loads((info / "paths.json").read_text())["paths"]
    return (
        json.loads((info / "index.json").read_text()),
        json.loads((info / "link.json").read_text()),
        [p["_path"] for p in paths],
    )


def test_conda_package_says_what_pyproject_says(conda_package: Path, tmp_path: Path) -> None:
    index, link, paths = _package_info(conda_package, tmp_path)
    assert (index["name"], index["version"], index["noarch"]) == (
        PYPROJECT["name"],
        PYPROJECT["version"],
        "python",
    )
    entry_points = sorted(f"{name} = {target}" for name, target in PYPROJECT["scripts"].items())
    assert sorted(link["noarch"]["entry_points"]) == entry_points
    depends = {rattler.MatchSpec(spec).name.normalized for spec in index["depends"]}
    wanted = {
        NAMES.get(re.split(r"[\[<>=;~ ]", r)[0], re.split(r"[\[<>=;~ ]", r)[0])
        for r in runtime_requirements()
    }
    assert wanted <= depends
    # the pack format's shell headers are package data the self-extracting format reads
    assert "site-packages/pixi_pack_ext/selfextract/header.sh" in paths


def test_conda_package_installs_with_the_tool_and_packs_the_demo(
    channel: Path, conda_package: Path, tmp_path: Path, workspace: Path
) -> None:
    """The tool ships itself: pixi-pack packs an environment holding pixi-pack-ext, pixi-unpack
    installs it, and the installed commands pack and unpack the demo environment."""
    tool_workspace = tmp_path / "tool-workspace"
    tool_workspace.mkdir()
    platform = str(rattler.Subdir.current())
    (tool_workspace / "pixi.toml").write_text(
        f'[workspace]\nname = "tool"\nchannels = ["{channel.as_uri()}"]\nplatforms = ["{platform}"]\n\n'
        '[dependencies]\npixi-pack-ext = "*"\n'
    )
    write_lock(tool_workspace / "pixi.lock", channel.as_uri(), {"default": [PYPROJECT["name"]]}, [platform])
    run("pixi-pack", tool_workspace, "-o", tmp_path / "tool.tar")
    run("pixi-unpack", tmp_path / "tool.tar", "-o", tmp_path / "tool", "-e", "env")
    bin_dir = tmp_path / "tool" / "env" / "bin"
    version = run(bin_dir / "pixi-pack", "--version").stdout.decode()
    assert version.strip() == f"pixi-pack, version {PYPROJECT['version']}"
    assert run(bin_dir / "pixi-unpack", "--version").stdout.decode().strip().endswith(PYPROJECT["version"])

    demo_tar = tmp_path / "demo.tar"
    run(bin_dir / "pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "-o", demo_tar)
    run(bin_dir / "pixi-unpack", demo_tar, "-o", tmp_path / "target")
    prefix = tmp_path / "target" / "env"
    hello = run(prefix / "bin" / "hello").stdout.decode().strip()
    assert hello == f"hello-bin prefix={prefix}"


# --------------------------------------------------------------------------------------------------
# sdist and wheel
# --------------------------------------------------------------------------------------------------


def _source_copy(target: Path) -> Path:
    """The source tree as a fresh clone has it (no venv, build output or caches)."""
    ignored = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", ".work", "__pycache__", ".pytest_cache",
        ".ruff_cache", ".hypothesis", "output",
    )  # fmt: skip
    shutil.copytree(REPO, target, ignore=ignored, symlinks=True)
    return target


@pytest.fixture(scope="module")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """``python -m build`` of a copy of the source: the sdist, and the wheel built from it."""
    work = tmp_path_factory.mktemp("dists")
    source = _source_copy(work / "source")
    out = work / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sorted(out.iterdir())


def test_sdist_and_wheel_pass_twine_check(distributions: list[Path]) -> None:
    names = [p.name for p in distributions]
    version = PYPROJECT["version"]
    assert names == [f"pixi_pack_ext-{version}-py3-none-any.whl", f"pixi_pack_ext-{version}.tar.gz"]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, distributions)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_wheel_installs_into_a_clean_venv_and_runs_the_demo(
    distributions: list[Path], tmp_path: Path
) -> None:
    """pip installs the wheel with its dependencies (wheels of the installed distributions, no
    index), and ``examples/run_demo.py`` runs with that environment's commands."""
    wheelhouse = tmp_path / "wheelhouse"
    for dist in requirement_closure(
        [*runtime_requirements(), *PYPROJECT["optional-dependencies"]["testing"]]
    ):
        wheel_of_installed(dist, wheelhouse)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    wheel = next(p for p in distributions if p.suffix == ".whl")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1"}
    env.pop("PIP_FIND_LINKS", None)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheelhouse),
         f"{wheel}[testing]"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert (venv / "bin" / "pixi-pack").is_file() and (venv / "bin" / "pixi-unpack").is_file()

    examples = _source_copy(tmp_path / "source") / "examples"
    demo = subprocess.run(
        [str(python), str(examples / "run_demo.py")], capture_output=True, text=True, timeout=600
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "hello from greeting-data" in demo.stdout
    assert f"{venv / 'bin' / 'pixi-pack'}" in demo.stdout  # the venv's own command packed
