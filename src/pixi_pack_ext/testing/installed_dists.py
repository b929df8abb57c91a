"""Conda packages made from the Python distributions installed here, offline.

No conda channel is reachable, so a package that needs PyPI projects as conda packages (this tool's
own recipe: py-rattler, httpx, rich-click, ...) gets them from the running environment: each
installed distribution becomes a conda package holding its files, named as conda-forge names it,
and depending on the conda packages of its requirements (markers evaluated for this interpreter).
A pure-Python distribution becomes a ``noarch: python`` package; one with compiled code (py-rattler)
a package for this platform and this Python, carrying the compiled library. Together with
``build_host_python_package`` this is a channel a recipe can build against and an environment can
be installed from, on this machine.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from rattler_build import assemble_package

from .python import HostPython

#: Compiled code: a distribution holding such a file is built for this platform, not noarch.
_NATIVE = re.compile(r"\.(so|pyd|dylib|dll)$|\.so\.")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(requirements: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions ``requirements`` need here, transitively (extras followed)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(text), "") for text in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(
            {**default_environment(), "extra": extra}
        ):
            continue
        name = normalize(requirement.name)
        dist = found.get(name) or metadata.distribution(name)
        first = name not in found
        found[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or "extra" not in str(sub.marker):
                if first:
                    todo.append((sub, ""))
                continue
            for wanted in requirement.extras:
                todo.append((sub, wanted))
    return [found[name] for name in sorted(found)]


def conda_name(name: str, names: Mapping[str, str]) -> str:
    """The conda-forge name of a PyPI project (``installer`` -> ``python-installer``)."""
    key = normalize(name)
    return {normalize(k): v for k, v in names.items()}.get(key, key)


def package_distribution(
    dist: metadata.Distribution,
    output_dir: Path,
    platform: str,
    names: Mapping[str, str],
    extra_depends: Iterable[str] = (),
) -> Path:
    """One installed distribution as a conda package in ``output_dir/<subdir>``; returns its path."""
    (output_dir / platform).mkdir(parents=True, exist_ok=True)
    (output_dir / "noarch").mkdir(parents=True, exist_ok=True)
    python = HostPython.current().short_version
    files = [f for f in dist.files or [] if ".." not in Path(str(f)).parts]
    files = [f for f in files if "__pycache__" not in Path(str(f)).parts and not str(f).endswith(".pyc")]
    native = any(_NATIVE.search(Path(str(f)).name) for f in files)
    site = f"lib/python{python}/site-packages" if native else "site-packages"
    depends = [f"python {python}.*" if native else "python", *extra_depends]
    environment = {**default_environment(), "extra": ""}
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            depends.append(conda_name(requirement.name, names))
    with tempfile.TemporaryDirectory(prefix="world-dist-") as staging:
        root = Path(staging)
        for file in files:
            source = Path(str(dist.locate_file(file)))
            if not source.is_file():
                continue
            target = root / site / Path(str(file))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        output = assemble_package(
            conda_name(dist.metadata["Name"], names),
            dist.version,
            platform if native else "noarch",
            f"py{python.replace('.', '')}_0" if native else "pyh0_0",
            output_dir / (platform if native else "noarch"),
            files_dir=root,
            depends=sorted(set(depends)),
            noarch=None if native else "python",
            compression_level=1,
        )
    return Path(output.path)


def package_closure(
    requirements: Iterable[str], output_dir: Path, platform: str, names: Mapping[str, str]
) -> list[Path]:
    """Conda packages of every installed distribution ``requirements`` need, into ``output_dir``."""
    return [package_distribution(d, output_dir, platform, names) for d in requirement_closure(requirements)]


def host_platform() -> str:
    import rattler

    return str(rattler.Subdir.current())


def wheel_of_installed(dist: metadata.Distribution, output_dir: Path) -> Path:
    """An installed distribution packed back into a wheel (its files, as RECORD lists them, and
    the tags its ``WHEEL`` file names), for installing it elsewhere with no index."""
    import zipfile

    wheel_text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise ValueError(f"{dist.metadata['Name']} has no WHEEL tags: not installed from a wheel")
    interpreters, abis, platforms = (sorted({t.split("-")[i] for t in tags}) for i in range(3))
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    tag = "-".join(".".join(part) for part in (interpreters, abis, platforms))
    output_dir.mkdir(parents=True, exist_ok=True)
    wheel = output_dir / f"{name}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in dist.files or []:
            parts = Path(str(file)).parts
            if ".." in parts or "__pycache__" in parts or str(file).endswith(".pyc"):
                continue  # scripts outside site-packages are made again by the installer
            source = Path(str(dist.locate_file(file)))
            if source.is_file() and parts[-1] not in ("INSTALLER", "REQUESTED", "direct_url.json"):
                archive.write(source, Path(str(file)).as_posix())
    return wheel
