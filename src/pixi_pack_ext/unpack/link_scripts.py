"""Packages' link scripts (``bin/.NAME-post-link.sh``, ``Scripts/.NAME-post-link.bat``, and the
``pre-unlink`` ones): found in what each package installed, named in one warning when they are not
run, and run as conda runs them when the user asks (``--run-post-link-scripts`` or pixi's
``run-post-link-scripts = "insecure"``).

rattler can run post-link scripts too, but it keeps their failures and messages to itself; conda
fails the install when one fails, and pixi-unpack does the same (the caller removes the half-made
environment), with the script's output shown above the one error line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import rattler

from ..errors import UnpackError
from .conda_meta import record_path

log = logging.getLogger(__name__)

#: Lines of a failed script's output shown above the error.
SHOWN_LINES = 40


@dataclass(frozen=True)
class LinkScript:
    """One link script a package installed: its package, kind and path relative to the prefix."""

    package: str
    version: str
    build_number: int
    kind: str  # "post-link" or "pre-unlink"
    path: str


def script_paths(name: str, platform: str) -> dict[str, str]:
    """Where conda looks for a package's link scripts, by kind (relative to the prefix)."""
    if platform.startswith("win"):
        return {kind: f"Scripts/.{name}-{kind}.bat" for kind in ("post-link", "pre-unlink")}
    return {kind: f"bin/.{name}-{kind}.sh" for kind in ("post-link", "pre-unlink")}


def find_link_scripts(prefix: Path, records: list[rattler.RepoDataRecord], platform: str) -> list[LinkScript]:
    """The link scripts the installed packages own, in the order the packages depend on each other
    (a package's dependencies first, as conda runs them)."""
    ordered = rattler.PackageRecord.sort_topologically(records)
    found: list[LinkScript] = []
    for record in ordered:
        name = record.name.normalized
        owned: set[str] | None = None  # its record is read only where a script's file is there
        for kind, path in script_paths(name, platform).items():
            if not (prefix / path).is_file():
                continue
            if owned is None:
                owned = _installed_files(prefix, record)
            if path in owned:
                found.append(LinkScript(name, str(record.version), record.build_number, kind, path))
    return found


def _installed_files(prefix: Path, record: rattler.RepoDataRecord) -> set[str]:
    """The files a package installed, from its conda-meta record (a script is its own only then)."""
    try:
        data = json.loads(record_path(prefix, record).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    files = data.get("files") if isinstance(data, dict) else None
    return {f.replace("\\", "/") for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def warn_not_run(scripts: list[LinkScript]) -> None:
    """One warning naming the packages whose link scripts were not run (pixi warns likewise)."""
    post = sorted({s.package for s in scripts if s.kind == "post-link"})
    pre = sorted({s.package for s in scripts if s.kind == "pre-unlink"})
    if post:
        note = f"; {', '.join(pre)} also ha{'s' if len(pre) == 1 else 've'} pre-unlink scripts" if pre else ""
        log.warning(
            "not running the post-link scripts of %s%s; pass --run-post-link-scripts (or set "
            'run-post-link-scripts = "insecure" in the config given with -c) to run them',
            ", ".join(post),
            note,
        )
    elif pre:
        log.warning(
            "%s ha%s pre-unlink scripts; they run only when a package is removed, which pixi-unpack "
            "never does",
            ", ".join(pre),
            "s" if len(pre) == 1 else "ve",
        )


def _command(script: Path) -> list[str]:
    if script.suffix == ".bat":
        return [os.environ.get("COMSPEC", "cmd.exe"), "/d", "/c", str(script)]
    return [shutil.which("bash") or "/bin/sh", str(script)]


def run_post_link(prefix: Path, scripts: list[LinkScript]) -> None:
    """Run every post-link script as conda does: ``bash`` (``cmd /d /c`` on Windows), in the
    script's folder, with ``PREFIX``, ``PKG_NAME``, ``PKG_VERSION`` and ``PKG_BUILDNUM`` set.

    Output is logged (at info level; with the error when a script fails); what a script writes to
    ``PREFIX/.messages.txt`` is shown to the user, as conda does. A failing script is an
    ``UnpackError`` naming the package.
    """
    for script in (s for s in scripts if s.kind == "post-link"):
        path = prefix / script.path
        env = {
            **os.environ,
            "PREFIX": str(prefix),
            "ROOT_PREFIX": str(prefix),
            "PKG_NAME": script.package,
            "PKG_VERSION": script.version,
            "PKG_BUILDNUM": str(script.build_number),
            "PATH": os.pathsep.join([str(path.parent), os.environ.get("PATH", "")]),
        }
        try:
            result = subprocess.run(
                _command(path),
                cwd=path.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
            )
        except OSError as exc:
            raise UnpackError(
                f"the post-link script of package '{script.package}' ({script.path}) could not be "
                f"started: {exc.strerror or exc}"
            ) from None
        output = result.stdout.decode(errors="replace").splitlines()
        _show_messages(prefix, script.package)
        if result.returncode != 0:
            for line in output[-SHOWN_LINES:]:
                log.warning("post-link %s: %s", script.package, line)
            raise UnpackError(
                f"the post-link script of package '{script.package}' ({script.path}) failed with exit "
                f"code {result.returncode}; the environment was not installed"
            )
        for line in output:
            log.info("post-link %s: %s", script.package, line)
        log.info("ran the post-link script of %s", script.package)


def _show_messages(prefix: Path, package: str) -> None:
    """Show and remove what a script left in ``PREFIX/.messages.txt`` (conda's channel for notes
    meant for the user)."""
    messages = prefix / ".messages.txt"
    try:
        text = messages.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    messages.unlink(missing_ok=True)
    for line in text.splitlines():
        if line.strip():
            log.warning("%s: %s", package, line)
