"""End to end through the real console scripts: pack the demo workspace, unpack it, run what it installed."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from conftest import needs_linux64, run


def _activate_and_run(out: Path, command: str) -> str:
    result = subprocess.run(
        ["bash", "-c", f". ./activate.sh && {command}"], cwd=out, capture_output=True, text=True, check=True
    )
    return result.stdout


@needs_linux64
def test_pack_unpack_and_run(workspace: Path, tmp_path: Path) -> None:
    pack_file = tmp_path / "environment.tar"
    run("pixi-pack", workspace / "pixi.toml", "-e", "prod", "-o", pack_file)
    out = tmp_path / "target"
    out.mkdir()
    run("pixi-unpack", pack_file, cwd=out)

    env = out / "env"
    assert _activate_and_run(out, "hello").strip() == f"hello-bin prefix={env}"
    script = _activate_and_run(out, "hello-script").splitlines()
    assert script == [f"hello-script prefix={env}", "hello from greeting-data"]
    assert (
        _activate_and_run(out, 'echo "$ACTIVATE_DEMO|$CONDA_PREFIX"').strip() == f"activated from {env}|{env}"
    )
    assert (env / "conda-meta" / "history").is_file()
    assert not (env / "CACHEDIR.TAG").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".pixi-unpack")]


def test_pack_layout(workspace: Path, tmp_path: Path) -> None:
    pack_file = tmp_path / "environment.tar"
    run("pixi-pack", workspace, "-e", "prod", "-p", "linux-64", "-o", pack_file)
    with tarfile.open(pack_file) as tar:
        names = sorted(tar.getnames())
        meta = json.loads(tar.extractfile("pixi-pack.json").read())  # type: ignore[union-attr]
        env_yml = tar.extractfile("environment.yml").read().decode()  # type: ignore[union-attr]
        noarch = json.loads(tar.extractfile("channel/noarch/repodata.json").read())  # type: ignore[union-attr]
    assert meta["version"] == "1" and meta["platform"] == "linux-64" and meta["pixi-pack-version"]
    assert "channel/noarch/greeting-data-1.0-h4616a5c_0.tar.bz2" in names
    assert any(n.startswith("channel/linux-64/hello-bin-1.0-") and n.endswith(".conda") for n in names)
    assert env_yml.startswith("channels:\n  - ./channel\n  - nodefaults\ndependencies:\n")
    assert "  - greeting-data=1.0=h4616a5c_0\n" in env_yml
    assert "greeting-data-1.0-h4616a5c_0.tar.bz2" in noarch["packages"]
    assert "activate-demo-0.3-h4616a5c_0.conda" in noarch["packages.conda"]
    assert noarch["info"]["subdir"] == "noarch"
