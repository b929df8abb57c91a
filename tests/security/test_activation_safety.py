"""Activation scripts hold hostile values as data: every shell gets the exact value, none runs code.

A real package whose ``etc/conda/env_vars.d`` file holds command substitutions, quotes, ``%``, a
newline and unicode is packed from a real lock and unpacked into an output folder whose own name is
hostile; each available shell then really sources the script, and a child process reports the
variables it sees. Shells not installed here (PowerShell, nushell) are checked by reading their
string literals back.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from conftest import host_platform, run

from pixi_pack_ext.testing.python import build_package
from pixi_pack_ext.testing.world import ChannelServer, index_channel, write_lock

MARKER = "PWNED"
#: Everything a shell might read as code, plus a line break, a tab, unicode and PowerShell's
#: typographic single quotes.
HOSTILE = (
    f"a$(touch {MARKER})b`touch {MARKER}`c\"d'e%PATH%;f&g|h<i>j\nk\tl é ✓ \u2019\u2018\u201a\u201b "
    f"\\ $HOME ${{HOME}} !x ^ * ; touch {MARKER}; '\"; touch {MARKER} #"
)
#: An output folder and an environment folder with hostile names (no ':' or ';': PATH separators).
HOSTILE_DIR = f"o$(touch {MARKER})u`touch {MARKER}`t'\"x é"
HOSTILE_ENV = f"e'$(touch {MARKER})\"nv"

pytestmark = pytest.mark.skipif(host_platform() != "linux-64", reason="packs are made for linux-64 here")


def _package_files(values: dict[str, str]) -> dict[str, str]:
    return {
        "etc/conda/env_vars.d/hostile-vars.json": json.dumps(values),
        # A package's own activation script, under a hostile name: sourced, never run as a command line.
        f"etc/conda/activate.d/a'$(touch {MARKER})\"b`touch {MARKER}`.sh": "export FROM_HOOK=ran\n",
        # xonsh would expand $HOME (and run ${...}) inside a quoted path in subprocess mode.
        'etc/conda/activate.d/x$HOME${__import__("os").system("touch '
        + MARKER
        + '")}.xsh': "$FROM_HOOK = 'ran'\n",
    }


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Packs of real locks: ``hostile`` (hostile values), ``badname`` (a key holding '=')."""
    root = tmp_path_factory.mktemp("activation-world")
    channel = root / "channel"
    build_package(
        channel / "noarch", "hostile-vars", "1.0", files=_package_files({"EVIL": HOSTILE, "PLAIN": "x"})
    )
    build_package(channel / "noarch", "bad-name-vars", "1.0", files=_package_files({"A=B": "1"}))
    # bash evaluates an assignment to RANDOM as arithmetic: x[$(...)] runs even from single quotes.
    build_package(
        channel / "noarch",
        "reserved-vars",
        "1.0",
        files={"etc/conda/env_vars.d/r.json": json.dumps({"PLAIN": "x", "RANDOM": f"x[$(touch {MARKER})]"})},
    )
    build_package(channel / "noarch", "quote-vars", "1.0", files=_package_files({"QUOTED": 'say "hi"'}))
    build_package(
        channel / "noarch",
        "surrogate-vars",
        "1.0",
        files={
            "etc/conda/env_vars.d/s.json": json.dumps({"BROKEN": "a\ud800b"}),  # a lone surrogate: no text
        },
    )
    index_channel(channel)
    workspace = root / "ws"
    workspace.mkdir()
    (workspace / "pixi.toml").write_text('[workspace]\nname = "h"\nplatforms = ["linux-64"]\n')
    environments = {
        "hostile": ["hostile-vars"],
        "badname": ["bad-name-vars"],
        "reserved": ["reserved-vars"],
        "quote": ["quote-vars"],
        "surrogate": ["surrogate-vars"],
    }
    result = {}
    with ChannelServer(channel) as server:
        write_lock(workspace / "pixi.lock", server.url, environments, ["linux-64"])
        for name in environments:
            pack = root / f"{name}.tar"
            run("pixi-pack", workspace, "-e", name, "-p", "linux-64", "-o", pack)
            result[name] = pack
        executable = root / "hostile.sh"
        run(
            "pixi-pack", workspace, "-e", "hostile", "-p", "linux-64", "--create-executable", "-o", executable
        )
        result["hostile-executable"] = executable
    yield result


def _unpack(pack: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return run("pixi-unpack", pack, "-o", out, "-e", HOSTILE_ENV, *extra, check=False)


def _markers(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{MARKER}*") if p.name == MARKER]


PROBE = (
    "import json, os, sys; json.dump({k: os.environ.get(k) for k in sys.argv[2:]}, open(sys.argv[1], 'w'))"
)


def _source_and_probe(shell_argv: list[str], source_line: str, tmp_path: Path) -> dict[str, str | None]:
    """Source the script in a real shell, then let a child process report what it inherited."""
    report = tmp_path / "report.json"
    python = sys.executable
    probe = f"{source_line}\n'{python}' -c \"{PROBE}\" report.json EVIL PLAIN CONDA_PREFIX PATH FROM_HOOK\n"
    script = tmp_path / "run-probe"
    script.write_text(probe)
    subprocess.run([*shell_argv, "run-probe"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    return json.loads(report.read_text())


SOURCING = {
    "bash": (["bash"], "bash", ". ./activate.sh"),
    "sh": (["sh"], "bash", ". ./activate.sh"),
    "zsh": (["zsh", "-f"], "zsh", ". ./activate.zsh"),
    "fish": (["fish", "--no-config"], "fish", "source ./activate.fish"),
}


@pytest.mark.parametrize("shell", list(SOURCING))
def test_sourcing_gives_the_exact_values_and_runs_nothing(
    packs: dict[str, Path], tmp_path: Path, shell: str
) -> None:
    argv, script_shell, source_line = SOURCING[shell]
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    out = tmp_path / HOSTILE_DIR
    run("pixi-unpack", packs["hostile"], "-o", out, "-e", HOSTILE_ENV, "-s", script_shell)
    seen = _source_and_probe(argv, source_line, out)
    prefix = str(out / HOSTILE_ENV)
    assert seen["EVIL"] == HOSTILE and seen["PLAIN"] == "x" and seen["CONDA_PREFIX"] == prefix
    assert seen["PATH"] is not None and seen["PATH"].split(":")[0] == f"{prefix}/bin"
    assert seen["FROM_HOOK"] == (None if shell == "fish" else "ran")  # fish sources only .fish scripts
    assert _markers(tmp_path) == []


def test_xonsh_gets_the_exact_values(packs: dict[str, Path], tmp_path: Path) -> None:
    if shutil.which("xonsh") is None:
        pytest.skip("xonsh is not installed")
    out = tmp_path / HOSTILE_DIR
    run("pixi-unpack", packs["hostile"], "-o", out, "-e", HOSTILE_ENV, "-s", "xonsh")
    report = out / "report.json"
    code = f"source ./activate.xsh\nimport json\njson.dump([$EVIL, $CONDA_PREFIX, $FROM_HOOK], open({str(report)!r}, 'w'))\n"
    subprocess.run(["xonsh", "--no-rc", "-c", code], cwd=out, check=True, capture_output=True, timeout=60)
    assert json.loads(report.read_text()) == [HOSTILE, str(out / HOSTILE_ENV), "ran"]
    assert _markers(tmp_path) == []


def _assignments(text: str, pattern: str) -> dict[str, str]:
    """``NAME -> right-hand side`` of each assignment line (a value may span lines)."""
    found = {}
    for match in re.finditer(pattern, text, flags=re.S | re.M):
        found[match.group(1)] = match.group(2)
    return found


def _powershell_string(expression: str) -> str:
    """Read back a concatenation of PowerShell single-quoted literals and "`n"/"`r" (what we write)."""
    quotes = "'\u2018\u2019\u201a\u201b"
    value, i = [], 0
    while i < len(expression):
        c = expression[i]
        if expression.startswith(('"`n"', '"`r"'), i):
            value.append("\n" if expression[i + 2] == "n" else "\r")
            i += 4
        elif c in quotes:
            i += 1
            while True:
                if expression[i] in quotes:
                    if i + 1 < len(expression) and expression[i + 1] in quotes:
                        value.append(expression[i])
                        i += 2
                        continue
                    i += 1
                    break
                value.append(expression[i])
                i += 1
        elif c in " +()":
            i += 1
        else:
            raise AssertionError(f"unexpected {expression[i:]!r} in a PowerShell value")
    return "".join(value)


def _nushell_string(expression: str) -> str:
    """Read back ``("" + "...")``: nushell double-quoted strings with backslash escapes only."""
    assert expression.startswith("(") and expression.endswith(")")
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', expression[1:-1], flags=re.S)
    rest = re.sub(r'"((?:[^"\\]|\\.)*)"', "", expression[1:-1], flags=re.S)
    assert set(rest) <= {" ", "+"}, rest
    escapes = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
    return "".join(re.sub(r"\\(.)", lambda m: escapes[m.group(1)], text) for text in literals)


@pytest.mark.parametrize(
    ("shell", "file", "pattern", "read"),
    [
        (
            "powershell",
            "activate.ps1",
            r"^\$\{Env:(\w+)\} = (.*?)\r?$(?=\r?\n(?:\$|\.|\Z)|\Z)",
            _powershell_string,
        ),
        ("nushell", "activate.nu", r"^\$env\.(\w+) = (.*?)$(?=\n(?:\$|source)|\n?\Z)", _nushell_string),
        ("xonsh", "activate.xsh", r"^\$(\w+) = (.*?)$", ast.literal_eval),
    ],
)
def test_other_shells_hold_the_exact_values(
    packs: dict[str, Path], tmp_path: Path, shell: str, file: str, pattern: str, read: object
) -> None:
    out = tmp_path / HOSTILE_DIR
    run("pixi-unpack", packs["hostile"], "-o", out, "-e", HOSTILE_ENV, "-s", shell)
    text = (out / file).read_bytes().decode("utf-8").replace("\r\n", "\n")
    found = _assignments(text, pattern)
    if shell == "powershell":  # CRLF line ends must not reach into a value: breaks are "`n"
        assert "\n" not in found["EVIL"]
    values = {name: read(found[name]) for name in ("EVIL", "CONDA_PREFIX")}  # type: ignore[operator]
    assert values["EVIL"] == HOSTILE and values["CONDA_PREFIX"] == str(out / HOSTILE_ENV)


def test_cmd_refuses_a_value_it_cannot_hold(packs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = run("pixi-unpack", packs["quote"], "-o", out, "-s", "cmd", check=False)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1
    assert "QUOTED" in lines[0] and "cmd.exe" in lines[0] and "Traceback" not in lines[0]
    assert list(out.iterdir()) == []  # no environment and no script left behind
    result = _unpack(packs["hostile"], out, "-s", "cmd")  # the folder's name has a double quote
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and HOSTILE_ENV in lines[0] and "cmd.exe" in lines[0]
    assert list(out.iterdir()) == []


def test_invalid_variable_name_is_refused(packs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _unpack(packs["badname"], out)
    error = result.stderr.decode().strip()
    assert result.returncode != 0 and len(error.splitlines()) == 1
    assert "'A=B'" in error and "env_vars.d/hostile-vars.json" in error and "Traceback" not in error
    assert not out.exists()


def test_a_name_the_shells_keep_is_refused(packs: dict[str, Path], tmp_path: Path) -> None:
    """No quoting makes ``export RANDOM=...`` (bash: arithmetic, runs ``$(...)``), ``UID`` (zsh) or
    ``status`` (fish: read-only) a plain assignment, so a pack setting one is refused."""
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "out"
    result = _unpack(packs["reserved"], out)
    error = result.stderr.decode().strip()
    assert result.returncode != 0 and len(error.splitlines()) == 1, error
    assert "RANDOM" in error and "env_vars.d/r.json" in error and "Traceback" not in error
    assert list(parent.iterdir()) == [] and not _markers(tmp_path)


def test_planted_link_is_refused_then_replaced_itself_with_force(
    packs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    (out / "activate.sh").symlink_to(victim)
    result = run("pixi-unpack", packs["hostile"], "-o", out, check=False)
    error = result.stderr.decode().strip()
    assert result.returncode != 0 and len(error.splitlines()) == 1
    assert str(out / "activate.sh") in error and "--force" in error
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh"]  # checked before installing
    run("pixi-unpack", packs["hostile"], "-o", out, "--force")
    assert not (out / "activate.sh").is_symlink() and "CONDA_PREFIX" in (out / "activate.sh").read_text()
    assert victim.read_text() == "the user's file\n"


def test_users_own_script_is_kept_without_force(packs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "activate.sh").write_text("echo mine\n")
    result = run("pixi-unpack", packs["hostile"], "-o", out, check=False)
    assert result.returncode != 0 and "--force" in result.stderr.decode()
    assert (out / "activate.sh").read_text() == "echo mine\n" and not (out / "env").exists()
    run("pixi-unpack", packs["hostile"], "-o", out, "--force")
    text = (out / "activate.sh").read_text()
    assert "echo mine" not in text and "CONDA_PREFIX" in text
    assert sorted(p.name for p in out.iterdir()) == ["activate.sh", "env"]  # no temporary file left


def test_self_extracting_pack_quotes_too(packs: dict[str, Path], tmp_path: Path) -> None:
    executable = packs["hostile-executable"]
    out = tmp_path / HOSTILE_DIR
    out.mkdir()
    (out / "activate.sh").write_text("echo mine\n")
    refused = run("sh", executable, "-o", out, "-e", HOSTILE_ENV, check=False)
    assert refused.returncode != 0 and "--force" in refused.stderr.decode()
    assert (out / "activate.sh").read_text() == "echo mine\n"
    run("sh", executable, "-o", out, "-e", HOSTILE_ENV, "--force")
    seen = _source_and_probe(["bash"], ". ./activate.sh", out)
    assert seen["EVIL"] == HOSTILE and seen["CONDA_PREFIX"] == str(out / HOSTILE_ENV)
    assert _markers(tmp_path) == []


def test_oci_entrypoint_quotes_values_and_prefix(packs: dict[str, Path], tmp_path: Path) -> None:
    environment = pytest.importorskip("pixi_pack_oci.environment")
    out = tmp_path / HOSTILE_DIR
    run("pixi-unpack", packs["hostile"], "-o", out, "-e", HOSTILE_ENV)
    in_image = PurePosixPath(out / HOSTILE_ENV)  # the image's prefix is where it is, so it runs here
    entrypoint = tmp_path / "entrypoint.sh"
    entrypoint.write_text(environment.entrypoint_script(out / HOSTILE_ENV, in_image, "linux-64"))
    report = tmp_path / "report.json"
    probe = [sys.executable, "-c", PROBE, str(report), "EVIL", "CONDA_PREFIX", "FROM_HOOK"]
    subprocess.run(["sh", str(entrypoint), *probe], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    assert json.loads(report.read_text()) == {
        "EVIL": HOSTILE,
        "CONDA_PREFIX": str(in_image),
        "FROM_HOOK": "ran",
    }
    assert _markers(tmp_path) == []


def test_broken_unicode_is_refused_in_one_line(packs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("pixi-unpack", packs["surrogate"], "-o", out, check=False)
    error = result.stderr.decode().strip()
    assert result.returncode != 0 and len(error.splitlines()) == 1 and "Traceback" not in error
    assert "BROKEN" in error and "Unicode" in error and not out.exists()
