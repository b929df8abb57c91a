"""Attacks on the features of packs of several environments: activation carried per environment,
``--all`` and delta packs of several environments, each against a real workspace packed and
unpacked by the commands a user runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import needs_linux64, run

from pixi_pack_ext.testing.world import ChannelServer, write_lock

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
    """(old pack, delta): ``worker`` sources a script and gains hello-bin in the delta."""
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
        {"prod": ["hello-bin"], "worker": ["activate-demo", "hello-bin"]},
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
