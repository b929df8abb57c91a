"""Packs of several environments and platforms: one channel, one description per environment."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from conftest import needs_linux64, pack_prod, run


def _members(tar: Path) -> list[str]:
    with tarfile.open(tar) as archive:
        return [m.name for m in archive.getmembers() if m.isfile()]


def _read(tar: Path, name: str) -> str:
    with tarfile.open(tar) as archive:
        return archive.extractfile(name).read().decode()  # type: ignore[union-attr]


def test_one_pack_holds_each_archive_once(workspace: Path, tmp_path: Path) -> None:
    multi = tmp_path / "multi.tar"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "-p", "win-64", "-o", multi)
    names = _members(multi)
    assert len(names) == len(set(names))
    assert "environment.yml" not in names
    assert {"environment-default-linux-64.yml", "environment-prod-win-64.yml"} <= set(names)
    data = json.loads(_read(multi, "pixi-pack.json"))
    assert data["version"] == "2"
    assert sorted(data["environments"]) == ["default", "prod"]
    assert sorted(data["environments"]["prod"]) == ["linux-64", "win-64"]
    prod = data["environments"]["prod"]["linux-64"]["conda"]
    default = data["environments"]["default"]["linux-64"]["conda"]
    assert set(default) < set(prod)
    assert any("activate-demo" in p for p in prod) and not any("activate-demo" in p for p in default)
    assert all(p in names for env in data["environments"].values() for t in env.values() for p in t["conda"])


@needs_linux64
def test_unpack_chooses_an_environment(workspace: Path, tmp_path: Path) -> None:
    multi = tmp_path / "multi.tar"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "-o", multi)
    refused = run("pixi-unpack", multi, "-o", tmp_path / "none", check=False)
    assert refused.returncode != 0
    assert "holds the environments default, prod" in refused.stderr.decode()
    assert not (tmp_path / "none").exists()

    run("pixi-unpack", multi, "--environment", "prod", "-o", tmp_path / "p")
    run("pixi-unpack", multi, "--environment", "default", "-o", tmp_path / "d", "-e", "app")
    assert (tmp_path / "p/env/etc/conda/activate.d/activate-demo.sh").is_file()
    assert not (tmp_path / "d/app/etc/conda/activate.d").exists()
    hello = subprocess.run([tmp_path / "d/app/bin/hello"], capture_output=True, text=True).stdout
    assert hello.strip() == f"hello-bin prefix={tmp_path / 'd/app'}"
    unknown = run("pixi-unpack", multi, "--environment", "nope", "-o", tmp_path / "x", check=False)
    assert "environment 'nope' is not in the pack" in unknown.stderr.decode()


@needs_linux64
def test_unpack_all(workspace: Path, tmp_path: Path) -> None:
    multi = tmp_path / "multi.tar"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "-o", multi)
    out = tmp_path / "all"
    run("pixi-unpack", multi, "--all", "-o", out)
    assert (out / "prod/etc/conda/activate.d/activate-demo.sh").is_file()
    assert (out / "default/bin/hello").is_file() and not (out / "default/etc/conda/activate.d").exists()
    assert sorted(p.name for p in out.glob("activate*")) == ["activate-default.sh", "activate-prod.sh"]


def test_a_pack_of_one_environment_stays_format_1(workspace: Path, prod_tar: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.tar"
    pack_prod(workspace, again)
    assert again.read_bytes() == prod_tar.read_bytes()
    assert json.loads(_read(again, "pixi-pack.json"))["version"] == "1"
    assert "environment.yml" in _members(again)
    refused = run("pixi-unpack", again, "--environment", "prod", "-o", tmp_path / "o", check=False)
    assert "holds one" in refused.stderr.decode()


def test_an_environment_listing_a_missing_package_is_refused(workspace: Path, tmp_path: Path) -> None:
    folder = tmp_path / "multi"
    run(
        "pixi-pack",
        workspace,
        "-e",
        "default",
        "-e",
        "prod",
        "-p",
        "linux-64",
        "--directory-only",
        "-o",
        folder,
    )
    data = json.loads((folder / "pixi-pack.json").read_text())
    data["environments"]["prod"]["linux-64"]["conda"].append("channel/linux-64/ghost-1.0-h0_0.conda")
    (folder / "pixi-pack.json").write_text(json.dumps(data))
    (folder / "pixi-pack-manifest.json").unlink()  # else the manifest refuses the changed file first
    refused = run("pixi-unpack", folder, "--environment", "prod", "-o", tmp_path / "o", check=False)
    assert refused.returncode != 0
    assert "lists packages of environment 'prod' that the channel lacks" in refused.stderr.decode()
    assert not (tmp_path / "o").exists()
    both = run("pixi-unpack", folder, "--all", "-e", "x", "-o", tmp_path / "o", check=False)
    assert both.returncode != 0 and "--all names each folder" in both.stderr.decode()
