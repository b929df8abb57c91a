"""A pack of several environments carries each one's ``[activation]``, and an unpack applies exactly
the chosen environment's: a real workspace whose two environments' features set different variables
and source different scripts of the same file name, locked against the demo channel, packed into
one pack, unpacked with ``--environment`` and ``--all``, and each activation script sourced in bash.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_linux64, run

from pixi_pack_ext.testing.world import ChannelServer, write_lock

pytestmark = needs_linux64

MANIFEST = """\
[workspace]
name = "two-roles"
platforms = ["linux-64"]

[activation]
scripts = ["scripts/common.sh"]
env = { COMMON = "both", ROLE = "default feature" }

[feature.prod.activation]
scripts = ["scripts/prod/setup.sh"]
env = { ROLE = "prod", PROD_HOME = "$CONDA_PREFIX/prod" }

[feature.worker.activation]
scripts = ["scripts/worker/setup.sh"]
env = { ROLE = "worker", WORKER_ONLY = "yes" }

[environments]
prod = ["prod"]
worker = ["worker"]
"""

#: Two scripts named setup.sh (one per feature) and one both environments source.
SCRIPTS = {
    "common.sh": 'export SCRIPT_LOG="${SCRIPT_LOG-}common;"\n',
    "prod/setup.sh": 'export SCRIPT_LOG="${SCRIPT_LOG-}prod-setup;"\nexport PROD_SCRIPT=ran\n',
    "worker/setup.sh": 'export SCRIPT_LOG="${SCRIPT_LOG-}worker-setup;"\nexport WORKER_SCRIPT=ran\n',
}

NAMES = ["SCRIPT_LOG", "COMMON", "ROLE", "PROD_HOME", "PROD_SCRIPT", "WORKER_ONLY", "WORKER_SCRIPT"]


def expected(role: str, prefix: Path) -> dict[str, str | None]:
    """What sourcing ``role``'s activation script sets: its feature first, then the default feature."""
    prod = role == "prod"
    return {
        "SCRIPT_LOG": f"{role}-setup;common;",
        "COMMON": "both",
        "ROLE": role,
        "PROD_HOME": f"{prefix}/prod" if prod else None,
        "PROD_SCRIPT": "ran" if prod else None,
        "WORKER_ONLY": None if prod else "yes",
        "WORKER_SCRIPT": None if prod else "ran",
    }


@pytest.fixture(scope="module")
def two_roles(channel_server: ChannelServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace (prod: hello-bin; worker: activate-demo), packed into ``both.tar`` next to it."""
    root = tmp_path_factory.mktemp("two-roles")
    workspace = root / "workspace"
    workspace.mkdir()
    (workspace / "pixi.toml").write_text(MANIFEST)
    for name, body in SCRIPTS.items():
        (workspace / "scripts" / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / "scripts" / name).write_text(body)
    environments = {"prod": ["hello-bin"], "worker": ["activate-demo"]}
    write_lock(workspace / "pixi.lock", channel_server.url, environments, ["linux-64"])
    made = run(
        "pixi-pack", workspace, "-e", "prod", "-e", "worker", "-p", "linux-64", "-o", root / "both.tar"
    )
    assert "[activation]" not in made.stderr.decode()  # nothing is dropped any more
    return root / "both.tar"


def activated(out: Path, script: str) -> dict[str, str | None]:
    """The variables of ``NAMES`` after ``. ./SCRIPT`` in bash, run in ``out``."""
    report = out / "report.json"
    probe = "import json, os, sys; json.dump({k: os.environ.get(k) for k in sys.argv[2:]}, open(sys.argv[1], 'w'))"
    subprocess.run(
        [
            "bash",
            "-c",
            f'. ./{script} && "$0" -c "$1" "$2" "${{@:3}}"',
            sys.executable,
            probe,
            report,
            *NAMES,
        ],
        cwd=out,
        check=True,
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    return json.loads(report.read_text())


def test_each_environment_carries_its_activation(two_roles: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pack"
    folder.mkdir()
    run("tar", "-xf", two_roles, "-C", folder)
    targets = json.loads((folder / "pixi-pack.json").read_text())["environments"]
    prod = targets["prod"]["linux-64"]["activation"]
    worker = targets["worker"]["linux-64"]["activation"]
    assert prod["env"] == {"ROLE": "prod", "PROD_HOME": "$CONDA_PREFIX/prod", "COMMON": "both"}
    assert worker["env"] == {"ROLE": "worker", "WORKER_ONLY": "yes", "COMMON": "both"}
    # pixi's order (the feature's script, then the default feature's); the two setup.sh are two
    # files of the pack, common.sh is stored once for both.
    assert [Path(s).name.split("-", 1)[1] for s in prod["scripts"]] == ["setup.sh", "common.sh"]
    assert prod["scripts"][0] != worker["scripts"][0] and prod["scripts"][1] == worker["scripts"][1]
    stored = sorted(p.name for p in (folder / "activation").iterdir())
    assert stored == sorted({Path(s).name for s in prod["scripts"] + worker["scripts"]})
    assert (folder / prod["scripts"][0]).read_text() == SCRIPTS["prod/setup.sh"]
    assert (folder / worker["scripts"][0]).read_text() == SCRIPTS["worker/setup.sh"]


@pytest.mark.parametrize("role", ["prod", "worker"])
def test_unpacking_one_environment_applies_its_activation_only(
    two_roles: Path, tmp_path: Path, role: str
) -> None:
    out = tmp_path / "out"
    run("pixi-unpack", two_roles, "--environment", role, "-o", out)
    assert activated(out, "activate.sh") == expected(role, out / "env")


def test_unpacking_all_applies_each_environments_activation(two_roles: Path, tmp_path: Path) -> None:
    out = tmp_path / "all"
    run("pixi-unpack", two_roles, "--all", "-o", out)
    assert activated(out, "activate-prod.sh") == expected("prod", out / "prod")
    assert activated(out, "activate-worker.sh") == expected("worker", out / "worker")


def _edited(two_roles: Path, tmp_path: Path, edit: object) -> Path:
    """The pack as a folder, with its worker's activation changed by ``edit`` (and the manifest,
    which would refuse the changed file first, dropped as an attacker would)."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    run("tar", "-xf", two_roles, "-C", folder)
    data = json.loads((folder / "pixi-pack.json").read_text())
    edit(data["environments"]["worker"]["linux-64"]["activation"])  # type: ignore[operator]
    (folder / "pixi-pack.json").write_text(json.dumps(data))
    (folder / "pixi-pack-manifest.json").unlink()
    return folder


def _missing(activation: dict[str, object]) -> None:
    activation["scripts"] = ["activation/not-in-the-pack.sh"]


def _escaping(activation: dict[str, object]) -> None:
    activation["scripts"] = ["activation/../../escape.sh"]


def _bad_name(activation: dict[str, object]) -> None:
    activation["env"] = {"PATH;touch PWNED": "x"}


def _reserved_name(activation: dict[str, object]) -> None:
    activation["env"] = {"BASH_ARGV0": "x"}


def _nul_value(activation: dict[str, object]) -> None:
    activation["env"] = {"ROLE": "a\u0000b"}


def _unwritable_value(activation: dict[str, object]) -> None:
    activation["env"] = {"ROLE": "half a character: \ud800"}  # no shell (nor UTF-8) holds it


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_missing, "not-in-the-pack.sh"),
        (_escaping, "escape.sh"),
        (_bad_name, "invalid name"),
        (_reserved_name, "BASH_ARGV0"),
        (_nul_value, "ROLE"),
        (_unwritable_value, "ROLE"),
    ],
)
@pytest.mark.parametrize("how", [["--environment", "worker"], ["--all"]])
def test_hostile_activation_of_an_environment_is_refused_before_anything_is_written(
    two_roles: Path, tmp_path: Path, edit: object, needle: str, how: list[str]
) -> None:
    folder = _edited(two_roles, tmp_path, edit)
    (tmp_path / "escape.sh").unlink(missing_ok=True)
    out = tmp_path / "out"
    result = run("pixi-unpack", folder, *how, "-o", out, check=False)
    error = result.stderr.decode().strip()
    assert result.returncode != 0 and len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert needle in error
    assert not out.exists() and not (tmp_path / "escape.sh").exists()
    assert not list(tmp_path.rglob("PWNED"))
