"""The workspace's ``[activation]`` tables travel in the pack and apply in pixi's order.

Real workspaces (pixi.toml and pyproject.toml) with activation env and scripts on the default
feature, on features and on ``[target.*]`` tables, locked with rattler against the demo channel
(whose ``activate-demo`` package has an activation script of its own), are packed, unpacked and the
activation script really sourced in bash. What pixi does (``pixi_core`` ``activation_env`` /
``activation_scripts``): features in the environment's order, then the default feature; in a feature
the most specific target first; the first to set a name wins; package activation, then the
manifest's scripts, then the manifest's env.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
import rattler
from conftest import host_platform, pack_prod, run

from pixi_pack_ext.testing.world import ChannelServer, write_lock

pytestmark = pytest.mark.skipif(host_platform() != "linux-64", reason="packs are made for linux-64 here")

#: The tables, written once; ``_pyproject`` moves them under ``[tool.pixi]``.
TABLES = """
[activation]
scripts = ["scripts/default.sh"]
env = { ORDER = "default", SHARED = "default" }

[target.linux-64.activation]
env = { TARGET_LINUX = "default-linux-64", SHARED = "default-linux-64" }

[target.unix.activation]
scripts = ["scripts/unix.sh"]

[target.win-64.activation]
scripts = ["scripts/win.bat"]
env = { ONLY_WINDOWS = "win" }

[feature.one.activation]
scripts = ["scripts/one.sh"]
env = { SHARED = "one", ONE = "$CONDA_PREFIX/one", LITERAL = "$(touch PWNED)`touch PWNED`'\\"" }

[feature.one.target.linux-64.activation]
env = { ONE_TARGET = "one-linux-64", SHARED = "one-linux-64" }

[feature.two.activation]
scripts = ["scripts/two.sh", "scripts/missing.sh"]
env = { SHARED = "two", TWO = "two", FROM_SCRIPT = "env wins over scripts" }

[environments]
prod = ["one", "two"]
bare = { features = ["two"], no-default-feature = true }
"""

SCRIPTS = {
    # Each script appends its name; one.sh also records what it saw of the package's activation
    # (which ran before it) and of the manifest's env (which is set after every script).
    "one.sh": 'export SCRIPT_LOG="${SCRIPT_LOG-}one;"\n'
    'export SEEN_PACKAGE="${ACTIVATE_DEMO-unset}"\nexport SEEN_ENV="${SHARED-unset}"\n',
    "two.sh": 'export SCRIPT_LOG="${SCRIPT_LOG-}two;"\nexport FROM_SCRIPT=script\n',
    "unix.sh": 'export SCRIPT_LOG="${SCRIPT_LOG-}unix;"\n',
    "default.sh": 'export SCRIPT_LOG="${SCRIPT_LOG-}default;"\n',
    "win.bat": "@set SCRIPT_LOG=%SCRIPT_LOG%win;\r\n",
}


def _pixi_toml() -> str:
    return '[workspace]\nname = "act"\nplatforms = ["linux-64", "win-64"]\n' + TABLES


def _pyproject() -> str:
    out = [
        '[project]\nname = "act"\nversion = "0.1"\n\n[tool.pixi.workspace]\nplatforms = ["linux-64", "win-64"]\n'
    ]
    for line in TABLES.splitlines():
        out.append(f"[tool.pixi.{line[1:]}" if line.startswith("[") else line)
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def packs(
    channel_server: ChannelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """``<manifest>-<env>`` -> a pack of that workspace's environment for linux-64."""
    root = tmp_path_factory.mktemp("manifest-activation")
    result = {}
    for manifest, text in (("pixi.toml", _pixi_toml()), ("pyproject.toml", _pyproject())):
        workspace = root / manifest.replace(".", "-")
        (workspace / "scripts").mkdir(parents=True)
        (workspace / manifest).write_text(text)
        for name, body in SCRIPTS.items():
            (workspace / "scripts" / name).write_text(body)
        environments = {"prod": ["activate-demo"], "bare": ["activate-demo"]}
        write_lock(workspace / "pixi.lock", channel_server.url, environments, ["linux-64"])
        for env in environments:
            pack = root / f"{manifest}-{env}.tar"
            made = run("pixi-pack", workspace, "-e", env, "-p", "linux-64", "-o", pack)
            assert "scripts/missing.sh" in made.stderr.decode()  # pixi warns about it too
            result[f"{manifest}-{env}"] = pack
        if manifest == "pixi.toml":
            executable = root / "prod.sh"
            pack_prod(workspace, executable, "--create-executable")
            result["executable"] = executable
    # An installed environment (rattler, from the lock) and a cache holding its archives: --prefix.
    workspace = root / "pixi-toml"
    pack_prod(workspace, root / "x.tar", "--use-cache", root / "cache")
    locked = rattler.LockFile.from_path(workspace / "pixi.lock").environment("prod")
    assert locked is not None
    records = [p.repo_data_record() for p in next(iter(locked.packages_by_platform().values()))]
    asyncio.run(
        rattler.install(
            records,
            target_prefix=root / "installed",
            cache_dir=root / "rattler",
            platform=rattler.Subdir("linux-64"),
        )
    )
    result["installed"], result["cache"], result["workspace"] = root / "installed", root / "cache", workspace
    yield result


def _activated(out: Path, names: list[str]) -> dict[str, str | None]:
    report = out / "report.json"
    probe = "import json, os, sys; json.dump({k: os.environ.get(k) for k in sys.argv[2:]}, open(sys.argv[1], 'w'))"
    subprocess.run(
        [
            "bash",
            "-c",
            '. ./activate.sh && "$0" -c "$1" "$2" "${@:3}"',
            sys.executable,
            probe,
            str(report),
            *names,
        ],
        cwd=out,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(report.read_text())


NAMES = [
    "SCRIPT_LOG", "SEEN_PACKAGE", "SEEN_ENV", "SHARED", "ORDER", "TARGET_LINUX", "ONLY_WINDOWS", "ONE",
    "ONE_TARGET", "TWO", "FROM_SCRIPT", "LITERAL",
]  # fmt: skip


@pytest.mark.parametrize("manifest", ["pixi.toml", "pyproject.toml"])
def test_environment_gets_pixis_activation_in_pixis_order(
    packs: dict[str, Path], tmp_path: Path, manifest: str
) -> None:
    out = tmp_path / "out"
    run("pixi-unpack", packs[f"{manifest}-prod"], "-o", out)
    seen = _activated(out, NAMES)
    prefix = out / "env"
    assert seen == {
        # one (its linux-64 target, then itself), two, then the default feature, whose unix target's
        # scripts replace its own; the missing script is left out.
        "SCRIPT_LOG": "one;two;unix;",
        "SEEN_PACKAGE": f"activated from {prefix}",  # package activation ran first
        "SEEN_ENV": "unset",  # the manifest's env comes after the scripts
        "SHARED": "one-linux-64",
        "ORDER": "default",
        "TARGET_LINUX": "default-linux-64",
        "ONLY_WINDOWS": None,
        "ONE": f"{prefix}/one",  # $CONDA_PREFIX is expanded, as the shell pixi writes for does
        "ONE_TARGET": "one-linux-64",
        "TWO": "two",
        "FROM_SCRIPT": "env wins over scripts",
        "LITERAL": "$(touch PWNED)`touch PWNED`'\"",  # never run
    }
    assert not list(tmp_path.rglob("PWNED"))


def test_no_default_feature_leaves_the_default_tables_out(packs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("pixi-unpack", packs["pixi.toml-bare"], "-o", out)
    seen = _activated(out, ["SCRIPT_LOG", "SHARED", "ORDER", "TWO"])
    assert seen == {"SCRIPT_LOG": "two;", "SHARED": "two", "ORDER": None, "TWO": "two"}


def test_pack_carries_activation_as_optional_parts(packs: dict[str, Path], tmp_path: Path) -> None:
    with tarfile.open(packs["pixi.toml-prod"]) as tar:
        names = tar.getnames()
        metadata = json.loads(tar.extractfile("pixi-pack.json").read())  # type: ignore[union-attr]
    assert metadata["activation"]["scripts"] == [
        "activation/00-one.sh",
        "activation/01-two.sh",
        "activation/02-unix.sh",
    ]
    assert list(metadata["activation"]["env"]) == [
        "ONE_TARGET", "SHARED", "ONE", "LITERAL", "TWO", "FROM_SCRIPT", "TARGET_LINUX", "ORDER",
    ]  # fmt: skip
    assert {"activation/00-one.sh", "activation/01-two.sh", "activation/02-unix.sh"} <= set(names)


def test_shells_without_the_scripts_say_so_and_still_set_the_env(
    packs: dict[str, Path], tmp_path: Path
) -> None:
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed")
    out = tmp_path / "out"
    result = run("pixi-unpack", packs["pixi.toml-prod"], "-o", out, "-s", "fish")
    assert "00-one.sh" in result.stderr.decode() and "--shell bash" in result.stderr.decode()
    report = out / "report.json"
    probe = "import json, os, sys; json.dump([os.environ.get('SHARED'), os.environ.get('ONE')], open(sys.argv[1], 'w'))"
    subprocess.run(
        ["fish", "--no-config", "-c", f'source ./activate.fish; {sys.executable} -c "{probe}" {report}'],
        cwd=out,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert json.loads(report.read_text()) == ["one-linux-64", f"{out / 'env'}/one"]


def test_oci_entrypoint_applies_the_manifest_activation(packs: dict[str, Path], tmp_path: Path) -> None:
    environment = pytest.importorskip("pixi_pack_oci.environment")
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    with tarfile.open(packs["pyproject.toml-prod"]) as tar:
        tar.extractall(pack_dir, filter="data")
    staged = tmp_path / "staged"
    at = PurePosixPath(staged)  # the image's prefix is where it is staged, so it runs here
    manifest = environment.install(pack_dir, "linux-64", staged, at, tmp_path / "cache")
    entrypoint = tmp_path / "entrypoint.sh"
    entrypoint.write_text(environment.entrypoint_script(staged, at, "linux-64", manifest))
    shown = subprocess.run(
        ["sh", str(entrypoint), "sh", "-c", 'echo "$SCRIPT_LOG|$SHARED|$ONE|$SEEN_PACKAGE"'],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert shown == f"one;two;unix;|one-linux-64|{staged}/one|activated from {staged}\n"


def _hostile_metadata(pack: Path, target: Path, activation: object) -> Path:
    """The pack with ``pixi-pack.json``'s activation field replaced."""
    from security.hostile import find, read_members, set_data, write_pack

    members = read_members(pack)
    members.remove(find(members, "pixi-pack-manifest.json"))  # an attacker drops it; else it refuses first
    metadata = json.loads(find(members, "pixi-pack.json").data or b"")
    metadata["activation"] = activation
    set_data(members, "pixi-pack.json", json.dumps(metadata).encode())
    return write_pack(target, members)


@pytest.mark.parametrize(
    ("activation", "needle"),
    [
        ({"env": {"A=B": "x"}}, "'A=B'"),
        ({"env": {"$(touch PWNED)": "x"}}, "invalid name"),
        ({"env": {"A": 1}}, "string values"),
        ({"scripts": ["activation/../../../escape.sh"]}, "escape.sh"),
        ({"scripts": ["/etc/passwd"]}, "/etc/passwd"),
        ({"scripts": ["channel/noarch/repodata.json"]}, "repodata.json"),
        ({"scripts": ["activation/not-in-the-pack.sh"]}, "not-in-the-pack.sh"),
        ("scripts", "JSON object"),
    ],
)
def test_hostile_activation_field_is_refused_and_leaves_nothing(
    packs: dict[str, Path], tmp_path: Path, activation: object, needle: str
) -> None:
    pack = _hostile_metadata(packs["pixi.toml-prod"], tmp_path / "hostile.tar", activation)
    out = tmp_path / "out"
    result = run("pixi-unpack", pack, "-o", out, check=False)
    error = result.stderr.decode().strip()
    assert result.returncode != 0 and len(error.splitlines()) == 1 and "Traceback" not in error
    assert needle in error
    assert not out.exists() and not list(tmp_path.rglob("PWNED")) and not (tmp_path / "escape.sh").exists()


def test_a_linked_activation_script_is_refused(packs: dict[str, Path], tmp_path: Path) -> None:
    from security.hostile import find, link_member, read_members, write_pack

    secret = tmp_path / "secret.txt"
    secret.write_text("not for the environment\n")
    members = read_members(packs["pixi.toml-prod"])
    members.remove(find(members, "activation/00-one.sh"))
    members.append(link_member("activation/00-one.sh", str(secret)))
    out = tmp_path / "out"
    result = run("pixi-unpack", write_pack(tmp_path / "hostile.tar", members), "-o", out, check=False)
    error = result.stderr.decode().strip()
    assert result.returncode != 0 and len(error.splitlines()) == 1 and "00-one.sh" in error
    assert not out.exists()


def test_prefix_pack_warns_without_manifest_and_carries_it_with(
    packs: dict[str, Path], tmp_path: Path
) -> None:
    common = ("--prefix", packs["installed"], "--use-cache", packs["cache"])
    bare = run("pixi-pack", *common, "-o", tmp_path / "bare.tar")
    warnings = [line for line in bare.stderr.decode().splitlines() if "--manifest" in line]
    assert len(warnings) == 1 and "[activation]" in warnings[0]
    with tarfile.open(tmp_path / "bare.tar") as tar:
        assert "activation" not in json.loads(tar.extractfile("pixi-pack.json").read())  # type: ignore[union-attr]
    run("pixi-pack", *common, "--manifest", packs["workspace"], "-e", "prod", "-o", tmp_path / "with.tar")
    out = tmp_path / "out"
    run("pixi-unpack", tmp_path / "with.tar", "-o", out)
    assert _activated(out, ["SCRIPT_LOG", "SHARED"]) == {
        "SCRIPT_LOG": "one;two;unix;",
        "SHARED": "one-linux-64",
    }


def test_scripts_outside_the_workspace_are_not_packed(channel_server: ChannelServer, tmp_path: Path) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY\n")
    workspace = tmp_path / "ws"
    (workspace / "scripts").mkdir(parents=True)
    (workspace / "scripts" / "link.sh").symlink_to(secret)
    write_lock(workspace / "pixi.lock", channel_server.url, {"default": ["activate-demo"]}, ["linux-64"])
    for script in (str(secret), "../id_rsa", "scripts/link.sh"):
        (workspace / "pixi.toml").write_text(
            f'[workspace]\nname = "w"\nplatforms = ["linux-64"]\n[activation]\nscripts = ["{script}"]\n'
        )
        result = run("pixi-pack", workspace, "-p", "linux-64", "-o", tmp_path / "out.tar", check=False)
        error = result.stderr.decode().strip()
        assert result.returncode != 0 and len(error.splitlines()) == 1, error
        assert "outside the workspace" in error and not (tmp_path / "out.tar").exists()


@pytest.mark.parametrize("how", ["stdin", "folder", "self-extracting"])
def test_every_way_of_unpacking_applies_it(packs: dict[str, Path], tmp_path: Path, how: str) -> None:
    out = tmp_path / "out"
    if how == "stdin":
        run("pixi-unpack", "-", "-o", out, input=packs["pixi.toml-prod"].read_bytes())
    elif how == "folder":
        folder = tmp_path / "pack"
        folder.mkdir()
        with tarfile.open(packs["pixi.toml-prod"]) as tar:
            tar.extractall(folder, filter="data")
        run("pixi-unpack", folder, "-o", out)
    else:
        run("sh", packs["executable"], "-o", out)
    assert _activated(out, ["SCRIPT_LOG", "SHARED"]) == {
        "SCRIPT_LOG": "one;two;unix;",
        "SHARED": "one-linux-64",
    }


def test_delta_metadata_carries_activation_and_an_update_replaces_the_scripts(tmp_path: Path) -> None:
    """Deltas need changed packages to be made; their metadata and the update step are checked here."""
    from pixi_pack_ext.activation_data import PackActivation
    from pixi_pack_ext.delta import DeltaInfo, parse_delta
    from pixi_pack_ext.metadata import metadata_for
    from pixi_pack_ext.package_set import PackageSet
    from pixi_pack_ext.unpack.activation import refresh_scripts

    activation = PackActivation(env=(("A", "$HOME/x"),), scripts=("activation/00-new.sh",))
    info = DeltaInfo(base=PackageSet.of([]), target=PackageSet.of([]))
    metadata, _ = parse_delta(info.to_json(metadata_for("linux-64", (), activation)))
    assert metadata.activation == activation
    pack_dir = tmp_path / "pack"
    (pack_dir / "activation").mkdir(parents=True)
    (pack_dir / "activation" / "00-new.sh").write_text("export NEW=1\n")
    prefix = tmp_path / "env"
    old = prefix / "etc" / "pixi-pack-ext" / "activation"
    old.mkdir(parents=True)
    (old / "00-old.sh").write_text("export OLD=1\n")
    manifest = refresh_scripts(pack_dir, prefix, activation)
    assert manifest is not None and [p.name for p in manifest.scripts] == ["00-new.sh"]
    assert sorted(p.name for p in old.iterdir()) == ["00-new.sh"]
    assert refresh_scripts(pack_dir, prefix, None) is None and not old.exists()
