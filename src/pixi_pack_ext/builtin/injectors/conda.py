"""The built-in conda package injector: ``--inject pkg.conda`` / ``pkg.tar.bz2``.

The record comes from the package's own ``info/index.json`` (read by rattler), with the file's
sha256, md5 and size, so the pack's repodata describes exactly the file that is shipped. The
dependency check runs in the core once every injected file is in (see ``injection.py``).
"""

from __future__ import annotations

from pathlib import Path

import rattler

from ...errors import InjectionError
from ...hashing import hash_file
from ...hookspecs import Injector, hookimpl
from ...plan import CondaPackage, PackPlan

SUFFIXES = (".conda", ".tar.bz2")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_record(path: Path) -> rattler.RepoDataRecord:
    """The repodata record of a local package file, named the canonical ``name-version-build.ext``.

    Built from the package's ``index.json`` (rattler's synchronous reader; its async archive reader
    can crash the interpreter at exit) plus the file's own hashes and size.
    """
    try:
        index = rattler.IndexJson.from_package_archive(path)
    except Exception as exc:  # rattler's archive and JSON errors
        raise InjectionError(
            f"cannot inject '{path.name}': it is not a readable conda package ({_first_line(exc)})"
        ) from None
    sha256, md5 = hash_file(path)
    record = rattler.PackageRecord(
        name=index.name,
        version=index.version,
        build=index.build,
        build_number=index.build_number,
        subdir=index.subdir or "",
        arch=index.arch,
        platform=index.platform,
        noarch=index.noarch,
        depends=list(index.depends),
        constrains=list(index.constrains),
        sha256=bytes.fromhex(sha256),
        md5=bytes.fromhex(md5),
        size=path.stat().st_size,
        features=index.features,
        license=index.license,
        license_family=index.license_family,
        python_site_packages_path=index.python_site_packages_path,
        extra_depends=dict(index.extra_depends) or None,
        flags=list(index.flags) or None,
    )
    record.timestamp = index.timestamp
    record.track_features = list(index.track_features)
    extension = ".conda" if path.name.lower().endswith(".conda") else ".tar.bz2"
    file_name = f"{record.name.normalized}-{record.version}-{record.build}{extension}"
    return rattler.RepoDataRecord(record, file_name, path.as_uri(), path.parent.as_uri() + "/")


def inject_conda(path: Path, plan: PackPlan) -> None:
    """Add a local conda package to the plan, replacing a planned package of the same name."""
    record = read_record(path)
    spec = f"{record.name.normalized}={record.version}={record.build}"
    if record.subdir not in (plan.platform, "noarch"):
        raise InjectionError(
            f"cannot inject package '{spec}' ({path.name}): it is built for {record.subdir or 'no platform'}, "
            f"but the pack is for {plan.platform}"
        )
    package = CondaPackage(record=record, url=path.as_uri(), local_path=path, note="injected")
    replaced = plan.replace_conda(package)
    if replaced is not None:
        plan.notes.append(f"injected package '{spec}' replaces the locked '{replaced.spec}'")


@hookimpl
def pixi_pack_injectors() -> list[Injector]:
    return [
        Injector(
            name="conda",
            suffixes=SUFFIXES,
            inject=inject_conda,
            description="local .conda and .tar.bz2 packages for the pack's platform or noarch",
        )
    ]
