"""``__main__`` of the bundled pixi-unpack zipapp (standard library only, Python >= 3.10).

A zip cannot hand compiled extension modules (py-rattler's) to the interpreter, so the bundled
libraries under ``lib/`` are extracted first: into ``$PIXI_UNPACK_LIB_DIR`` when the
self-extracting header gives one (it removes its temporary folder itself), else into a temporary
folder removed on exit, Ctrl-C included. The host's site-packages are left out of ``sys.path`` so
that only the bundled, tested versions are imported.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
import zipfile

LIB = "lib/"
WHEELS = "wheels/"


def _archive() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _stdlib_paths() -> list[str]:
    paths = sysconfig.get_paths()
    roots = {os.path.normcase(os.path.abspath(paths[key])) for key in ("stdlib", "platstdlib")}
    kept = []
    for entry in sys.path:
        norm = os.path.normcase(os.path.abspath(entry)) if entry else ""
        if "site-packages" in norm or "dist-packages" in norm:
            continue
        if any(norm == root or norm.startswith(root + os.sep) for root in roots) or norm.endswith(".zip"):
            kept.append(entry)
    return kept


def _extract(archive: str, target: str) -> str:
    with zipfile.ZipFile(archive) as bundle:
        info = json.loads(bundle.read("bundle.json"))
        needed = tuple(info.get("python", [3, 10]))
        if sys.version_info[:2] < needed:
            version = ".".join(map(str, needed))
            sys.stderr.write(
                f"pixi-unpack: error: this unpacker needs Python >= {version}, "
                f"but {sys.executable} is {sys.version.split()[0]}\n"
            )
            raise SystemExit(1)
        lib = os.path.join(target, "lib")
        for member in bundle.infolist():
            if member.filename.startswith(LIB) and not member.is_dir():
                bundle.extract(member, target)
            elif member.filename.startswith(WHEELS) and member.filename.endswith(".whl"):
                wheel = bundle.extract(member, target)
                _install_wheel(wheel, lib)
                os.remove(wheel)
    return lib


def _install_wheel(wheel: str, lib: str) -> None:
    """Unzip a wheel into ``lib`` as an installer would (``*.data/purelib|platlib`` included)."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            parts = member.filename.split("/")
            if member.is_dir() or ".." in parts:
                continue
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data: not needed to import
                parts = parts[2:]
            destination = os.path.join(lib, *parts)
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)


def main() -> None:
    given = os.environ.pop("PIXI_UNPACK_LIB_DIR", "")
    own = "" if given else tempfile.mkdtemp(prefix="pixi-unpack-lib-")
    code = 0
    try:
        lib = _extract(_archive(), given or own)
        sys.path[:] = [lib, *_stdlib_paths()]
        from pixi_pack_ext.cli.common import exit_code
        from pixi_pack_ext.cli.unpack import run

        try:
            run()
        except SystemExit as exc:
            code = exit_code(exc)
    finally:
        if own:
            shutil.rmtree(own, ignore_errors=True)
    # Leave without interpreter teardown, during which py-rattler's native runtime can crash.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
