"""No code from the pack runs during ``pixi-unpack``: bytecode is compiled only when asked, then by
the environment's python isolated and without ``site``, and never after a wheel replaced a file of
a conda package (a wheel's ``.data/scripts/python3.X`` over the conda python, say)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import needs_linux64, run
from pypi_world import PythonWorld, needs_host_python
from rattler_build import assemble_package

from pixi_pack_ext.testing.python import HostPython, _rewrite_wheel, sha256_of
from pixi_pack_ext.testing.world import ChannelServer, PypiEntry, index_channel, write_lock

from .hostile import error_line, snapshot

pytestmark = [needs_linux64, needs_host_python]


def _pack_with_wheel(py_world: PythonWorld, tmp_path: Path, files: dict[str, bytes]) -> tuple[Path, Path]:
    """A pack whose greet-two wheel also holds ``files`` (RECORD agrees); returns (pack, wheel)."""

    def edit(dist_info: str, contents: dict[str, bytes]) -> None:
        contents.update(files)

    original = py_world.wheels["greet-two"]
    wheel = _rewrite_wheel(original, tmp_path / "ws" / original.name, edit)
    workspace = py_world.lock(
        tmp_path / "ws", pypi=[PypiEntry("greet-two", "1.0", wheel.name, sha256_of(wheel))]
    )
    pack = tmp_path / "environment.tar"
    run("pixi-pack", workspace, "-p", "linux-64", "-o", pack)
    return pack, wheel


def _marker_code(marker: Path) -> str:
    return f"import os; open({str(marker)!r}, 'w').write('pack code ran')"


@pytest.mark.parametrize("compile_bytecode", [False, True], ids=["default", "--compile-bytecode"])
def test_a_pth_file_from_a_wheel_never_runs(
    compile_bytecode: bool, py_world: PythonWorld, tmp_path: Path
) -> None:
    """A ``.pth`` line starting with ``import`` runs whenever ``site`` starts: not during the unpack."""
    marker = tmp_path / f"marker-{uuid.uuid4().hex[:8]}"
    pack, _ = _pack_with_wheel(py_world, tmp_path, {"zz_evil.pth": (_marker_code(marker) + "\n").encode()})
    flags = ["--compile-bytecode"] if compile_bytecode else []
    run("pixi-unpack", pack, "-o", tmp_path / "target", *flags)
    site = tmp_path / "target" / "env" / "lib" / f"python{py_world.python.short_version}" / "site-packages"
    assert (site / "zz_evil.pth").is_file() and (site / "greet_two" / "__init__.py").is_file()
    assert not marker.exists(), "code from the pack ran during the unpack"
    compiled = list((site / "greet_two").glob("__pycache__/__init__.*.pyc"))
    assert bool(compiled) == compile_bytecode


@pytest.mark.parametrize("compile_bytecode", [False, True], ids=["default", "--compile-bytecode"])
@pytest.mark.parametrize("target", ["scripts", "data", "purelib"])
def test_a_wheel_replacing_a_conda_file_is_refused(
    target: str, compile_bytecode: bool, py_world: PythonWorld, tmp_path: Path
) -> None:
    """A wheel whose file would replace one of the conda python's files (its interpreter, or a file
    in site-packages) is refused before anything moves in, and the replacement never runs."""
    marker = tmp_path / f"marker-{uuid.uuid4().hex[:8]}"
    short = py_world.python.short_version
    fake_python = f"#!/bin/sh\n{_marker_code(marker)!r} >/dev/null; touch {marker}\n".encode()
    member, replaced = {
        "scripts": (f"greet_two-1.0.data/scripts/python{short}", f"bin/python{short}"),
        "data": (f"greet_two-1.0.data/data/bin/python{short}", f"bin/python{short}"),
        "purelib": ("README.txt", f"lib/python{short}/site-packages/README.txt"),
    }[target]
    pack, wheel = _pack_with_wheel(py_world, tmp_path, {member: fake_python})
    before = snapshot(tmp_path)
    flags = ["--compile-bytecode"] if compile_bytecode else []
    result = run("pixi-unpack", pack, "-o", tmp_path / "target", *flags, check=False)
    line = error_line(result)
    assert f"refusing wheel {wheel.name}: it would replace '{replaced}', which conda package 'python'" in line
    assert snapshot(tmp_path) == before
    assert not marker.exists()


def test_a_wheel_writing_into_conda_meta_is_refused(py_world: PythonWorld, tmp_path: Path) -> None:
    """A record in conda-meta would make conda and pixi believe in a package that is not there."""
    pack, wheel = _pack_with_wheel(
        py_world, tmp_path, {"greet_two-1.0.data/data/conda-meta/fake-1.0-0.json": b'{"name": "fake"}'}
    )
    before = snapshot(tmp_path)
    line = error_line(run("pixi-unpack", pack, "-o", tmp_path / "target", check=False))
    assert f"refusing wheel {wheel.name}: it would write 'conda-meta/fake-1.0-0.json'" in line, line
    assert snapshot(tmp_path) == before


def _watching_python(channel: Path, host: HostPython, seen: Path) -> None:
    """A conda ``python`` whose interpreter (a wrapper around this machine's) writes ``seen`` when
    it starts while a file of the greet-two wheel is already in its environment."""
    with tempfile.TemporaryDirectory(prefix="watching-python-") as staging:
        root = Path(staging)
        (root / "bin").mkdir()
        interpreter = root / "bin" / f"python{host.short_version}"
        interpreter.write_text(
            "#!/bin/sh\n"
            'here=$(dirname "$0")\n'
            f'[ -e "$here/../share/greet-two/wheel-file.txt" ] && : > "{seen}"\n'
            f'exec "{host.executable}" "$@"\n'
        )
        interpreter.chmod(0o755)
        (root / "bin" / "python").symlink_to(interpreter.name)
        (root / "lib" / f"python{host.short_version}" / "site-packages").mkdir(parents=True)
        (root / "lib" / f"python{host.short_version}" / "site-packages" / "README.txt").write_text("site\n")
        assemble_package(
            "python", host.version, "linux-64", "watching_0", channel / "linux-64", files_dir=root
        )
    index_channel(channel)


def test_compiling_runs_before_any_wheel_file_is_in_the_environment(
    py_world: PythonWorld, tmp_path: Path
) -> None:
    """The bytecode is compiled while the wheels are still staged: the environment's python never
    starts with a wheel's file in place (a ``pyvenv.cfg`` next to the interpreter would move its
    standard library into the wheel's files, a module could shadow one it imports)."""
    seen = tmp_path / f"seen-{uuid.uuid4().hex[:8]}"
    channel = tmp_path / "served" / "channel"
    _watching_python(channel, py_world.python, seen)

    def edit(dist_info: str, contents: dict[str, bytes]) -> None:
        contents["greet_two-1.0.data/data/share/greet-two/wheel-file.txt"] = b"from the wheel\n"

    original = py_world.wheels["greet-two"]
    workspace = tmp_path / "ws"
    wheel = _rewrite_wheel(original, workspace / original.name, edit)
    with ChannelServer(tmp_path / "served") as server:
        url = f"{server.url}channel/"
        (workspace / "pixi.toml").write_text(
            f'[workspace]\nname = "w"\nchannels = ["{url}"]\nplatforms = ["linux-64"]\n\n'
            '[dependencies]\npython = "*"\n'
        )
        entry = PypiEntry("greet-two", "1.0", wheel.name, sha256_of(wheel))
        write_lock(workspace / "pixi.lock", url, {"default": ["python"]}, ["linux-64"], {"default": [entry]})
        run("pixi-pack", workspace, "-p", "linux-64", "-o", tmp_path / "environment.tar")
    run("pixi-unpack", tmp_path / "environment.tar", "-o", tmp_path / "target", "--compile-bytecode")
    env = tmp_path / "target" / "env"
    site = env / "lib" / f"python{py_world.python.short_version}" / "site-packages"
    assert (env / "share" / "greet-two" / "wheel-file.txt").is_file()
    assert list((site / "greet_two").glob("__pycache__/__init__.*.pyc")), "the bytecode was not compiled"
    assert not seen.exists(), "the environment's python started with the wheels' files in place"


@pytest.mark.parametrize(
    "command",
    ["../etc/conda/activate.d/x.sh", "../../../escaped", "a\\\\b", "$(touch x)", ".."],
)
def test_a_wheel_entry_point_that_is_not_a_plain_command_is_refused(
    command: str, py_world: PythonWorld, tmp_path: Path
) -> None:
    """installer writes an entry point to ``bin/<name>``: ``../etc/conda/activate.d/x.sh`` would be a
    script that every activation sources."""
    entry_points = f"[console_scripts]\n{command} = greet_two:main\n".encode()
    pack, wheel = _pack_with_wheel(
        py_world, tmp_path, {"greet_two-1.0.dist-info/entry_points.txt": entry_points}
    )
    before = snapshot(tmp_path)
    line = error_line(run("pixi-unpack", pack, "-o", tmp_path / "target", check=False))
    assert f"refusing wheel {wheel.name}: its entry point" in line, line
    assert snapshot(tmp_path) == before
