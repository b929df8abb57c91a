"""``pixi-unpack DELTA -o DIR``: update ``DIR/env`` in place to the delta's package set.

The installed records must make exactly the delta's base (else it refuses, saying what differs;
when they make its target, the delta was already applied). The delta's packages are checked like a
full pack's; then, with a journal of the environment kept (``prefix_journal.py``), the PyPI
packages that went away are removed, rattler links the new conda packages and unlinks the old
ones (it computes that transaction from the installed and the wanted records), the new wheels are
installed and the activation script is rewritten. Any failure, or a Ctrl-C, rolls it all back; a
killed run is rolled back by the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import rattler
from rattler.package_cache import PackageCache, ValidationMode

from ..delta import DeltaInfo, is_delta, parse_delta
from ..environments import (
    Target,
    choose,
    is_delta_of_several,
    parse_environments,
    select,
    target_metadata,
)
from ..errors import InvalidPackError, PixiPackError, UnpackError, UsageError, one_line_reason
from ..hookspecs import PackFormat
from ..interrupts import deferred_interrupts, held_interrupts
from ..metadata import METADATA_FILE, PackMetadata, pack_wheels
from ..package_set import (
    PackageSet,
    PypiDist,
    installed_pypi,
    installed_records,
    installed_set,
    pypi_line,
    record_line,
    wheel_line,
)
from ..plugins import PluginManager, get_plugin_manager
from ..staging_owner import make_owned_folder
from ..untrusted import read_limited
from .activation import (
    activation_path,
    check_activation_values,
    check_pack_activation,
    refresh_scripts,
    write_activation_script,
)
from .cache_prefill import CachePrefill
from .conda_meta import Origin, restore_origins
from .driver import (
    UnpackOptions,
    _open_pack,
    _remove_cache,
    host_platform,
    package_files,
    unpack,
    validate_metadata,
    verify_channel,
)
from .journal import PrefixJournal, recover
from .link_scripts import find_link_scripts, run_post_link, warn_not_run
from .output_lock import locked_output
from .package_guard import PackageContents, check_contents
from .ram_staging import RamStaging
from .step_runner import StepRunner
from .trust import TrustGate
from .virtual_packages import check_virtual_packages


@dataclass(frozen=True)
class Delta:
    """The update a delta pack makes: of its one environment, or of one of a pack of several."""

    metadata: PackMetadata
    info: DeltaInfo
    #: The chosen environment of a delta of several environments (None: a delta of one).
    environment: str | None = None

    @property
    def where(self) -> str:
        return f"environment '{self.environment}'" if self.environment else "environment"


def delta_of(text: str, environment: str | None) -> Delta | None:
    """The update ``pixi-pack.json`` makes (of ``environment`` in a pack of several); None when the
    pack is not a delta."""
    if is_delta(text):
        if environment is not None:
            raise UsageError("--environment applies to a pack of several environments; this pack holds one")
        return Delta(*parse_delta(text))
    environments = parse_environments(text)
    if not is_delta_of_several(environments):
        return None
    assert environments is not None
    return chosen_delta(environments, environment)


def chosen_delta(environments: dict[str, dict[str, Target]], environment: str | None) -> Delta:
    name, platform, target = choose(environments, environment, host_platform())
    assert target.delta is not None
    # The environment's [activation] comes along: without it the update would drop the scripts and
    # variables the environment was unpacked with.
    return Delta(target_metadata(platform, target), target.delta, name)


def unpack_or_apply(options: UnpackOptions, plugins: PluginManager | None = None) -> Path:
    """``pixi-unpack PACK``: a delta pack updates the environment, any other pack is unpacked."""
    plugins = plugins or get_plugin_manager()
    pack = options.pack
    if pack is not None and str(pack) != "-" and pack.exists():
        fmt = plugins.format_reading(pack)
        peeked = fmt.peek_metadata(pack) if fmt.peek_metadata is not None else None
        delta = delta_of(peeked, options.environment) if peeked is not None else None
        if delta is not None:
            return apply_delta(options, fmt, plugins, delta)
    return unpack(options, plugins)


def apply_delta(options: UnpackOptions, fmt: PackFormat, plugins: PluginManager, delta: Delta) -> Path:
    """Update ``output_directory/env_name`` with the delta pack ``options.pack``; returns the prefix.
    Holds the output folder's lock (``output_lock``): no other pixi-unpack works there meanwhile."""
    output_dir = options.output_directory.absolute()
    if not output_dir.is_dir():
        return _apply_delta(options, fmt, plugins, delta)  # refuses: no environment to update
    with locked_output(output_dir):
        return _apply_delta(options, fmt, plugins, delta)


def installed_state(prefix: Path, delta: Delta) -> tuple[list[rattler.PrefixRecord], bool]:
    """The installed records of ``prefix`` and whether they already make the delta's target;
    refuses an environment that is neither the delta's base nor its target."""
    if not (prefix / "conda-meta").is_dir():
        raise UsageError(
            f"'{prefix}' is not an installed environment, and a delta pack only updates one; pass the "
            "-o/--output-directory and -e/--env-name of the environment it was made for"
        )
    recover(prefix)
    records = installed_records(prefix)
    current = installed_set(prefix, records)
    if current == delta.info.target:
        return records, True
    if current != delta.info.base:
        raise UnpackError(
            f"'{prefix}' is not the {delta.where} this delta was made for: "
            f"it {current.difference(delta.info.base)}"
        )
    return records, False


def _apply_delta(options: UnpackOptions, fmt: PackFormat, plugins: PluginManager, delta: Delta) -> Path:
    metadata, info = delta.metadata, delta.info
    validate_metadata(metadata)
    output_dir = options.output_directory.absolute()
    prefix = output_dir / options.env_name
    records, applied = installed_state(prefix, delta)
    if applied and info.base == info.target:
        raise UsageError(f"this delta does not change {delta.where}: '{prefix}' has its packages")
    if applied:
        raise UsageError(f"this delta is already applied: '{prefix}' has its packages")

    workdir = make_owned_folder(output_dir, ".pixi-unpack-").resolve()
    ram = RamStaging.create()
    cache_dir = ram.cache_folder() if ram is not None else workdir / "cache"
    journal: PrefixJournal | None = None
    linking = False  # True while rattler links, and after it failed doing so
    try:
        with CachePrefill(cache_dir, ram=ram, disk_dir=workdir / "cache") as prefill:
            gate = TrustGate(options.trusted_keys, options.manifest_sha256)
            pack_dir = _open_pack(fmt, options.pack, workdir / "pack", prefill, gate)
            text = read_limited(pack_dir / METADATA_FILE, METADATA_FILE).decode("utf-8", "replace")
            if delta_of(text, delta.environment) != delta:
                raise InvalidPackError(f"the pack's {METADATA_FILE} changed while it was read")
            check_pack_activation(pack_dir, metadata.activation, options.shell, metadata.platform)
            origins: dict[str, Origin] = {}
            shipped = verify_channel(pack_dir, check_hashes=False, streamed=prefill.streamed, origins=origins)
            whole_pack = pack_dir  # the activation scripts are here, once for every environment
            if delta.environment is not None:  # its packages and wheels only, of those of several
                selection = select(pack_dir, delta.environment, workdir / "selected", delta=True)
                shipped, pack_dir = selection.keep(shipped), selection.pack_dir
            shipped_lines = {record_line(r) for r in shipped}
            kept = [r for r in records if record_line(r) in info.target.lines - shipped_lines]
            _check_complete(info.target, shipped, kept, pack_wheels(pack_dir), prefix, records)
            if not options.ignore_virtual_packages:
                check_virtual_packages(shipped, metadata.platform, metadata.virtual_packages)
            contents = prefill.finish(shipped, package_files(shipped), options.pack)
        gone_records = [r for r in records if r not in kept]
        check_contents(
            [*contents, *map(_installed_contents, gone_records)], metadata.platform, present=_symlinks(prefix)
        )
        wanted = [*shipped, *(_repodata_record(r) for r in kept)]
        gone_dists = [
            d
            for d in installed_pypi(prefix, records)
            if pypi_line(d.name, d.version) not in info.target.lines
        ]
        journal = PrefixJournal(prefix)
        stem = options.activation_script
        written = activation_path(output_dir, options.shell, metadata.platform, stem)
        journal.begin(outside=sorted({*output_dir.glob(f"{stem}.*"), written}))
        with deferred_interrupts("the update"):
            for dist in gone_dists:
                _remove_dist(prefix, dist)
            linking = True
            _install(wanted, records, prefix, cache_dir, metadata.platform, options.show_progress)
            linking = False
            restore_origins(prefix, shipped, origins)
            scripts = find_link_scripts(prefix, shipped, metadata.platform)
            if options.run_post_link_scripts:
                run_post_link(prefix, scripts)
            else:
                warn_not_run(scripts)
            steps = StepRunner(
                plugins.unpack_steps,
                pack_dir=pack_dir,
                prefix=prefix,
                platform=metadata.platform,
                records=wanted,
                scratch_root=workdir / "steps",
                compile_bytecode=options.compile_bytecode,
            )
            with steps.preparing():
                pass
            steps.run_all()
            manifest = refresh_scripts(whole_pack, prefix, metadata.activation)
            write_activation_script(output_dir, prefix, options.shell, metadata.platform, manifest, stem)
            result = installed_set(prefix, installed_records(prefix))
            if result != info.target:
                raise UnpackError(
                    f"the updated environment is not the delta's: it {result.difference(info.target)}"
                )
        journal.commit()
    except BaseException as exc:
        with held_interrupts():
            if journal is not None and journal.folder.is_dir():
                if linking:  # rattler's threads may still be writing: let them end first
                    journal.settle()
                journal.rollback()
        if isinstance(exc, OSError) and not isinstance(exc, PixiPackError):
            raise UnpackError(
                f"updating '{prefix}' failed: {exc.strerror or exc} ({exc.filename or prefix}); "
                "the environment was left as it was"
            ) from None
        if isinstance(exc, PixiPackError) and journal is not None:
            raise type(exc)(f"{exc}; the environment was left as it was") from None
        raise
    finally:
        with held_interrupts(), contextlib.suppress(FileNotFoundError):
            _remove_cache(workdir / "cache", ram)
            shutil.rmtree(workdir)
    return prefix


def _installed_contents(record: rattler.PrefixRecord) -> PackageContents:
    """What rattler will unlink for an installed package the delta removes or replaces: the paths
    its ``conda-meta`` record lists are data (an earlier pack wrote them), checked like a new
    package's so that none leaves the environment."""
    paths = [Path(f).as_posix() for f in record.files]
    paths += [Path(e.relative_path).as_posix() for e in record.paths_data.paths]
    return PackageContents(
        f"{record.name.normalized}={record.version}={record.build}",
        paths=paths,
        paths_source="its record in conda-meta",
    )


def _symlinks(prefix: Path) -> dict[str, str]:
    """The symlinks already in the environment (relative path -> target), links not followed: the
    new packages' files must not be written through one that leaves it (a user's link to /opt, or
    a kept package's link that the new ones climb out of)."""
    found = {}
    for root, dirs, names in os.walk(prefix):
        for name in [*dirs, *names]:
            path = Path(root) / name
            if path.is_symlink():
                found[path.relative_to(prefix).as_posix()] = os.readlink(path)
    return found


def _check_complete(
    target: PackageSet,
    shipped: list[rattler.RepoDataRecord],
    kept: list[rattler.PrefixRecord],
    wheels: list[Path],
    prefix: Path,
    records: list[rattler.PrefixRecord],
) -> None:
    """The shipped and the kept packages must make the target exactly: no more, no fewer."""
    have = {record_line(r) for r in shipped} | {record_line(r) for r in kept}
    have |= {line for line in (wheel_line(w.name) for w in wheels) if line is not None}
    have |= {
        line
        for line in (pypi_line(d.name, d.version) for d in installed_pypi(prefix, records))
        if line in target.lines
    }
    made = PackageSet.of(have)
    if made != target:
        raise InvalidPackError(
            f"the delta pack does not make the environment its {METADATA_FILE} names: "
            f"with it the environment {made.difference(target)}"
        )


def _repodata_record(record: rattler.PrefixRecord) -> rattler.RepoDataRecord:
    """A kept package's record as installed: rattler sees it unchanged and leaves it alone."""
    return rattler.RepoDataRecord(record, record.file_name, record.url, record.channel or "")


def _install(
    wanted: list[rattler.RepoDataRecord],
    installed: list[rattler.PrefixRecord],
    prefix: Path,
    cache_dir: Path,
    platform: str,
    show_progress: bool,
) -> None:
    """rattler's transaction from ``installed`` to ``wanted``: unlink what went, link what came."""
    try:
        asyncio.run(
            rattler.install(
                wanted,
                target_prefix=prefix,
                cache_dir=cache_dir,
                installed_packages=installed,
                platform=rattler.Subdir(platform),
                execute_link_scripts=False,
                show_progress=show_progress,
                package_cache=PackageCache.new_layered([cache_dir], validation_mode=ValidationMode.skip()),
            )
        )
    except Exception as exc:  # rattler's errors, in one line with their root cause
        raise UnpackError(f"updating the environment {prefix} failed: {one_line_reason(exc)}") from None
    with contextlib.suppress(FileNotFoundError):
        (prefix / "CACHEDIR.TAG").unlink()


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is in ``root`` once the links of its folders are followed (the folder of a
    RECORD line can be a symlink to outside the environment); ``path`` itself is not followed."""
    return path != root and Path(os.path.realpath(path.parent)).is_relative_to(root)


def _remove_dist(prefix: Path, dist: PypiDist) -> None:
    """Remove a PyPI package's files (its ``RECORD``, paths inside the prefix only) and folders left empty."""
    site = dist.dist_info.parent.resolve()
    root = prefix.resolve()
    folders: set[Path] = set()
    record = dist.dist_info / "RECORD"
    lines = record.read_text(encoding="utf-8", errors="replace").splitlines() if record.is_file() else []
    for line in lines:
        relative = line.split(",", 1)[0]
        if not relative:
            continue
        path = Path(os.path.normpath(site / relative))
        if not _inside(path, root):
            continue  # a RECORD is data: never remove outside the environment
        if path.is_file() or path.is_symlink():
            path.unlink()
            folders.add(path.parent)
            cache = path.parent / "__pycache__"
            if path.suffix != ".py" or not _inside(cache / "x", root):
                continue
            for compiled in cache.glob(f"{glob.escape(path.stem)}.*.pyc"):
                compiled.unlink()
                folders.add(cache)
    shutil.rmtree(dist.dist_info, ignore_errors=True)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            while folder != site and folder.is_relative_to(site):
                folder.rmdir()  # only when empty
                folder = folder.parent


def apply_each(
    options: UnpackOptions,
    fmt: PackFormat,
    plugins: PluginManager,
    environments: dict[str, dict[str, Target]],
) -> list[Path]:
    """``pixi-unpack DELTA --all -o DIR``: update ``DIR/NAME`` for each environment of a delta of
    several. Each environment is checked first (its base, or already its target: then it is left
    alone), so a wrong one refuses before any changes; each update is rolled back on its own
    failure, and a run stopped between two updates is finished by running it again."""
    output_dir = options.output_directory.absolute()
    if not output_dir.is_dir():
        raise UsageError(
            f"'{output_dir}' holds no environments, and a delta pack only updates them; pass the "
            "-o/--output-directory the pack of several environments was unpacked into with --all"
        )
    updated = []
    with locked_output(output_dir):
        deltas = {name: chosen_delta(environments, name) for name in sorted(environments)}
        pending = []
        for name, delta in deltas.items():
            validate_metadata(delta.metadata)
            check_activation_values(delta.metadata.activation, options.shell, delta.metadata.platform)
            _, applied = installed_state(output_dir / name, delta)
            if not applied:
                pending.append(name)
        if not pending:
            raise UsageError(
                f"this delta is already applied: each environment in '{output_dir}' has its packages"
            )
        for name in pending:
            one = dataclasses.replace(
                options, environment=name, env_name=name, activation_script=f"activate-{name}"
            )
            try:
                updated.append(_apply_delta(one, fmt, plugins, deltas[name]))
            except PixiPackError as exc:
                if not updated:
                    raise
                done = ", ".join(prefix.name for prefix in updated)
                raise type(exc)(
                    f"{exc} (environment '{name}'); already updated: {done}; "
                    "run the same command again to finish once the cause is fixed"
                ) from None
    return updated
