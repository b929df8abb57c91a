"""``pixi pack`` / ``pixi unpack`` and shell completion.

pixi runs the first ``pixi-NAME`` on PATH for ``pixi NAME ...``, passing the remaining arguments
unchanged. pixi itself cannot be installed here, so a stand-in ``pixi`` does exactly that
(``exec pixi-$1 "${@:2}"``); everything a user types after ``pixi pack`` must then behave as it does
after ``pixi-pack``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import BIN, copy_workspace, needs_linux64, run

from pixi_pack_ext import __version__

PIXI_STANDIN = '#!/usr/bin/env bash\n# pixi runs pixi-NAME for an unknown NAME\nname="$1"; shift\nexec "pixi-$name" "$@"\n'


@pytest.fixture
def pixi_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds the stand-in ``pixi`` and our console scripts."""
    bin_dir = tmp_path / "pixi-bin"
    bin_dir.mkdir()
    pixi = bin_dir / "pixi"
    pixi.write_text(PIXI_STANDIN)
    pixi.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture
def cwd_workspace(workspace: Path, tmp_path: Path) -> Path:
    """A copy of the locked demo workspace to run commands in."""
    return copy_workspace(workspace, tmp_path / "ws")


def test_pixi_pack_writes_the_same_pack_as_pixi_pack_dash(
    cwd_workspace: Path, pixi_path: dict[str, str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    common = ["-e", "prod", "-p", "linux-64", "--use-cache", cache, "--concurrent-downloads", "2", "-q"]
    run("pixi", "pack", *common, "-o", "via-pixi.tar", cwd=cwd_workspace, env=pixi_path)
    run("pixi-pack", *common, "-o", "direct.tar", cwd=cwd_workspace, env=pixi_path)
    via_pixi = (cwd_workspace / "via-pixi.tar").read_bytes()
    assert via_pixi == (cwd_workspace / "direct.tar").read_bytes()
    with tarfile.open(cwd_workspace / "via-pixi.tar") as tar:
        assert any(n.startswith("channel/noarch/activate-demo-") for n in tar.getnames())
    assert any(cache.rglob("*.conda"))

    # the manifest path, a folder output and stdout all pass through too
    run(
        "pixi",
        "pack",
        "pixi.toml",
        "-e",
        "prod",
        "-p",
        "win-64",
        "--directory-only",
        "-o",
        "folder",
        "-q",
        cwd=cwd_workspace,
        env=pixi_path,
    )
    assert (cwd_workspace / "folder" / "pixi-pack.json").read_text().count('"win-64"') == 1
    streamed = run(
        "pixi", "pack", "-e", "prod", "-p", "linux-64", "-o", "-", "-q", cwd=cwd_workspace, env=pixi_path
    )
    assert streamed.stdout == via_pixi


@needs_linux64
def test_pixi_unpack_installs_like_pixi_unpack_dash(
    cwd_workspace: Path, pixi_path: dict[str, str], tmp_path: Path
) -> None:
    run("pixi", "pack", "-e", "prod", "-q", cwd=cwd_workspace, env=pixi_path)
    target = tmp_path / "target"
    run(
        "pixi",
        "unpack",
        cwd_workspace / "environment.tar",
        "-o",
        target,
        "-e",
        "prod-env",
        "-s",
        "bash",
        "-q",
        env=pixi_path,
    )
    hello = subprocess.run(
        ["bash", "-c", ". ./activate.sh && hello"], cwd=target, capture_output=True, text=True, check=True
    )
    assert hello.stdout.strip() == f"hello-bin prefix={target / 'prod-env'}"
    # --force through pixi as well, from standard input
    with open(cwd_workspace / "environment.tar", "rb") as pack:
        run(
            "pixi",
            "unpack",
            "-",
            "-o",
            target,
            "-e",
            "prod-env",
            "--force",
            "-q",
            input=pack.read(),
            env=pixi_path,
        )
    assert (target / "prod-env" / "conda-meta" / "history").is_file()


def test_version_help_and_subcommands_through_pixi(pixi_path: dict[str, str], tmp_path: Path) -> None:
    for command in ("pack", "unpack"):
        via_pixi = run("pixi", command, "--version", env=pixi_path).stdout.decode()
        assert via_pixi == run(f"pixi-{command}", "-V", env=pixi_path).stdout.decode()
        assert via_pixi.strip() == f"pixi-{command}, version {__version__}"
        help_text = run("pixi", command, "--help", env=pixi_path).stdout.decode()
        assert help_text == run(f"pixi-{command}", "-h", env=pixi_path).stdout.decode()
    assert "tar" in run("pixi", "pack", "plugins", env=pixi_path).stdout.decode()
    script = run("pixi", "pack", "completion", "-s", "bash", env=pixi_path).stdout.decode()
    assert "complete -o nosort -F _pixi_unpack_completion pixi-unpack" in script
    assert run("pixi", "unpack", "completion", "-s", "bash", env=pixi_path).stdout.decode() == script
    bad = run("pixi", "pack", "--no-such-flag", env=pixi_path, check=False)
    assert bad.returncode == 2 and b"No such option" in bad.stderr
    missing = run("pixi", "pack", tmp_path / "nowhere", env=pixi_path, check=False)
    assert missing.returncode == 1 and b"does not exist" in missing.stderr


# --------------------------------------------------------------------------------------------------
# Shell completion
# --------------------------------------------------------------------------------------------------


def bash_complete(words: list[str], cwd: Path, command: str = "pixi-pack") -> list[str]:
    """What bash offers for ``words`` (the last one being completed) after loading our script."""
    function = "_" + command.replace("-", "_") + "_completion"
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    script = (
        'eval "$(pixi-pack completion -s bash)"\n'
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=()\n"
        f"{function} {command} 2>/dev/null\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, env=env, check=True
    )
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_options_environments_and_platforms(cwd_workspace: Path) -> None:
    assert bash_complete(["pixi-pack", "-e", ""], cwd_workspace) == ["default", "prod"]
    assert bash_complete(["pixi-pack", "-e", "prod", "-p", ""], cwd_workspace) == [
        "linux-64",
        "osx-arm64",
        "win-64",
    ]
    assert bash_complete(["pixi-pack", "--con"], cwd_workspace) == ["--config", "--concurrent-downloads"]
    assert bash_complete(["pixi-pack", "p"], cwd_workspace) == ["plugins", "pixi.lock", "pixi.toml"]
    assert bash_complete(["pixi-unpack", "--sh"], cwd_workspace, "pixi-unpack") == ["--shell"]
    shells = bash_complete(["pixi-unpack", "-s", ""], cwd_workspace, "pixi-unpack")
    assert {"bash", "zsh", "fish", "powershell", "cmd"} <= set(shells)
    # another folder's lock via MANIFEST_PATH; no lock at all offers nothing rather than failing
    assert bash_complete(["pixi-pack", str(cwd_workspace), "-e", "p"], cwd_workspace.parent) == ["prod"]
    assert bash_complete(["pixi-pack", "-e", ""], cwd_workspace.parent) == []


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_environments(cwd_workspace: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["fish", "--no-config", "-c", 'pixi-pack completion -s fish | source; complete -C "pixi-pack -e "'],
        cwd=cwd_workspace,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert result.stdout.split() == ["default", "prod"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_parses_and_answers(cwd_workspace: Path) -> None:
    script = run("pixi-pack", "completion", "--shell", "zsh").stdout.decode()
    assert "#compdef pixi-pack" in script and "#compdef pixi-unpack" in script
    subprocess.run(["zsh", "-n"], input=script, text=True, check=True)
    # what the script's function asks the command at completion time
    answer = run(
        "pixi-pack",
        cwd=cwd_workspace,
        env={"_PIXI_PACK_COMPLETE": "zsh_complete", "COMP_WORDS": "pixi-pack -e ", "COMP_CWORD": "2"},
    )
    assert answer.stdout.decode().split("\n")[:6] == ["plain", "default", "_", "plain", "prod", "_"]


def test_powershell_script_protocol(cwd_workspace: Path) -> None:
    """The PowerShell completer quotes each word in single quotes and asks in click's bash protocol."""
    script = run("pixi-pack", "completion", "-s", "powershell").stdout.decode()
    for command in ("pixi-pack", "pixi-unpack"):
        assert f"Register-ArgumentCompleter -Native -CommandName {command} -ScriptBlock" in script
    assert "$env:_PIXI_UNPACK_COMPLETE = 'bash_complete'" in script
    # the words exactly as the script builds them for `pixi-pack -e <TAB>`
    answer = run(
        "pixi-pack",
        cwd=cwd_workspace,
        env={"_PIXI_PACK_COMPLETE": "bash_complete", "COMP_WORDS": "'pixi-pack' '-e' ''", "COMP_CWORD": "2"},
    )
    assert answer.stdout.decode().split() == ["plain,default", "plain,prod"]
    if shutil.which("pwsh") is None:
        pytest.skip("pwsh is not installed: the script itself was not run")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    check = (
        "pixi-pack completion -s powershell | Out-String | Invoke-Expression; "
        "(TabExpansion2 -inputScript 'pixi-pack -e ' -cursorColumn 13).CompletionMatches.CompletionText"
    )
    result = subprocess.run(
        ["pwsh", "-NoProfile", "-Command", check],
        cwd=cwd_workspace,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert result.stdout.split() == ["default", "prod"]


def test_completion_needs_a_known_shell() -> None:
    result = run("pixi-pack", "completion", "-s", "tcsh", check=False)
    assert result.returncode == 2 and b"tcsh" in result.stderr
