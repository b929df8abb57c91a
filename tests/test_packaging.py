"""How the tool ships: the rattler-build recipe and the pixi workspace agree with pyproject.toml.

The recipe is rendered offline with py-rattler-build (rendering resolves nothing, so no channel is
contacted); building it needs conda-forge and is skipped when that is out of reach.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import rattler
from packaging.requirements import Requirement
from rattler_build import PlatformConfig, RenderConfig, Stage0Recipe, ToolConfiguration

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipe" / "recipe.yaml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAMES = tomllib.loads((REPO / "recipe" / "conda-names.toml").read_text())


def conda_requirements(requirement: str) -> dict[str, str]:
    """The conda-forge packages (name -> version spec) that stand for one PyPI requirement."""
    req = Requirement(requirement)
    name = NAMES["names"].get(req.name, req.name)
    found = {name: ",".join(sorted(str(s) for s in req.specifier))}
    for extra in sorted(req.extras):
        for spec in NAMES["extras"][f"{req.name}[{extra}]"]:
            match = rattler.MatchSpec(spec)
            found[match.name.normalized] = str(match.version or "")
    return found


def normalize(version_spec: str) -> str:
    """A version spec with its comma-separated parts sorted, so ``<2,>=1`` equals ``>=1,<2``."""
    return ",".join(sorted(p.strip() for p in version_spec.split(",") if p.strip() and p.strip() != "*"))


def expected_run_requirements() -> dict[str, str]:
    """pyproject's dependencies (markers dropped: a noarch package cannot have them), conda-named."""
    expected: dict[str, str] = {}
    for requirement in PYPROJECT["dependencies"]:
        expected.update(conda_requirements(requirement))
    return {name: normalize(spec) for name, spec in expected.items()}


def render(recipe: Path) -> Any:
    """The one rendered variant of a recipe, as a dict (experimental features off, as conda-forge)."""
    variants = Stage0Recipe.from_file(recipe).render(
        render_config=RenderConfig(platform=PlatformConfig(target_platform="linux-64", experimental=False))
    )
    assert len(variants) == 1
    return variants[0].recipe.to_dict()


@pytest.fixture(scope="module")
def rendered() -> Any:
    return render(RECIPE)


def test_recipe_name_version_and_entry_points_come_from_pyproject(rendered: Any) -> None:
    assert rendered["package"] == {"name": PYPROJECT["name"], "version": PYPROJECT["version"]}
    assert rendered["build"]["noarch"] == "python"
    entry_points = sorted(rendered["build"]["python"]["entry_points"])
    assert entry_points == sorted(f"{name} = {target}" for name, target in PYPROJECT["scripts"].items())
    assert "--no-build-isolation" in rendered["build"]["script"]
    assert rendered["source"] == [{"path": ".."}]
    assert rendered["about"]["license"] == PYPROJECT["license"]


def test_recipe_run_requirements_match_pyproject(rendered: Any) -> None:
    run = {}
    for spec in rendered["requirements"]["run"]:
        match = rattler.MatchSpec(spec)
        run[match.name.normalized] = normalize(str(match.version or ""))
    python_min = PYPROJECT["requires-python"].removeprefix(">=")
    assert run.pop("python") == f">={python_min}"
    assert run == expected_run_requirements()
    assert f"python {python_min}.*" in rendered["requirements"]["host"]


def test_recipe_tests_import_and_run_both_commands(rendered: Any) -> None:
    python_tests = [t["python"] for t in rendered["tests"] if "python" in t]
    assert python_tests and "pixi_pack_ext" in python_tests[0]["imports"]
    scripts = [line for t in rendered["tests"] if "script" in t for line in t["script"]]
    assert {"pixi-pack --help", "pixi-unpack --help"} <= set(scripts)


def test_recipe_uses_no_experimental_feature() -> None:
    """conda-forge's linter refuses experimental features: the recipe must not need them."""
    code = [line for line in RECIPE.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "load_from_file" in line or "git_" in line]
    assert "--experimental" not in (REPO / "pixi.toml").read_text()


def test_recipe_summary_matches_pyproject(rendered: Any) -> None:
    assert rendered["about"]["summary"] == PYPROJECT["description"]


def test_recipe_commands_in_its_tests_exist() -> None:
    """Every command the recipe's tests run works here too (the package runs the same ones)."""
    from conftest import run

    scripts = [line for t in render(RECIPE)["tests"] if "script" in t for line in t["script"]]
    for line in scripts:
        argv = line.split()
        result = run(*argv)
        assert result.stdout, line


# --------------------------------------------------------------------------------------------------
# pixi.toml
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pixi_toml() -> dict[str, Any]:
    return tomllib.loads((REPO / "pixi.toml").read_text())


def _pixi_requirements(table: dict[str, Any], pypi_table: dict[str, Any]) -> dict[str, str]:
    found = {}
    for name, value in table.items():
        found[name] = normalize(value if isinstance(value, str) else value.get("version", ""))
    for name, value in pypi_table.items():
        found[name] = normalize(value if isinstance(value, str) else value.get("version", ""))
    return found


def _expected_pixi(requirements: list[str]) -> dict[str, str]:
    expected: dict[str, str] = {}
    pypi_only = set(NAMES["pypi-only"]["names"])
    for requirement in requirements:
        req = Requirement(requirement)
        if req.name == PYPROJECT["name"]:  # the test extra pulls in the testing extra
            continue
        if req.name in pypi_only:
            expected[req.name] = normalize(",".join(str(s) for s in req.specifier))
        else:
            expected.update({k: normalize(v) for k, v in conda_requirements(requirement).items()})
    return expected


def test_pixi_default_environment_has_pyproject_dependencies(pixi_toml: dict[str, Any]) -> None:
    found = _pixi_requirements(pixi_toml["dependencies"], pixi_toml["pypi-dependencies"])
    assert found.pop("python") == normalize(PYPROJECT["requires-python"])
    editable = pixi_toml["pypi-dependencies"][PYPROJECT["name"]]
    assert editable == {"path": ".", "editable": True}
    found.pop(PYPROJECT["name"])
    assert found == expected_run_requirements()


def test_pixi_test_feature_has_the_test_extras(pixi_toml: dict[str, Any]) -> None:
    test = pixi_toml["feature"]["test"]
    found = _pixi_requirements(test["dependencies"], test.get("pypi-dependencies", {}))
    extras = PYPROJECT["optional-dependencies"]
    assert found == _expected_pixi(extras["test"] + extras["testing"])
    assert test["pypi-dependencies"]["moto"]["extras"] == ["server"]


def test_pixi_environments_and_tasks(pixi_toml: dict[str, Any]) -> None:
    environments = pixi_toml["environments"]
    assert {"test", "lint"} <= set(environments)  # default is implicit
    assert environments["test"]["solve-group"] == "default"
    tasks = {
        name: (feature, task)
        for feature, data in pixi_toml["feature"].items()
        for name, task in data.get("tasks", {}).items()
    }
    assert {"test", "lint", "demo", "bench", "build"} <= set(tasks)
    assert tasks["test"][1]["cmd"] == "pytest"
    assert "recipe/recipe.yaml" in tasks["build"][1]["cmd"]
    for name in ("demo", "bench"):
        script = tasks[name][1]["cmd"].split()[1]
        assert tasks[name][0] == "test", name
        assert (REPO / script).is_file(), f"task {name} runs a missing {script}"
    lint = pixi_toml["feature"]["lint"]["dependencies"]
    assert "ruff" in lint and environments["lint"]["no-default-feature"] is True


# --------------------------------------------------------------------------------------------------
# Building the package (needs conda-forge)
# --------------------------------------------------------------------------------------------------


def conda_forge_reachable() -> bool:
    try:
        socket.create_connection(("conda.anaconda.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_recipe_builds_and_its_tests_pass(tmp_path: Path) -> None:
    if not conda_forge_reachable():
        pytest.skip("building the recipe needs conda-forge (conda.anaconda.org), which is not reachable")
    results = Stage0Recipe.from_file(RECIPE).run_build(
        tool_config=ToolConfiguration(test_strategy="native"),
        output_dir=tmp_path,
        channels=["conda-forge"],
        no_build_id=True,
        render_config=RenderConfig(platform=PlatformConfig(experimental=False)),
    )
    packages = [Path(p) for result in results for p in result.packages]
    assert [p.parent.name for p in packages] == ["noarch"]
    assert packages[0].name.startswith(f"{PYPROJECT['name']}-{PYPROJECT['version']}-py")
