"""PyPI wheels from the lock: packed into ``pypi/``, installed offline by pixi-unpack, refused when unusable."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import rattler
from conftest import needs_linux64, run
from packaging.tags import parse_tag
from pypi_world import PythonWorld, needs_host_python

from pixi_pack_ext.envpython import (
    EnvPython,
    PythonNotFoundError,
    fits_loosely,
    parse_wheel_name,
    python_for_wheels,
)
from pixi_pack_ext.testing.python import retag_wheel, set_wheel_metadata
from pixi_pack_ext.testing.world import PypiEntry


def _last_line(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode().strip().splitlines()
    return lines[-1] if lines else ""


def _refused_at_unpack(workspace: Path, tmp_path: Path) -> str:
    """Pack ``workspace`` for linux-64 and unpack it into an empty folder: the unpack fails with exit
    code 1 and leaves the folder empty; returns its last line."""
    pack = tmp_path / "environment.tar"
    run("pixi-pack", workspace, "-p", "linux-64", "-o", pack)
    out = tmp_path / "target"
    out.mkdir()
    result = run("pixi-unpack", pack, cwd=out, check=False)
    assert result.returncode == 1, result.stderr.decode()
    assert list(out.iterdir()) == []
    return _last_line(result)


def _pack_tar_names(pack: Path) -> list[str]:
    with tarfile.open(pack) as tar:
        return sorted(tar.getnames())


@needs_linux64
@needs_host_python
def test_wheels_packed_installed_and_runnable(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "wheels").mkdir()
    local = shutil.copy(py_world.wheels["greet-local"], workspace / "wheels")
    py_world.lock(
        workspace,
        specs=["python", "pip"],
        pypi=[
            py_world.entry("greet-cli"),
            py_world.entry("greet-two", location="direct+" + py_world.wheel_url("greet-two")),
            py_world.entry("greet-local", location=f"wheels/{Path(local).name}"),
        ],
    )
    pack = tmp_path / "environment.tar"
    result = run("pixi-pack", workspace, "-p", "linux-64", "-o", pack)
    assert "no pip" not in result.stderr.decode()

    names = _pack_tar_names(pack)
    for wheel in ("greet-cli", "greet-two", "greet-local"):
        assert f"pypi/{py_world.wheels[wheel].name}" in names
    with tarfile.open(pack) as tar:
        env_yml = tar.extractfile("environment.yml").read().decode()  # type: ignore[union-attr]
    assert "  - pip:\n    - --no-index\n    - --find-links ./pypi\n" in env_yml
    assert "    - greet-cli==1.0\n" in env_yml and "    - greet-local==1.0\n" in env_yml

    out = tmp_path / "target"
    out.mkdir()
    run("pixi-unpack", pack, "--compile-bytecode", cwd=out)
    env = out / "env"
    python = env / "bin" / "python"
    site = env / "lib" / f"python{py_world.python.short_version}" / "site-packages"
    tag = f"cpython-{py_world.python.short_version.replace('.', '')}"
    assert (site / "greet_cli" / "__pycache__" / f"__init__.{tag}.pyc").is_file()  # before any import

    probe = subprocess.run(
        [
            python,
            "-c",
            "import sys, greet_cli, greet_two, greet_local; print(sys.prefix); print(greet_two.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.splitlines() == [str(env), str(site / "greet_two" / "__init__.py")]

    script = env / "bin" / "greet"
    assert script.read_text().splitlines()[0] == f"#!{python}"
    assert subprocess.run([script], capture_output=True, text=True, check=True).stdout.strip() == (
        f"greet prefix={env}"
    )

    dist_info = site / "greet_cli-1.0.dist-info"
    assert (dist_info / "INSTALLER").read_text().strip() == "pixi-pack-ext"
    record = (dist_info / "RECORD").read_text()
    assert "greet_cli/__init__.py,sha256=" in record and "../../../bin/greet,sha256=" in record


def test_wheel_with_wrong_sha256_is_refused(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws", pypi=[py_world.entry("greet-two", sha256="0" * 64)])
    pack = tmp_path / "environment.tar"
    result = run("pixi-pack", workspace, "-p", "linux-64", "-o", pack, check=False)
    assert result.returncode == 1, result.stderr.decode()
    line = _last_line(result)
    assert "greet-two" in line and "sha256" in line, line
    assert "Traceback" not in result.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]


def test_non_wheels_refused_then_skipped_with_flag(py_world: PythonWorld, tmp_path: Path) -> None:
    sdist = PypiEntry("greet-src", "1.0", f"{py_world.server.url}wheels/greet_src-1.0.tar.gz")
    git = PypiEntry("greet-git", "1.0", "git+https://example.invalid/greet-git.git?rev=abc#abc")
    workspace = py_world.lock(tmp_path / "ws", pypi=[py_world.entry("greet-two"), sdist, git])
    pack = tmp_path / "environment.tar"

    refused = run("pixi-pack", workspace, "-p", "linux-64", "-o", pack, check=False)
    assert refused.returncode == 1, refused.stderr.decode()
    line = _last_line(refused)
    assert "greet-" in line and "not a wheel" in line and "--ignore-pypi-non-wheel" in line, line
    assert not pack.exists()

    skipped = run("pixi-pack", workspace, "-p", "linux-64", "-o", pack, "--ignore-pypi-non-wheel")
    stderr = skipped.stderr.decode()
    assert "skipping PyPI package 'greet-src'" in stderr and "skipping PyPI package 'greet-git'" in stderr
    assert "no pip" in stderr  # the environment has wheels but no pip for environment.yml
    names = _pack_tar_names(pack)
    assert [n for n in names if n.startswith("pypi/")] == [f"pypi/{py_world.wheels['greet-two'].name}"]


def test_workspace_own_editable_project_is_skipped(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws", pypi=[PypiEntry("pyworld", "0.1", ".")])
    pack = tmp_path / "environment.tar"
    result = run("pixi-pack", workspace, "-p", "linux-64", "-o", pack)
    assert "workspace's own project" in result.stderr.decode()
    assert not [n for n in _pack_tar_names(pack) if n.startswith("pypi/")]


@needs_linux64
@needs_host_python
def test_wheel_for_another_platform_is_refused_at_unpack(py_world: PythonWorld, tmp_path: Path) -> None:
    windows_wheel = retag_wheel(py_world.wheels["greet-two"], "cp311-cp311-win_amd64", tmp_path / "retagged")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copy(windows_wheel, workspace)
    py_world.lock(workspace, pypi=[PypiEntry("greet-two", "1.0", windows_wheel.name)])
    line = _refused_at_unpack(workspace, tmp_path)
    assert windows_wheel.name in line and "cannot run here" in line and "win_amd64" in line, line


@needs_linux64
@needs_host_python
def test_wheel_requiring_a_newer_python_is_refused_at_unpack(py_world: PythonWorld, tmp_path: Path) -> None:
    wheel = set_wheel_metadata(py_world.wheels["greet-two"], tmp_path / "ws", Requires_Python=">=3.99")
    workspace = py_world.lock(tmp_path / "ws", pypi=[PypiEntry("greet-two", "1.0", wheel.name)])
    line = _refused_at_unpack(workspace, tmp_path)
    assert wheel.name in line and "requires python >=3.99" in line and py_world.python.version in line, line


@needs_linux64
def test_wheels_without_python_are_refused_at_unpack(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws", specs=["pip"], pypi=[py_world.entry("greet-two")])
    assert "no python" in _refused_at_unpack(workspace, tmp_path)


def _conda_meta(prefix: Path, records: list[dict[str, object]]) -> Path:
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True)
    for record in records:
        (meta / f"{record['name']}-{record['version']}-{record['build']}.json").write_text(json.dumps(record))
    return prefix


def test_env_python_is_read_from_conda_records(tmp_path: Path) -> None:
    plain = EnvPython.from_prefix(
        _conda_meta(
            tmp_path / "a",
            [
                {"name": "python", "version": "3.12.4", "build": "h1_0_cpython"},
                {"name": "python-dateutil", "version": "2.9", "build": "py_0"},
            ],
        )
    )
    assert plain is not None and plain.version == (3, 12) and plain.abi == "cp312"
    assert plain.site_packages("linux-64") == "lib/python3.12/site-packages"
    assert plain.site_packages("win-64") == "Lib/site-packages"

    free = EnvPython.from_prefix(
        _conda_meta(
            tmp_path / "b",
            [
                {
                    "name": "python",
                    "version": "3.13.1",
                    "build": "h9_0_cp313t",
                    "python_site_packages_path": "lib/python3.13t/site-packages",
                },
                {"name": "python_abi", "version": "3.13", "build": "5_cp313t"},
            ],
        )
    )
    assert free is not None and free.free_threaded and free.abi == "cp313t"
    assert free.site_packages("linux-64") == "lib/python3.13t/site-packages"
    tags = free.supported_tags(["manylinux_2_17_x86_64"])
    assert parse_tag("cp313-cp313t-manylinux_2_17_x86_64") <= tags
    assert not parse_tag("cp312-abi3-manylinux_2_17_x86_64") & tags  # abi3 does not apply free-threaded

    pypy = EnvPython.from_records(
        [
            rattler.PackageRecord("python", "3.10.14", rattler.BuildString("0_pypy"), 0, "linux-64"),
            rattler.PackageRecord("python_abi", "3.10", rattler.BuildString("4_pypy310_pp73"), 0, "linux-64"),
        ]
    )
    assert pypy is not None and pypy.abi == "pypy310_pp73"
    pypy_tags = pypy.supported_tags(["linux_x86_64"])
    assert parse_tag("pp310-pypy310_pp73-linux_x86_64") <= pypy_tags
    assert not parse_tag("cp310-cp310-linux_x86_64") & pypy_tags

    assert (
        EnvPython.from_prefix(_conda_meta(tmp_path / "c", [{"name": "pip", "version": "24", "build": "0"}]))
        is None
    )


def test_python_for_wheels_finds_the_interpreter_and_a_dangling_link_only_when_asked(tmp_path: Path) -> None:
    prefix = _conda_meta(tmp_path / "env", [{"name": "python", "version": "3.12.4", "build": "h1_0_cpython"}])
    (prefix / "bin").mkdir()
    (prefix / "bin" / "python").symlink_to("/app/env/bin/python3.12")  # the in-image path: dangles here
    (prefix / "bin" / "python3").write_text("")
    python, executable = python_for_wheels(prefix, "linux-64")
    assert python.version == (3, 12) and executable == "bin/python3"
    assert python_for_wheels(prefix, "linux-64", dangling_ok=True)[1] == "bin/python"
    (prefix / "bin" / "python3").unlink()
    with pytest.raises(
        PythonNotFoundError, match=r"no interpreter at bin/python or bin/python3 or bin/python3\.12"
    ):
        python_for_wheels(prefix, "linux-64")
    with pytest.raises(PythonNotFoundError, match="no python to install them into"):
        python_for_wheels(
            _conda_meta(tmp_path / "nopy", [{"name": "pip", "version": "24", "build": "0"}]), "linux-64"
        )


def test_wheel_platform_tags_match_conda_platforms() -> None:
    python = EnvPython(3, 11)
    fits = {
        "numpy-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl": {"linux-64"},
        "numpy-2.0-cp311-cp311-macosx_11_0_arm64.whl": {"osx-arm64"},
        "numpy-2.0-cp311-cp311-macosx_10_9_universal2.whl": {"osx-arm64", "osx-64"},
        "numpy-2.0-cp311-cp311-win_amd64.whl": {"win-64"},
        "numpy-2.0-cp312-cp312-win_amd64.whl": set(),
        "six-1.16-py2.py3-none-any.whl": {"linux-64", "osx-arm64", "osx-64", "win-64", "linux-aarch64"},
        "cryptography-43-cp39-abi3-manylinux_2_28_aarch64.whl": {"linux-aarch64"},
        "musl-1.0-cp311-cp311-musllinux_1_2_x86_64.whl": set(),
    }
    for file_name, platforms in fits.items():
        wheel = parse_wheel_name(file_name)
        for platform in ("linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64"):
            assert fits_loosely(wheel, python, platform) == (platform in platforms), (file_name, platform)
