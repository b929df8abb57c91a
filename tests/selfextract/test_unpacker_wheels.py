"""Where the bundled unpacker's wheels come from (wheelhouse, offline, this environment), the sha256
tools the shell uses, and the same result as ``pixi-unpack`` on the tar."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_linux64, run

from pixi_pack_ext.selfextract.reader import read_layout

from .helpers import (
    SHELL_TOOLS,
    STAND_IN,
    SYSTEM_PYTHON,
    _bundle_of,
    _python_ok,
    _restricted_path,
    clean_env,
    needs_system_python,
    run_script,
)


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No user cache and no reachable Python index: only a wheelhouse or this environment remain."""
    return {
        "XDG_CACHE_HOME": str(tmp_path / "empty-cache"),
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
    }


def test_wheelhouse_packs_offline(executable: Path, workspace: Path, tmp_path: Path) -> None:
    from pixi_pack_ext.selfextract.unpacker_wheels import cache_dir

    cached = cache_dir() / "wheels" / "linux-64"  # filled when the module's executable was made
    if not list(cached.glob("py_rattler-*.whl")):
        pytest.skip("no cached wheels: the Python index was not reachable when the executable was made")
    wheelhouse = tmp_path / "wheelhouse"
    shutil.copytree(cached, wheelhouse, ignore=shutil.ignore_patterns(".*"))
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--unpacker-wheelhouse", wheelhouse, "-o", script, env=_offline_env(tmp_path))  # fmt: skip
    wheels = set(json.loads(_bundle_of(script).read("bundle.json"))["wheels"])
    assert any(w.startswith("py_rattler-") for w in wheels) and wheels <= {
        p.name for p in wheelhouse.iterdir()
    }

    for wheel in wheelhouse.glob("py_rattler-*"):
        wheel.unlink()
    result = run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
                 "--unpacker-wheelhouse", wheelhouse, "-o", tmp_path / "again.sh",
                 env=_offline_env(tmp_path), check=False)  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode != 0 and "lacks wheels" in err and "Traceback" not in err
    assert not (tmp_path / "again.sh").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@needs_linux64
def test_offline_without_wheels_embeds_this_environment(workspace: Path, tmp_path: Path) -> None:
    script = tmp_path / "environment.sh"
    result = run("pixi-pack", workspace, "-e", "prod", "--create-executable", "-o", script,
                 env=_offline_env(tmp_path))  # fmt: skip
    python = sys.version_info[:2]
    assert b"embedding this environment's installed packages" in result.stderr
    bundle = _bundle_of(script)
    assert json.loads(bundle.read("bundle.json"))["python"] == list(python)
    assert "lib/rattler/__init__.py" in bundle.namelist()
    assert not any(n.startswith("lib/httpx/") for n in bundle.namelist())
    if not _python_ok(SYSTEM_PYTHON):
        return
    system = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    if tuple(map(int, system.stdout.split())) < python:
        pytest.skip("the system python is older than this environment's")
    result2 = run_script("sh", script, "-o", tmp_path / "target", env=clean_env(tmp_path), cwd=tmp_path)
    assert result2.returncode == 0, result2.stderr
    prefix = tmp_path / "target" / "env"
    hello = subprocess.run([prefix / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == f"hello-bin prefix={prefix}"


@needs_linux64  # the script refuses to run a linux-64 pack elsewhere
@pytest.mark.parametrize("tool", ["sha256sum", "shasum", "openssl", None])
def test_the_payload_is_checked_with_whatever_sha256_tool_the_host_has(
    workspace: Path, tmp_path: Path, tool: str | None
) -> None:
    if tool is not None and shutil.which(tool, path="/usr/bin:/bin") is None:
        pytest.skip(f"{tool} is not installed here")
    stand_in = tmp_path / "pixi-unpack"
    stand_in.write_text(STAND_IN.format(record=tmp_path / "record"))
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--pixi-unpack-source", stand_in, "-o", script)  # fmt: skip
    tools = tuple(t for t in SHELL_TOOLS if t != "sha256sum") + ((tool,) if tool else ())
    env = clean_env(tmp_path, path=_restricted_path(tmp_path, tools))
    result = run_script("sh", script, env=env, cwd=tmp_path)
    if tool is None:
        assert result.returncode == 1 and "no sha256 tool found" in result.stderr
        assert not Path(f"{tmp_path / 'record'}.args").exists()
        return
    assert result.returncode == 7, result.stderr  # verified, then the stand-in ran
    layout = read_layout(script)
    assert layout is not None
    with open(script, "r+b") as f:
        f.seek(layout.archive_offset + 1000)
        byte = f.read(1)
        f.seek(layout.archive_offset + 1000)
        f.write(bytes([byte[0] ^ 0x80]))
    Path(f"{tmp_path / 'record'}.args").unlink()
    result = run_script("sh", script, env=env, cwd=tmp_path)
    assert result.returncode == 1 and "is corrupt" in result.stderr
    assert not Path(f"{tmp_path / 'record'}.args").exists()


@needs_linux64
@needs_system_python
def test_environment_sh_gives_what_pixi_unpack_gives_on_the_tar(
    executable: Path, workspace: Path, tmp_path: Path
) -> None:
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "environment.tar")
    run("pixi-unpack", tmp_path / "environment.tar", "-o", tmp_path / "tar-out", "-e", "app", "-s", "fish")
    result = run_script("sh", executable, "-o", tmp_path / "shs-out", "-e", "app", "-s", "fish",
                        env=clean_env(tmp_path), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr

    def listing(out: Path) -> dict[str, str]:
        files = {}
        for path in sorted(out.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                text = path.read_bytes().replace(str(out).encode(), b"OUT")
                files[path.relative_to(out).as_posix()] = hashlib.sha256(text).hexdigest()
        return files

    # equal-length folders: binaries get the prefix patched in place, padded to its length
    from_tar, from_sh = listing(tmp_path / "tar-out"), listing(tmp_path / "shs-out")
    assert from_tar.keys() == from_sh.keys() and "activate.fish" in from_sh
    differing = [name for name in from_tar if from_tar[name] != from_sh[name]]
    assert all(name.startswith("app/conda-meta/") for name in differing), differing


def test_unpacking_imports_no_httpx() -> None:
    """The bundled pixi-unpack carries no httpx: the unpack path must not import it."""
    code = (
        "import sys, pixi_pack_ext.cli.unpack, pixi_pack_ext.unpack.driver\n"
        "from pixi_pack_ext.plugins import get_plugin_manager\n"
        "pm = get_plugin_manager(); pm.check()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'httpx'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PIXI_PACK_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    assert result.stdout.strip() == "[]"
