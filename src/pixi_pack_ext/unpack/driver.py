"""Unpack: validate the pack, extract it safely, verify every package, install with rattler.

Order matters for safety: ``pixi-pack.json`` is validated before anything is written when the input
allows a look ahead; extraction goes to a temporary folder; every package is checked against the
pack's repodata sha256 (in the same pass that extracts it into a private package cache) and by the
package guard before anything is linked into the environment.

A run owns what it creates and nothing else: it holds a lock on the output folder for its whole
length (a second run into the same folder refuses), assembles the environment aside, in its own
staging folder inside the output folder (the same file system), and moves it into place only once
it is complete. An environment it replaces (``--force``) stays where it is until then, and comes
back when the last step fails. A failure or a stop signal therefore leaves the output folder as it
was: the staging folder goes, and the output folder itself only when this run made it and it is
still empty. Several environments of one pack (``--all``) are each assembled in a staging folder
of their own before any moves into place, and a failure of any takes every one out again
(``unpack_together``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import rattler
from rattler import Channel, RepoData
from rattler.package_cache import PackageCache, ValidationMode

from .. import untrusted
from ..channel import read_repodata
from ..environments import peek_selection, select
from ..errors import InvalidPackError, PixiPackError, UnpackError, UsageError, one_line_reason
from ..file_urls import url2pathname
from ..hashing import hash_file
from ..hookspecs import PackFormat
from ..interrupts import deferred_interrupts, held_interrupts
from ..metadata import CHANNEL_DIR, PackMetadata
from ..plugins import PluginManager, get_plugin_manager
from ..sshsig import PublicKey
from ..staging_owner import make_owned_folder, remove_tree
from .activation import (
    activation_path,
    check_activation_target,
    check_pack_activation,
    install_scripts,
    write_activation_script,
)
from .cache_prefill import CachePrefill
from .conda_meta import Origin, read_origin, restore_origins
from .link_scripts import find_link_scripts, run_post_link, warn_not_run
from .output_lock import locked_output
from .package_guard import check_contents
from .ram_staging import RamStaging
from .step_runner import StepRunner
from .trust import GatedFiles, TrustGate
from .virtual_packages import check_virtual_packages

log = logging.getLogger(__name__)

#: After a failed link step, how often (and how long apart, in seconds) the staging folder is
#: looked at again for what rattler's threads still wrote.
LINKERS_SETTLE_STEPS = 10
LINKERS_SETTLE_PAUSE = 0.1
HISTORY_NOTE = "// created by pixi-unpack (pixi-pack-ext); kept for `conda run -p`\n"


@dataclass
class UnpackOptions:
    """Everything ``pixi-unpack`` was asked to do."""

    #: The pack (a file or folder); None reads standard input.
    pack: Path | None = Path("environment.tar")
    output_directory: Path = Path(".")
    env_name: str = "env"
    shell: str | None = None
    force: bool = False
    ignore_virtual_packages: bool = False
    show_progress: bool = False
    #: Which environment of a pack of several to install (None: the only one).
    environment: str | None = None
    #: Run the packages' post-link scripts (pixi's ``run-post-link-scripts = "insecure"``).
    run_post_link_scripts: bool = False
    #: OpenSSH public keys: when any is given, only a pack signed by one of them is unpacked.
    trusted_keys: list[PublicKey] = field(default_factory=list)
    #: The sha256 of the manifest a self-extracting header checked the signature of (``$PIXI_UNPACK_MANIFEST_SHA256``).
    manifest_sha256: str | None = None
    #: Compile the wheels' bytecode with the environment's python (runs code from the pack).
    compile_bytecode: bool = False
    #: The activation script's name without its extension (``--all``: ``activate-NAME``).
    activation_script: str = "activate"


def host_platform() -> str:
    return str(rattler.Subdir.current())


def validate_metadata(metadata: PackMetadata) -> None:
    """A pack for another platform cannot be installed here."""
    host = host_platform()
    if metadata.platform != host:
        raise InvalidPackError(
            f"the pack was made for {metadata.platform} but this machine is {host}; "
            f"make a pack for this machine with 'pixi-pack -p {host}'"
        )


def verify_channel(
    pack_dir: Path,
    *,
    check_hashes: bool = True,
    streamed: set[Path] | None = None,
    origins: dict[str, Origin] | None = None,
) -> list[rattler.RepoDataRecord]:
    """Check every package the pack's repodata lists against its sha256 and return install records.

    Each record is checked by ``untrusted.repodata_record`` first (its name, version and build
    become folder names; its file must be named after them), and rattler reads only the checked
    fields. ``check_hashes=False`` checks everything but the bytes (``CachePrefill`` then hashes
    them while it extracts them); ``streamed`` files were taken straight from the pack, so they
    need not exist.
    ``origins`` receives each record's original URL and channel, keyed by its (local) install URL."""
    channel_dir = pack_dir / CHANNEL_DIR
    if not channel_dir.is_dir():
        raise InvalidPackError("the pack has no channel/ folder; this is not a pixi-pack pack")
    channel = Channel(channel_dir.resolve().as_uri() + "/")
    records: list[rattler.RepoDataRecord] = []
    for subdir in sorted(p for p in channel_dir.iterdir() if p.is_dir()):
        folder = untrusted.subdir(subdir.name, f"the pack's folder channel/{subdir.name}")
        repodata_path = subdir / "repodata.json"
        if not repodata_path.is_file():
            raise InvalidPackError(f"the pack's channel/{folder} has no repodata.json")
        document = read_repodata(repodata_path)
        tables = untrusted.repodata_document(document, folder)
        entries = {name: record for table in tables.values() for name, record in table.items()}
        for file_name, entry in entries.items():
            path = subdir / file_name
            if not path.is_file() and Path(os.path.abspath(path)) not in (streamed or set()):
                raise InvalidPackError(f"channel/{folder}/{file_name} is listed in repodata.json but missing")
            expected = entry["sha256"]
            actual = hash_file(path, md5=False)[0] if check_hashes else expected
            if actual != expected:
                raise InvalidPackError(
                    f"channel/{folder}/{file_name} is corrupt: expected sha256 {expected}, got {actual}"
                )
        if entries:
            pinned = _pin_to_verified_files(_parse_checked(tables, folder, channel), subdir, entries)
            if origins is not None:
                raw = untrusted.raw_entries(document)
                for record in pinned:
                    origins[record.url] = read_origin(raw[record.file_name], folder, record.file_name)
            records.extend(pinned)
    return records


def _parse_checked(
    tables: dict[str, dict[str, dict[str, object]]], folder: str, channel: Channel
) -> list[rattler.RepoDataRecord]:
    """rattler's records of the checked fields only (written to a private file for its parser);
    an error or a panic in rattler is one line."""
    document = {"info": {"subdir": folder}, **tables, "repodata_version": 1}
    with tempfile.TemporaryDirectory(prefix="pixi-unpack-repodata-") as scratch:
        path = Path(scratch) / "repodata.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        try:
            return RepoData.from_path(path).into_repo_data(channel)
        except BaseException as exc:  # rattler's parse errors; a Rust panic is a BaseException
            untrusted.reraise_interrupts(exc)
            raise InvalidPackError(
                f"channel/{folder}/repodata.json is malformed: {one_line_reason(exc)}"
            ) from None


def _pin_to_verified_files(
    records: list[rattler.RepoDataRecord], subdir: Path, entries: dict[str, dict[str, object]]
) -> list[rattler.RepoDataRecord]:
    """Point every record at the file just verified: rattler builds URLs from the record's own
    ``subdir`` field, and a hostile ``"subdir": "../../x"`` would install an unverified file."""
    folder = subdir.resolve()
    for record in records:
        if record.file_name not in entries:
            raise InvalidPackError(
                f"channel/{subdir.name}/repodata.json has a record for '{record.file_name}' it does not list"
            )
        if record.subdir != subdir.name:
            raise InvalidPackError(
                f"channel/{subdir.name}/repodata.json says '{record.file_name}' is for subdir "
                f"'{record.subdir}'; a pack keeps each package in its own subdir's folder"
            )
        record.url = (folder / record.file_name).as_uri()  # file names are checked: one component
    return records


def package_files(records: list[rattler.RepoDataRecord]) -> list[Path]:
    """The local package file of each (verified, pinned) record."""
    return [Path(url2pathname(urlsplit(r.url).path)) for r in records]


def _open_pack(
    fmt: PackFormat, pack: Path | None, workdir: Path, prefill: CachePrefill, gate: TrustGate
) -> Path:
    """The pack as a folder, its files checked against its manifest (and signature) as they arrive;
    packages start extracting as they land when the format reports them."""
    assert fmt.open_pack is not None  # format_reading only returns formats that read
    if fmt.reports_files:
        files = GatedFiles(gate, prefill)
        pack_dir = fmt.open_pack(pack, workdir, files)
        gate.finish(pack_dir, taken=files.taken)
        return pack_dir
    pack_dir = fmt.open_pack(pack, workdir)
    gate.finish(pack_dir)
    return pack_dir


def _prepare_prefix(prefix: Path, force: bool) -> None:
    if _occupied(prefix) and not force:
        raise UsageError(
            f"'{prefix}' already exists and is not empty; remove it or pass --force to replace it"
        )


def _make_workdir(output_dir: Path) -> Path:
    """This run's staging folder in the output folder, which names its owner so the next run
    removes one a killed unpack left; one line naming the folder if it cannot be made."""
    try:
        return make_owned_folder(output_dir, ".pixi-unpack-").resolve()
    except OSError as exc:
        raise UnpackError(
            f"cannot create a staging folder in '{output_dir}': {exc.strerror}; "
            "choose a writable folder with -o"
        ) from None


def _occupied(path: Path) -> bool:
    """Whether something other than an empty folder is at ``path`` (a link counts, followed or not)."""
    if path.is_symlink():
        return True
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is not None
    except NotADirectoryError:
        return True
    except FileNotFoundError:
        return False


class _Placement:
    """Moves the environment assembled at ``staged`` to ``prefix``, keeping what was there (an
    empty folder, or the environment ``--force`` replaces) aside until the run is over, so that
    ``undo`` can put it back.

    On Linux the two swap places in one step (``renameat2`` with ``RENAME_EXCHANGE``): no moment
    exists, not even for ``kill -9``, at which neither environment is at ``prefix``. Elsewhere
    the old one is moved to ``keep`` first, then the new one into place."""

    def __init__(self, staged: Path, prefix: Path, keep: Path) -> None:
        self.staged, self.prefix, self.keep = staged, prefix, keep
        self.kept: Path | None = None  # where what was at ``prefix`` is now
        self.placed = False

    def place(self, force: bool) -> None:
        if _occupied(self.prefix) and not force:  # made meanwhile by someone other than pixi-unpack
            raise UsageError(
                f"'{self.prefix}' was filled while this unpack ran; nothing was changed there "
                "(pass --force to replace it)"
            )
        if self.prefix.is_symlink() or self.prefix.exists():
            if _exchange(self.staged, self.prefix):
                self.kept, self.placed = self.staged, True
                return
            os.replace(self.prefix, self.keep)  # a link itself is moved, never what it points to
            self.kept = self.keep
        os.replace(self.staged, self.prefix)
        self.placed = True

    def undo(self) -> None:
        """Take the new environment out again and put back what was there."""
        if self.placed and self.kept == self.staged:
            if not _exchange(self.staged, self.prefix):
                raise OSError(f"could not swap the environments at {self.prefix} back")
            self.placed, self.kept = False, None
            return
        if self.placed:
            os.replace(self.prefix, self.staged)
            self.placed = False
        if self.kept is not None:
            os.replace(self.kept, self.prefix)
            self.kept = None


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths of one file system in one step (Linux 3.15+, glibc 2.28+); False when
    this system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False  # a file system or kernel without it: the two-step way
    raise OSError(error, os.strerror(error), str(second))


def unpack(options: UnpackOptions, plugins: PluginManager | None = None) -> Path:
    """Install the pack into ``output_directory/env_name``; returns the prefix."""
    return unpack_together([options], plugins)[0]


def unpack_together(batch: list[UnpackOptions], plugins: PluginManager | None = None) -> list[Path]:
    """Install each of ``batch`` (one pack's environments, into one output folder) all or none:
    every environment is assembled aside first, and only when all are complete do they move into
    place, one after the other; any failure then takes the placed ones out again and puts back
    what they replaced, so the output folder is left as it was. Returns the prefixes."""
    plugins = plugins or get_plugin_manager()
    checked = [_check_before_writing(options, plugins) for options in batch]
    output_dir = batch[0].output_directory.absolute()
    assert all(options.output_directory.absolute() == output_dir for options in batch)
    created_output = not output_dir.exists()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnpackError(
            f"cannot create the output folder '{output_dir}': {exc.strerror}; choose a writable folder with -o"
        ) from None
    try:
        with locked_output(output_dir):
            for options, (_, _, prefix) in zip(batch, checked, strict=True):
                _prepare_prefix(prefix, options.force)  # again: another run may have finished meanwhile
            with contextlib.ExitStack() as assembled:
                environments = [
                    assembled.enter_context(_assembled(options, plugins, fmt, pack, output_dir, prefix))
                    for options, (fmt, pack, prefix) in zip(batch, checked, strict=True)
                ]
                for environment in environments:
                    environment.place()
            return [prefix for _, _, prefix in checked]
    except BaseException:
        if created_output:
            with held_interrupts(), contextlib.suppress(OSError):
                output_dir.rmdir()  # only while empty: never what another run or the user put there
        raise


def _check_before_writing(
    options: UnpackOptions, plugins: PluginManager
) -> tuple[PackFormat, Path | None, Path]:
    """What can be refused before anything is written: (the pack's format, the pack, the prefix)."""
    pack = options.pack
    if pack is not None and str(pack) == "-":
        pack = None
    if pack is not None and not pack.exists():
        raise UsageError(
            f"pack '{pack}' does not exist; pass the path of an environment.tar (or '-' for stdin)"
        )
    fmt = plugins.format_reading(pack)
    output_dir = options.output_directory.absolute()
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"output folder '{output_dir}' is a file; choose a folder with -o")
    prefix = output_dir / options.env_name
    if options.env_name in ("", ".", "..") or "/" in options.env_name or "\\" in options.env_name:
        raise UsageError(f"environment name '{options.env_name}' must be a plain folder name")
    _prepare_prefix(prefix, options.force)
    check_activation_target(
        output_dir, options.shell, host_platform(), options.force, options.activation_script
    )
    if pack is not None and fmt.peek_metadata is not None:
        text = fmt.peek_metadata(pack)
        if text is not None:
            validate_metadata(peek_selection(text, options.environment))
    return fmt, pack, prefix


@dataclass
class _Assembled:
    """An environment complete in its staging folder, and how to move it into place (with its
    activation script) and out again."""

    options: UnpackOptions
    output_dir: Path
    prefix: Path
    workdir: Path
    pack_dir: Path
    metadata: PackMetadata
    records: list[rattler.RepoDataRecord]
    placement: _Placement
    script: Path | None = None  # the activation script, once written
    replaced_script: Path | None = None  # where the one it replaced is kept until the end

    def place(self) -> None:
        """Into place, then what names the environment's own path is done where it lives."""
        options, prefix, metadata = self.options, self.prefix, self.metadata
        with held_interrupts():  # complete: into place, or not at all
            self.placement.place(options.force)
        if options.run_post_link_scripts:
            with deferred_interrupts("the link scripts"):
                run_post_link(prefix, find_link_scripts(prefix, self.records, metadata.platform))
        with held_interrupts():
            manifest = (
                install_scripts(self.pack_dir, prefix, metadata.activation) if metadata.activation else None
            )
            self._keep_replaced_script()
            self.script = write_activation_script(
                self.output_dir, prefix, options.shell, metadata.platform, manifest, options.activation_script
            )

    def _keep_replaced_script(self) -> None:
        """A second name for the activation script ``--force`` replaces, so ``undo`` can put it back."""
        target = activation_path(
            self.output_dir, self.options.shell, self.metadata.platform, self.options.activation_script
        )
        if not (target.is_symlink() or target.exists()):
            return
        kept = self.workdir / "replaced-activation"
        try:
            os.link(target, kept, follow_symlinks=False)
        except OSError:  # a file system without hard links
            shutil.copy2(target, kept, follow_symlinks=False)
        self.replaced_script = kept

    def undo(self) -> None:
        """Take the environment and its activation script out again; put back what they replaced."""
        if self.script is not None:
            if self.replaced_script is not None:
                os.replace(self.replaced_script, self.script)
            else:
                self.script.unlink(missing_ok=True)
            self.script = None
        self.placement.undo()


@contextlib.contextmanager
def _assembled(
    options: UnpackOptions,
    plugins: PluginManager,
    fmt: PackFormat,
    pack: Path | None,
    output_dir: Path,
    prefix: Path,
) -> Iterator[_Assembled]:
    """The unpack itself, holding the output folder's lock: the environment is assembled in a
    staging folder and handed out complete; a failure, there or while it (or another environment
    of the same run) moves into place, undoes its placement. Its staging folder goes at the end."""
    workdir = _make_workdir(output_dir)  # one a killed unpack left goes
    staged_prefix = workdir / "env"
    placement = _Placement(staged_prefix, prefix, workdir / "replaced")
    environment: _Assembled | None = None
    cache_removal: threading.Thread | None = None
    linking = False  # True while rattler links, and after it failed doing so
    ram = RamStaging.create()
    cache_dir = ram.cache_folder() if ram is not None else workdir / "cache"
    try:
        with CachePrefill(cache_dir, ram=ram, disk_dir=workdir / "cache") as prefill:
            gate = TrustGate(options.trusted_keys, options.manifest_sha256)
            pack_dir = _open_pack(fmt, pack, workdir / "pack", prefill, gate)
            if gate.signed_by is not None:
                log.info("the pack is signed by trusted key %s", gate.signed_by.fingerprint)
            selection = select(pack_dir, options.environment, workdir / "selected")
            metadata = selection.metadata
            validate_metadata(metadata)
            check_pack_activation(pack_dir, metadata.activation, options.shell, metadata.platform)
            origins: dict[str, Origin] = {}
            records = selection.keep(
                verify_channel(pack_dir, check_hashes=False, streamed=prefill.streamed, origins=origins)
            )
            if not options.ignore_virtual_packages:
                check_virtual_packages(records, metadata.platform, metadata.virtual_packages)
            # Every package's sha256 is checked as it is extracted into rattler's cache (the
            # install then only links) while the guard reads its archive; a wrong hash wins over
            # a guard refusal, and nothing reaches the environment before both have passed.
            contents = prefill.finish(records, package_files(records), pack)
        check_contents(contents, metadata.platform)
        # From here a stop signal waits for the end (rattler's threads cannot be stopped
        # halfway), and then everything is removed below.
        steps = StepRunner(
            plugins.unpack_steps,
            pack_dir=selection.pack_dir,
            prefix=staged_prefix,
            target_prefix=prefix,
            platform=metadata.platform,
            records=records,
            scratch_root=workdir / "steps",
            compile_bytecode=options.compile_bytecode,
        )
        with deferred_interrupts("the install"):
            with steps.preparing():
                linking = True
                _install(
                    records, staged_prefix, cache_dir, metadata.platform, options.show_progress, target=prefix
                )
                linking = False
                restore_origins(staged_prefix, records, origins, in_place=True)
            if not options.run_post_link_scripts:
                warn_not_run(find_link_scripts(staged_prefix, records, metadata.platform))
            # The environment holds hard links to (or copies of) the cache's files now: removing
            # the cache's thousands of entries overlaps with the unpack steps instead of following them.
            cache_removal = threading.Thread(target=_remove_cache, args=(workdir / "cache", ram))
            cache_removal.start()
            steps.run_all()
        environment = _Assembled(options, output_dir, prefix, workdir, pack_dir, metadata, records, placement)
        yield environment
    except BaseException as exc:
        with held_interrupts():  # a second Ctrl-C must not stop the clean-up halfway
            try:
                if environment is not None:
                    environment.undo()
                else:
                    placement.undo()
            except OSError as undo_error:  # pragma: no cover - the folder changed under us
                log.error("could not put back the environment that was at %s: %s", prefix, undo_error)
        if isinstance(exc, OSError) and not isinstance(exc, PixiPackError):
            raise UnpackError(f"unpacking failed: {exc.strerror or exc} ({exc.filename or prefix})") from None
        raise
    finally:
        with held_interrupts(), contextlib.suppress(FileNotFoundError):
            if cache_removal is not None:
                cache_removal.join()
            else:  # the unpack ended before the install: nothing removed the caches yet
                _remove_cache(workdir / "cache", ram)
            remove_tree(workdir)
            if linking:
                _remove_after_the_linkers(workdir)


def _remove_after_the_linkers(workdir: Path) -> None:
    """rattler's link threads can outlive an install that failed and make folders again in the
    environment being assembled: remove it again while they end (within about a second)."""
    for _ in range(LINKERS_SETTLE_STEPS):
        time.sleep(LINKERS_SETTLE_PAUSE)
        if os.path.lexists(workdir):
            remove_tree(workdir)


def _remove_cache(cache_dir: Path, ram: RamStaging | None) -> None:
    """Remove the package cache and the RAM folder its small packages' entries point into."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    if ram is not None:
        ram.remove()


def install_records(
    records: list[rattler.RepoDataRecord],
    prefix: Path,
    cache_dir: Path,
    platform: str,
    *,
    failed: Callable[[BaseException], PixiPackError],
    show_progress: bool = False,
    alternative_target_prefix: str | None = None,
    prefilled: bool = False,
) -> None:
    """Install ``records`` into ``prefix`` with rattler (prefix rewriting, noarch python, entry points;
    no link scripts run: see ``link_scripts``); rattler's error is raised as ``failed(error)``.

    ``alternative_target_prefix`` is the path the environment will live at when that is not ``prefix``.
    ``prefilled``: ``cache_dir`` is private and its packages were just extracted from archives whose
    sha256 was checked, so rattler need not look at every file of every entry again.
    """
    package_cache = (
        PackageCache.new_layered([cache_dir], validation_mode=ValidationMode.skip()) if prefilled else None
    )
    try:
        asyncio.run(
            rattler.install(
                records,
                target_prefix=prefix,
                cache_dir=cache_dir,
                platform=rattler.Subdir(platform),
                alternative_target_prefix=alternative_target_prefix,
                execute_link_scripts=False,
                show_progress=show_progress,
                package_cache=package_cache,
            )
        )
    except BaseException as exc:  # rattler's install errors (or a panic), in one line with their cause
        untrusted.reraise_interrupts(exc)
        raise failed(exc) from None
    # rattler marks prefixes as cache folders; an environment is not one (backup tools would skip it).
    with contextlib.suppress(FileNotFoundError):
        (prefix / "CACHEDIR.TAG").unlink()


def _install(
    records: list[rattler.RepoDataRecord],
    prefix: Path,
    cache_dir: Path,
    platform: str,
    show_progress: bool,
    *,
    target: Path,
) -> None:
    """Install with rattler (prefix rewriting, noarch python, entry points) into ``prefix``, for an
    environment that will live at ``target``, and write conda-meta/history."""
    install_records(
        records,
        prefix,
        cache_dir,
        platform,
        show_progress=show_progress,
        prefilled=True,
        alternative_target_prefix=str(target),
        failed=lambda exc: UnpackError(
            f"installing the environment into {target} failed: {one_line_reason(exc)}; nothing was changed there"
        ),
    )
    history = prefix / "conda-meta" / "history"
    history.parent.mkdir(parents=True, exist_ok=True)
    if not history.exists():
        history.write_text(HISTORY_NOTE)
