"""Output formats other than the default tar file: folder, pipe, ``--format`` selection, and the
conda/micromamba compatibility of what every format carries (``environment.yml`` + ``channel/``)."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import rattler
from conftest import cli, needs_linux64, run
from rattler import Channel, Gateway, MatchSpec


def _hello(prefix: Path) -> str:
    return subprocess.run(
        [prefix / "bin" / "hello"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@needs_linux64
def test_folder_round_trip_is_used_in_place(workspace: Path, tmp_path: Path) -> None:
    folder = tmp_path / "packdir"
    run("pixi-pack", workspace, "-e", "prod", "--directory-only", "-o", folder)
    assert (folder / "pixi-pack.json").is_file() and (
        folder / "channel" / "noarch" / "repodata.json"
    ).is_file()
    before = _tree(folder)
    out = tmp_path / "out"
    run("pixi-unpack", folder, "-o", out)
    assert _hello(out / "env") == f"hello-bin prefix={out / 'env'}"
    assert _tree(folder) == before  # read in place, left as it was
    assert not [p for p in out.iterdir() if p.name.startswith(".pixi-unpack")]


def test_folder_holds_what_the_tar_holds(workspace: Path, tmp_path: Path) -> None:
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--directory-only", cwd=tmp_path)
    folder = tmp_path / "environment"  # the default name
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "-o", tmp_path / "environment.tar")
    extracted = tmp_path / "extracted"
    with tarfile.open(tmp_path / "environment.tar") as tar:
        tar.extractall(extracted, filter="data")
    assert _tree(folder) == _tree(extracted)


def test_folder_refuses_a_non_empty_target_and_leaves_it(workspace: Path, tmp_path: Path) -> None:
    folder = tmp_path / "packdir"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    result = run("pixi-pack", workspace, "-e", "prod", "--directory-only", "-o", folder, check=False)
    assert result.returncode != 0 and b"not empty" in result.stderr and b"Traceback" not in result.stderr
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pixi-pack")]


@needs_linux64
def test_pipe_round_trip_through_a_real_shell_pipe(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    pipeline = (
        f"set -o pipefail; {shlex.quote(cli('pixi-pack'))} {shlex.quote(str(workspace))} -e prod -o - "
        f"| {shlex.quote(cli('pixi-unpack'))} - -o {shlex.quote(str(out))}"
    )
    result = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert _hello(out / "env") == f"hello-bin prefix={out / 'env'}"
    assert (out / "activate.sh").is_file()


def test_a_broken_pipe_input_is_one_clear_error(tmp_path: Path) -> None:
    result = run("pixi-unpack", "-", "-o", tmp_path / "out", input=b"not a tar at all" * 100, check=False)
    assert result.returncode != 0 and b"Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_format_flag_selects_any_format(workspace: Path, tmp_path: Path) -> None:
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--format", "directory", "-o", tmp_path / "a")
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--directory-only", "-o", tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    stand_in = tmp_path / "stand-in"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    run("pixi-pack", workspace, "-e", "prod", "-p", "win-64", "--format", "executable",
        "--pixi-unpack-source", stand_in, cwd=tmp_path)  # fmt: skip
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "--create-executable",
        "--pixi-unpack-source", stand_in, cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "environment.ps1").is_file() and (tmp_path / "environment.sh").is_file()


def test_unknown_and_conflicting_formats_are_one_line_errors(workspace: Path, tmp_path: Path) -> None:
    result = run("pixi-pack", workspace, "--format", "zip", "-o", tmp_path / "x", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "unknown format 'zip'" in err
    assert all(name in err for name in ("tar", "directory", "executable")) and "Traceback" not in err
    result = run("pixi-pack", workspace, "--directory-only", "--create-executable", check=False)
    assert result.returncode != 0 and b"choose one of" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_pixi_unpack_names_the_readers_when_nothing_reads_the_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00garbage" * 100)
    result = run("pixi-unpack", junk, "-o", tmp_path / "out", check=False)
    err = result.stderr.decode()
    assert result.returncode != 0 and "not a pack any installed format can read" in err
    assert "executable" in err and "tar" in err and "directory" in err
    assert not (tmp_path / "out").exists()


# -- compatibility mode: tar -xf environment.tar && micromamba create -p ./env --file environment.yml --


def _environment_yml(path: Path) -> tuple[list[str], list[str]]:
    """(channels, conda specs) of the environment.yml the pack writes (a fixed, simple layout)."""
    channels: list[str] = []
    specs: list[str] = []
    section = None
    for line in path.read_text().splitlines():
        if not line.startswith(" "):
            section = line.rstrip(":")
        elif line.startswith("  - ") and not line.startswith("  - pip:"):
            (channels if section == "channels" else specs).append(line[4:])
    return channels, specs


def _packed_records(channel: Path) -> set[tuple[str, str, str, str]]:
    records = set()
    for repodata in channel.glob("*/repodata.json"):
        data = json.loads(repodata.read_text())
        for table in ("packages", "packages.conda"):
            for file_name, record in data[table].items():
                records.add((record["name"], record["version"], record["build"], file_name))
    return records


@pytest.mark.parametrize("platform", ["linux-64", "win-64", "osx-arm64"])
def test_environment_yml_solves_to_exactly_the_packed_records(
    workspace: Path, tmp_path: Path, platform: str
) -> None:
    run("pixi-pack", workspace, "-e", "prod", "-p", platform, "-o", tmp_path / "environment.tar")
    extracted = tmp_path / "x"
    with tarfile.open(tmp_path / "environment.tar") as tar:
        tar.extractall(extracted, filter="data")
    channels, specs = _environment_yml(extracted / "environment.yml")
    assert channels == ["./channel", "nodefaults"]
    assert all(spec.count("=") == 2 for spec in specs)  # name=version=build pins
    channel = Channel((extracted / "channel").resolve().as_uri())
    solved = asyncio.run(
        rattler.solve(
            [channel],
            [MatchSpec(spec) for spec in specs],  # conda's lenient name=version=build syntax
            gateway=Gateway(cache_dir=tmp_path / "gateway"),
            platforms=[platform, "noarch"],
            virtual_packages=[],
        )
    )
    got = {(r.name.normalized, str(r.version), str(r.build), r.file_name) for r in solved}
    assert got == _packed_records(extracted / "channel")
    assert {Path(r.url.removeprefix("file://")).parent.name for r in solved} <= {platform, "noarch"}


@pytest.mark.skipif(
    not (shutil.which("micromamba") or shutil.which("conda")),
    reason="needs micromamba or conda on PATH (not installable here: no conda channel is reachable)",
)
@needs_linux64
def test_micromamba_or_conda_creates_the_environment_from_the_extracted_tar(
    workspace: Path, tmp_path: Path
) -> None:
    run("pixi-pack", workspace, "-e", "prod", "-o", tmp_path / "environment.tar")
    subprocess.run(["tar", "-xf", "environment.tar"], cwd=tmp_path, check=True)
    tool = shutil.which("micromamba") or shutil.which("conda")
    assert tool is not None
    command = [tool, "create", "-y", "-p", "./env", "--file", "environment.yml"]
    if "micromamba" in Path(tool).name:
        command += ["--root-prefix", str(tmp_path / "root")]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)
    assert _hello(tmp_path / "env") == f"hello-bin prefix={tmp_path / 'env'}"
