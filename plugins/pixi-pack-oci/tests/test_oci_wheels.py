"""PyPI wheels in the image: installed into the environment's site-packages at pack time, with console
scripts that start the in-image python."""

# ruff: noqa: F811  (fixtures are imported from oci_world and requested as parameters)
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from oci_helpers import read_layout, run
from oci_world import _fresh_plugins, oci_tools  # noqa: F401

from pixi_pack_ext.testing.python import (
    HostPython,
    build_host_python_package,
    build_wheels,
    retag_wheel,
    sha256_of,
    write_project,
)
from pixi_pack_ext.testing.world import ChannelServer, PypiEntry, index_channel, write_lock

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the test python package is this machine's interpreter"
)
NAME = "docker.io/demo/py:latest"


def pack_python_env(tmp_path: Path, wheel_tag: str | None = None, check: bool = True):  # type: ignore[no-untyped-def]
    """Lock python (this machine's, as a conda package) plus one wheel, and pack it as an image."""
    served = tmp_path / "served"
    build_host_python_package(served / "channel" / "linux-64", "linux-64")
    index_channel(served / "channel")
    project = write_project(
        tmp_path / "projects",
        "greet-cli",
        code="def main():\n    print('hi')",
        scripts={"greet": "greet_cli:main"},
    )
    (wheel,) = build_wheels([project], tmp_path / "built")
    (served / "wheels").mkdir()
    wheel = (
        retag_wheel(wheel, wheel_tag, served / "wheels")
        if wheel_tag
        else wheel.rename(served / "wheels" / wheel.name)
    )
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with ChannelServer(served) as server:
        channel = f"{server.url}channel/"
        (workspace / "pixi.toml").write_text(
            f'[workspace]\nname = "py"\nchannels = ["{channel}"]\nplatforms = ["linux-64"]\n\n'
            '[dependencies]\npython = "*"\n'
        )
        entry = PypiEntry("greet-cli", "1.0", f"{server.url}wheels/{wheel.name}", sha256_of(wheel))
        write_lock(
            workspace / "pixi.lock", channel, {"default": ["python"]}, ["linux-64"], {"default": [entry]}
        )
        output = tmp_path / "py.tar"
        args = (
            "pixi-pack",
            workspace,
            "-p",
            "linux-64",
            "--format",
            "oci",
            "--image-name",
            "demo/py",
            "-o",
            output,
        )
        return output, run(*args, check=check)


def test_wheels_are_installed_into_the_image(oci_tools: None, tmp_path: Path) -> None:
    output, _ = pack_python_env(tmp_path)
    layout = read_layout(output, tmp_path / "layout")
    run("umoci", "unpack", "--image", f"{layout}:{NAME}", tmp_path / "bundle")
    env = tmp_path / "bundle" / "rootfs" / "app" / "env"
    site = env / "lib" / f"python{HostPython.current().short_version}" / "site-packages"
    assert (site / "greet_cli" / "__init__.py").read_text().endswith("print('hi')\n")
    assert (site / "greet_cli-1.0.dist-info" / "INSTALLER").read_text() == "pixi-pack-ext\n"
    assert (env / "bin" / "greet").read_text().startswith("#!/app/env/bin/python\n")
    assert not list(site.rglob("*.pyc"))  # python writes bytecode for its own version on first import
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{output}").stdout)
    assert len(info["Layers"]) == 2


def test_a_wheel_for_another_platform_is_refused(oci_tools: None, tmp_path: Path) -> None:
    output, result = pack_python_env(tmp_path, wheel_tag="py3-none-win_amd64", check=False)
    assert result.returncode != 0 and not output.exists()
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "greet_cli-1.0-py3-none-win_amd64.whl" in line and "does not fit python" in line
