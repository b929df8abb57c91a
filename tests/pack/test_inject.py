"""``--inject``: local conda packages and wheels added to a pack without re-solving, or refused."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

from conftest import needs_linux64, run
from pypi_world import PythonWorld, needs_host_python

from pixi_pack_ext.testing.python import build_package, retag_wheel


def _last_line(result: subprocess.CompletedProcess[bytes]) -> str:
    lines = result.stderr.decode().strip().splitlines()
    return lines[-1] if lines else ""


def _refused(workspace: Path, tmp_path: Path, *inject: Path, code: int = 1) -> str:
    """Pack with injections that must fail; returns the error line after checking nothing was left."""
    pack = tmp_path / "environment.tar"
    args: list[str | Path] = []
    for path in inject:
        args += ["-i", path]
    result = run("pixi-pack", workspace, "-p", "linux-64", "-o", pack, *args, check=False)
    assert result.returncode == code, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    assert not pack.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".pixi-pack")]
    return _last_line(result)


@needs_linux64
@needs_host_python
def test_inject_conda_packages_and_a_wheel(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws", specs=["python", "tool"])
    local = tmp_path / "local"
    tool = build_package(
        local,
        "tool",
        "2.0",
        "linux-64",
        depends=["python >=3", "extra-data"],
        files={"share/tool/v": "2.0\n"},
    )
    extra = build_package(
        local, "extra-data", "0.5", archive="tar.bz2", files={"share/extra/data.txt": "x\n"}
    )
    wheel = py_world.wheels["greet-two"]
    pack = tmp_path / "environment.tar"
    # tool depends on extra-data, injected after it: the order on the command line does not matter.
    result = run("pixi-pack", workspace, "-p", "linux-64", "-o", pack, "-i", tool, "-i", extra, "-i", wheel)
    assert "replaces the locked 'tool=1.0=h0_0'" in result.stderr.decode()

    with tarfile.open(pack) as tar:
        names = tar.getnames()
        linux = json.loads(tar.extractfile("channel/linux-64/repodata.json").read())  # type: ignore[union-attr]
        noarch = json.loads(tar.extractfile("channel/noarch/repodata.json").read())  # type: ignore[union-attr]
        env_yml = tar.extractfile("environment.yml").read().decode()  # type: ignore[union-attr]
    assert "channel/linux-64/tool-2.0-h0_0.conda" in names
    assert not [n for n in names if "tool-1.0" in n]
    assert "channel/noarch/extra-data-0.5-h0_0.tar.bz2" in names
    assert f"pypi/{wheel.name}" in names
    entry = linux["packages.conda"]["tool-2.0-h0_0.conda"]
    data = tool.read_bytes()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["md5"] == hashlib.md5(data).hexdigest()
    assert entry["size"] == len(data) and entry["depends"] == ["python >=3", "extra-data"]
    assert "extra-data-0.5-h0_0.tar.bz2" in noarch["packages"]
    assert "  - tool=2.0=h0_0\n" in env_yml and "    - greet-two==1.0\n" in env_yml

    out = tmp_path / "target"
    out.mkdir()
    run("pixi-unpack", pack, cwd=out)
    env = out / "env"
    assert (env / "share" / "tool" / "v").read_text() == "2.0\n"
    assert (env / "share" / "extra" / "data.txt").is_file()
    assert [p.name for p in (env / "conda-meta").glob("tool-*.json")] == ["tool-2.0-h0_0.json"]
    probe = subprocess.run(
        [env / "bin" / "python", "-c", "import greet_two; print(greet_two.VALUE)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "2"


def test_inject_with_missing_dependency_is_refused(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws")
    package = build_package(tmp_path / "local", "x", "1.0", "linux-64", depends=["fastapi >=0.112"])
    line = _refused(workspace, tmp_path, package)
    assert "package 'x=1.0=h0_0' has dependency 'fastapi >=0.112', which is not in the environment" in line


def test_inject_breaking_a_locked_dependency_is_refused(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws", specs=["python", "tool-user"])
    newer = build_package(tmp_path / "local", "tool", "2.0", "linux-64", depends=["python >=3"])
    line = _refused(workspace, tmp_path, newer)
    assert "package 'tool-user=1.0=h0_0' has dependency 'tool <2'" in line and "'tool=2.0=h0_0'" in line, line


def test_inject_for_another_platform_is_refused(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws")
    windows = build_package(tmp_path / "local", "winonly", "1.0", "win-64")
    line = _refused(workspace, tmp_path, windows)
    assert "winonly=1.0=h0_0" in line and "built for win-64" in line and "linux-64" in line, line


def test_inject_wheel_for_another_platform_is_refused(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws")
    wheel = retag_wheel(py_world.wheels["greet-two"], "cp311-cp311-win_amd64", tmp_path / "local")
    line = _refused(workspace, tmp_path, wheel)
    assert wheel.name in line and "win_amd64" in line and "linux-64" in line, line


def test_inject_wheel_without_python_is_refused(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws", specs=["pip"])
    line = _refused(workspace, tmp_path, py_world.wheels["greet-two"])
    assert "no python" in line, line


def test_inject_unreadable_or_unknown_files_is_refused(py_world: PythonWorld, tmp_path: Path) -> None:
    workspace = py_world.lock(tmp_path / "ws")
    fake = tmp_path / "local" / "broken-1.0-h0_0.conda"
    fake.parent.mkdir()
    fake.write_text("not a package")
    assert "broken-1.0-h0_0.conda" in _refused(workspace, tmp_path, fake)
    notes = tmp_path / "local" / "notes.zip"
    notes.write_text("zip?")
    line = _refused(workspace, tmp_path, notes, code=2)
    assert "notes.zip" in line and ".whl" in line, line
