"""A self-extracting pack of several environments: the script takes pixi-unpack's choices
(``--environment NAME``, ``--all``) and, given neither, says which environments it holds."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import needs_linux64, run

from pixi_pack_ext.selfextract.reader import read_layout

from .helpers import clean_env, needs_system_python, run_script

CHOOSE = (
    "error: the pack holds the environments default, prod; choose one with --environment NAME, "
    "or install each with --all"
)


@pytest.fixture(scope="module")
def multi_sh(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi-exe") / "environment.sh"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "--create-executable",
        "-o", out, timeout=600)  # fmt: skip
    return out


def _hello(prefix: Path) -> str:
    return subprocess.run([prefix / "bin/hello"], capture_output=True, text=True, check=True).stdout.strip()


def test_help_names_the_environments_and_the_choices(multi_sh: Path, tmp_path: Path) -> None:
    result = run_script("bash", multi_sh, "--help", env=clean_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0
    assert (
        "packed linux-64 environments (like pixi-unpack on the pack's tar):\ndefault, prod." in result.stdout
    )
    assert "--environment NAME" in result.stdout and "--all " in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpdir"]


@needs_linux64
@needs_system_python
@pytest.mark.parametrize("choice", [[], ["--environment", "nope"]])
def test_no_or_a_wrong_choice_is_one_line_and_leaves_nothing(
    multi_sh: Path, tmp_path: Path, choice: list[str]
) -> None:
    env = clean_env(tmp_path)
    result = run_script("bash", multi_sh, *choice, "-o", tmp_path / "out", env=env, cwd=tmp_path)
    assert result.returncode != 0
    expected = (
        CHOOSE if not choice else "error: environment 'nope' is not in the pack (it has: default, prod)"
    )
    assert result.stderr.strip() == expected
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "tmpdir").iterdir()), "temporary files were left behind"
    if not choice:  # the same words as pixi-unpack's on the same pack
        direct = run("pixi-unpack", multi_sh, "-o", tmp_path / "out", check=False)
        assert direct.returncode != 0 and direct.stderr.decode().strip() == CHOOSE


@needs_linux64
@needs_system_python
def test_environment_installs_the_one_chosen(multi_sh: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    result = run_script(
        "bash", multi_sh, "--environment", "default", "-o", tmp_path / "t", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert _hello(tmp_path / "t/env") == f"hello-bin prefix={tmp_path / 't/env'}"
    assert (tmp_path / "t/activate.sh").is_file()
    assert not (tmp_path / "t/env/etc/conda/activate.d").exists()  # activate-demo is prod's alone
    assert not list((tmp_path / "tmpdir").iterdir())


@needs_linux64
@needs_system_python
def test_all_installs_each_into_its_folder(multi_sh: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    result = run_script("bash", multi_sh, "--all", "-o", tmp_path / "t", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "t"
    assert sorted(p.name for p in out.iterdir()) == [
        "activate-default.sh",
        "activate-prod.sh",
        "default",
        "prod",
    ]
    for name in ("default", "prod"):
        assert _hello(out / name) == f"hello-bin prefix={out / name}"
    assert (out / "prod/etc/conda/activate.d/activate-demo.sh").is_file()
    sourced = subprocess.run(
        ["bash", "-c", f". {out / 'activate-prod.sh'} && hello"], capture_output=True, text=True, check=True
    )
    assert sourced.stdout.strip() == f"hello-bin prefix={out / 'prod'}"


def test_several_platforms_are_refused_for_an_executable(workspace: Path, tmp_path: Path) -> None:
    result = run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "-p", "win-64",
                 "--create-executable", "-o", tmp_path / "both.sh", check=False)  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert lines == [
        "error: a 'executable' pack runs its unpacker on one platform, not linux-64, win-64; "
        "make one per platform (-p PLATFORM --create-executable) or write a tar"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_a_signed_script_checks_and_a_changed_environment_list_is_refused(
    workspace: Path, tmp_path: Path
) -> None:
    """The environment list is header shell code no signature covers: verify -k rebuilds the
    header from its values and refuses one that differs."""
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    script = tmp_path / "environment.sh"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "--create-executable",
        "--sign", key, "-o", script, timeout=600)  # fmt: skip
    run("pixi-pack", "verify", script, "-k", f"{key}.pub")
    data = script.read_bytes()
    changed = tmp_path / "changed.sh"
    changed.write_bytes(
        data.replace(b"PIXI_PACK_ENVIRONMENTS=default,prod\n", b"PIXI_PACK_ENVIRONMENTS=default,pro$\n")
    )
    assert changed.read_bytes() != data
    refused = run("pixi-pack", "verify", changed, "-k", f"{key}.pub", check=False)
    assert refused.returncode != 0
    assert "is not the one this pixi-pack writes" in refused.stderr.decode()


def test_a_windows_script_of_several_environments_names_them(workspace: Path, tmp_path: Path) -> None:
    """environment.ps1 (not run here: there is no PowerShell) records the environments and its
    --help text lists them with the two choices."""
    fake = tmp_path / "pixi-unpack.exe"
    fake.write_bytes(b"MZ" + bytes(range(256)) * 16)
    script = tmp_path / "environment.ps1"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "win-64", "--create-executable",
        "--pixi-unpack-source", fake, "-o", script)  # fmt: skip
    layout = read_layout(script)
    assert layout is not None and layout.script == "ps1"
    head = script.read_bytes()[: layout.header_size]
    assert b"$PIXI_PACK_ENVIRONMENTS = 'default,prod'\r\n" in head
    assert b"--environment NAME" in head and b"--all " in head
    assert sorted(json.loads(layout.metadata or "{}")["environments"]) == ["default", "prod"]
