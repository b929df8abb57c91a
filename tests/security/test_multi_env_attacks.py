"""Attacks on the features of packs of several environments: activation carried per environment,
``--all`` and delta packs of several environments, each against a real workspace packed and
unpacked by the commands a user runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import needs_linux64, run

from pixi_pack_ext.metadata import SEAL_FILES
from pixi_pack_ext.testing.world import ChannelServer, write_lock

from .hostile import error_line, find, read_members, set_data, snapshot, write_pack

pytestmark = needs_linux64

MANIFEST = """\
[workspace]
name = "roles"
platforms = ["linux-64"]

[feature.worker.activation]
scripts = ["scripts/setup.sh"]
env = { ROLE = "worker" }

[environments]
prod = []
worker = ["worker"]
"""


def _workspace(root: Path, url: str, environments: dict[str, list[str]], script: str) -> Path:
    root.mkdir(parents=True)
    (root / "pixi.toml").write_text(MANIFEST)
    (root / "scripts").mkdir()
    (root / "scripts" / "setup.sh").write_text(script)
    write_lock(root / "pixi.lock", url, environments, ["linux-64"])
    return root


@pytest.fixture(scope="module")
def scripted_delta(
    channel_server: ChannelServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(old pack, delta): ``prod`` gains activate-demo, ``worker`` (which sources a script) gains
    hello-bin; ``prod`` is updated first."""
    root = tmp_path_factory.mktemp("scripted-delta")
    both = ("-e", "prod", "-e", "worker", "-p", "linux-64")
    old_ws = _workspace(
        root / "old",
        channel_server.url,
        {"prod": ["hello-bin"], "worker": ["activate-demo"]},
        "export STEP=old\n",
    )
    run("pixi-pack", old_ws, *both, "-o", root / "v1.tar")
    new_ws = _workspace(
        root / "new",
        channel_server.url,
        {"prod": ["hello-bin", "activate-demo"], "worker": ["activate-demo", "hello-bin"]},
        "export STEP=new\n",
    )
    run("pixi-pack", new_ws, *both, "--since", root / "v1.tar", "-o", root / "delta.tar")
    return root / "v1.tar", root / "delta.tar"


@pytest.mark.parametrize(
    ("how", "script"),
    [(("--all",), "activate-worker.sh"), (("--environment", "worker", "-e", "worker"), "activate.sh")],
)
def test_a_delta_of_several_environments_installs_its_activation_scripts(
    scripted_delta: tuple[Path, Path], tmp_path: Path, how: tuple[str, ...], script: str
) -> None:
    """The update keeps the environment's [activation]: its new script replaces the old one, and
    sourcing the activation script still sets the manifest's variable and runs the script."""
    old, delta = scripted_delta
    out = tmp_path / "out"
    if script == "activate.sh":
        run("pixi-unpack", old, "--environment", "worker", "-e", "worker", "-o", out)
    else:
        run("pixi-unpack", old, "--all", "-o", out)
    result = run("pixi-unpack", delta, *how, "-o", out, check=False)
    assert result.returncode == 0, result.stderr.decode()
    installed = out / "worker/etc/pixi-pack-ext/activation"
    assert [p.read_text() for p in installed.iterdir()] == ["export STEP=new\n"]
    assert (out / "worker/bin/hello").is_file()
    sourced = subprocess.run(
        ["bash", "-c", f'. ./{script} && printf "%s %s" "$ROLE" "$STEP"'],
        cwd=out,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert sourced.stdout == "worker new"


def _hostile_delta(delta: Path, out: Path, activation: dict[str, object]) -> Path:
    """The delta with ``worker``'s activation replaced (its manifest dropped, as an attacker would)."""
    members = [m for m in read_members(delta) if m.info.name not in SEAL_FILES]
    data = json.loads(find(members, "pixi-pack.json").data or b"")
    data["environments"]["worker"]["linux-64"]["activation"] = activation
    set_data(members, "pixi-pack.json", json.dumps(data).encode())
    return write_pack(out, members)


def test_a_value_the_shell_cannot_hold_refuses_before_any_environment_changes(
    scripted_delta: tuple[Path, Path], tmp_path: Path
) -> None:
    """``worker``'s value cannot be written for cmd.exe: refused before ``prod`` (first) is updated."""
    old, delta = scripted_delta
    hostile = _hostile_delta(delta, tmp_path / "hostile.tar", {"env": {"X": 'say "hi"'}, "scripts": []})
    out = tmp_path / "out"
    run("pixi-unpack", old, "--all", "-o", out, "-s", "cmd")
    before = snapshot(tmp_path)
    result = run("pixi-unpack", hostile, "--all", "-o", out, "-s", "cmd", check=False)
    line = error_line(result)
    assert result.returncode != 0 and "X" in line and "cmd.exe" in line
    assert len(result.stderr.decode().strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_a_later_environment_failing_names_the_ones_already_updated(
    scripted_delta: tuple[Path, Path], tmp_path: Path
) -> None:
    """``worker`` lists a script the pack lacks: ``prod`` was updated (and stays so), ``worker`` is
    left as it was, and the one error line says both, and that rerunning finishes."""
    old, delta = scripted_delta
    hostile = _hostile_delta(
        delta, tmp_path / "hostile.tar", {"env": {}, "scripts": ["activation/missing.sh"]}
    )
    out = tmp_path / "out"
    run("pixi-unpack", old, "--all", "-o", out)
    worker_before = snapshot(out / "worker")
    result = run("pixi-unpack", hostile, "--all", "-o", out, check=False)
    line = error_line(result)
    assert result.returncode != 0 and len(result.stderr.decode().strip().splitlines()) == 1
    assert "missing.sh" in line and "'worker'" in line and "already updated: prod" in line
    assert snapshot(out / "worker") == worker_before
    assert (out / "prod/etc/conda/activate.d").is_dir()  # prod has activate-demo now
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging or journal left


def test_a_failure_mid_update_under_all_is_rolled_back(
    scripted_delta: tuple[Path, Path], tmp_path: Path
) -> None:
    """``worker``'s update fails once rattler has begun (a folder, with the user's file in it,
    stands where hello-bin's bin/hello goes): its journal, which keeps ``activate-worker.*``, is
    used to put ``worker`` back exactly, and nothing of it is left next to the environments."""
    old, delta = scripted_delta
    out = tmp_path / "out"
    run("pixi-unpack", old, "--all", "-o", out)
    blocker = out / "worker/bin/hello"
    blocker.mkdir(parents=True)
    (blocker / "keep.txt").write_text("mine\n")
    worker_before = snapshot(out / "worker")
    script_before = (out / "activate-worker.sh").read_bytes()
    result = run("pixi-unpack", delta, "--all", "-o", out, check=False)
    line = error_line(result)
    assert "left as it was" in line and "already updated: prod" in line
    assert snapshot(out / "worker") == worker_before
    assert (out / "activate-worker.sh").read_bytes() == script_before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no journal or staging left
