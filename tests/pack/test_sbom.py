"""The pack's CycloneDX SBOM: valid against the schema, one component per package with its purl,
sha256 and licence, deterministic, and printed by ``pixi-pack sbom``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import pack_prod, run

from pixi_pack_ext.pack.lockfile import read_plan
from pixi_pack_ext.pack.sbom import sbom_json


def validate(text: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert error is None, error


def test_pixi_pack_sbom_prints_a_valid_sbom_of_every_package(prod_tar: Path, channel_dir: Path) -> None:
    text = run("pixi-pack", "sbom", prod_tar).stdout.decode()
    validate(text)
    bom = json.loads(text)
    assert "timestamp" not in bom["metadata"]  # no SOURCE_DATE_EPOCH: none, so packs stay reproducible
    props = {p["name"]: p["value"] for p in bom["metadata"]["properties"]}
    assert props["pixi:environment"] == "prod" and props["pixi:platform"] == "linux-64"
    repodata = {}
    for subdir in ("linux-64", "noarch"):
        data = json.loads((channel_dir / subdir / "repodata.json").read_text())
        for table in ("packages", "packages.conda"):
            repodata.update(data.get(table, {}))
    components = bom["components"]
    assert components
    for component in components:
        purl = component["purl"]
        assert purl.startswith(f"pkg:conda/{component['name']}@{component['version']}?build=")
        build = purl.split("build=")[1].split("&")[0]
        file_name = next(
            f for f, r in repodata.items()
            if (r["name"], r["version"], r["build"]) == (component["name"], component["version"], build)
        )  # fmt: skip
        assert component["hashes"] == [{"alg": "SHA-256", "content": repodata[file_name]["sha256"]}]
        kind = "conda" if file_name.endswith(".conda") else "tar.bz2"
        assert f"subdir={repodata[file_name]['subdir']}" in purl and purl.endswith(f"&type={kind}")
    assert bom["dependencies"][0]["ref"] == "pixi-environment:prod"


def test_sbom_licence_wheels_and_source_date_epoch(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = read_plan(workspace, "prod", "linux-64")
    plan.conda[0].record.license = "BSD-3-Clause"
    if len(plan.conda) > 1:
        plan.conda[1].record.license = "MIT AND Apache-2.0"
    from pixi_pack_ext.plan import PypiPackage

    plan.pypi.append(
        PypiPackage("Demo_Wheel", "1.2", "https://x/demo_wheel-1.2-py3-none-any.whl", sha256="ab" * 32)
    )
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    text = sbom_json(plan, {})
    validate(text)
    assert text == sbom_json(plan, {})  # deterministic, serial number included
    bom = json.loads(text)
    assert bom["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")
    by_name = {c["name"]: c for c in bom["components"]}
    assert by_name[plan.conda[0].name]["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    if len(plan.conda) > 1:
        assert by_name[plan.conda[1].name]["licenses"] == [{"expression": "MIT AND Apache-2.0"}]
    wheel = by_name["Demo_Wheel"]
    assert wheel["purl"] == "pkg:pypi/demo-wheel@1.2"
    assert wheel["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    plan.pypi[-1].sha256 = "cd" * 32
    assert json.loads(sbom_json(plan, {}))["serialNumber"] != bom["serialNumber"]


def test_sbom_of_a_pack_without_one_is_a_one_line_error(tmp_path: Path, workspace: Path) -> None:
    folder = tmp_path / "packdir"
    pack_prod(workspace, folder, "--directory-only")
    assert json.loads(run("pixi-pack", "sbom", folder).stdout)["bomFormat"] == "CycloneDX"
    (folder / "sbom.cdx.json").unlink()
    result = run("pixi-pack", "sbom", folder, check=False)
    assert result.returncode == 1 and b"carries no sbom.cdx.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sbom_of_a_pack_of_several_environments_names_them_all(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "both.tar"
    run("pixi-pack", workspace, "-e", "default", "-e", "prod", "-p", "linux-64", "-o", out)
    text = run("pixi-pack", "sbom", out).stdout.decode()
    validate(text)
    bom = json.loads(text)
    props = [(p["name"], p["value"]) for p in bom["metadata"]["properties"]]
    assert ("pixi:environment", "default") in props and ("pixi:environment", "prod") in props
    assert bom["metadata"]["component"]["name"] == "default, prod"
    names = {c["name"] for c in bom["components"]}
    assert {"hello-bin", "libgreet"} <= names
