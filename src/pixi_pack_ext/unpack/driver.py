"""Unpack: validate the pack, extract it safely, verify every package, install with rattler.

Order matters for safety: ``pixi-pack.json`` is validated before anything is written when the input
allows a look ahead; extraction goes to a temporary folder; every package is checked against the
pack's repodata sha256 (in the same pass that extracts it into a private package cache) and by the
package guard before anything is linked into the environment; a failure removes the half-made
environment and every temporary file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import rattler
from rattler import Channel, RepoData
from rattler.package_cache import PackageCache, ValidationMode

from .. import untrusted
from ..channel import read_repodata
from ..environments import peek_selection, select
from ..errors import InvalidPackError, PixiPackError, UnpackError, UsageError, one_line_reason
from ..hashing import hash_file
from ..hookspecs import PackFormat
from ..interrupts import deferred_interrupts, held_interrupts
from ..metadata import CHANNEL_DIR, PackMetadata
from ..plugins import PluginManager, get_plugin_manager
from ..sshsig import PublicKey
from ..staging_owner import make_owned_folder
from .activation import check_activation_target, install_scripts, write_activation_script
from .cache_prefill import CachePrefill
from .conda_meta import Origin, read_origin, restore_origins
from .link_scripts import find_link_scripts, run_post_link, warn_not_run
from .package_guard import check_contents
from .ram_staging import RamStaging
from .step_runner import StepRunner
from .trust import GatedFiles, TrustGate
from .virtual_packages import check_virtual_packages

log = logging.getLogger(__name__)

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
    if prefix.exists() and (not prefix.is_dir() or any(prefix.iterdir())) and not force:
        raise UsageError(
            f"'{prefix}' already exists and is not empty; remove it or pass --force to replace it"
        )


def _make_workdir(output_dir: Path, created_output: bool) -> Path:
    """The output folder (made if missing) and this run's staging folder in it, which names its
    owner so the next run removes one a killed unpack left; one line naming the folder if not."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnpackError(
            f"cannot create the output folder '{output_dir}': {exc.strerror}; choose a writable folder with -o"
        ) from None
    try:
        return make_owned_folder(output_dir, ".pixi-unpack-").resolve()
    except OSError as exc:
        if created_output:
            shutil.rmtree(output_dir, ignore_errors=True)
        raise UnpackError(
            f"cannot create a staging folder in '{output_dir}': {exc.strerror}; "
            "choose a writable folder with -o"
        ) from None


def unpack(options: UnpackOptions, plugins: PluginManager | None = None) -> Path:
    """Install the pack into ``output_directory/env_name``; returns the prefix."""
    plugins = plugins or get_plugin_manager()
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
    check_activation_target(output_dir, options.shell, host_platform(), options.force)
    if pack is not None and fmt.peek_metadata is not None:
        text = fmt.peek_metadata(pack)
        if text is not None:
            validate_metadata(peek_selection(text, options.environment))

    created_output = not output_dir.exists()
    workdir = _make_workdir(output_dir, created_output)
    prefix_created = False
    activation: Path | None = None
    cache_removal: threading.Thread | None = None
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
        if prefix.exists():
            shutil.rmtree(prefix) if prefix.is_dir() else prefix.unlink()
        prefix_created = True
        # From here a Ctrl-C waits for the end (rattler's threads cannot be stopped halfway), and
        # then everything is removed below.
        steps = StepRunner(
            plugins.unpack_steps,
            pack_dir=selection.pack_dir,
            prefix=prefix,
            platform=metadata.platform,
            records=records,
            scratch_root=workdir / "steps",
            compile_bytecode=options.compile_bytecode,
        )
        with deferred_interrupts("the install"):
            with steps.preparing():
                _install(records, prefix, cache_dir, metadata.platform, options.show_progress)
                restore_origins(prefix, records, origins)
            scripts = find_link_scripts(prefix, records, metadata.platform)
            if options.run_post_link_scripts:
                run_post_link(prefix, scripts)
            else:
                warn_not_run(scripts)
            # The environment holds hard links to (or copies of) the cache's files now: removing
            # the cache's thousands of entries overlaps with the unpack steps instead of following them.
            cache_removal = threading.Thread(target=_remove_cache, args=(workdir / "cache", ram))
            cache_removal.start()
            steps.run_all()
            manifest = install_scripts(pack_dir, prefix, metadata.activation) if metadata.activation else None
            activation = write_activation_script(
                output_dir, prefix, options.shell, metadata.platform, manifest
            )
    except BaseException as exc:
        with held_interrupts():  # a second Ctrl-C must not stop the clean-up halfway
            if activation is not None:
                activation.unlink(missing_ok=True)
            if prefix_created:
                shutil.rmtree(prefix, ignore_errors=True)
            if created_output:
                shutil.rmtree(output_dir, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, PixiPackError):
            raise UnpackError(f"unpacking failed: {exc.strerror or exc} ({exc.filename or prefix})") from None
        raise
    finally:
        with held_interrupts(), contextlib.suppress(FileNotFoundError):
            if cache_removal is not None:
                cache_removal.join()
            else:  # the unpack ended before the install: nothing removed the caches yet
                _remove_cache(workdir / "cache", ram)
            shutil.rmtree(workdir)
    return prefix


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
    records: list[rattler.RepoDataRecord], prefix: Path, cache_dir: Path, platform: str, show_progress: bool
) -> None:
    """Install with rattler (prefix rewriting, noarch python, entry points) and write conda-meta/history."""
    install_records(
        records,
        prefix,
        cache_dir,
        platform,
        show_progress=show_progress,
        prefilled=True,
        failed=lambda exc: UnpackError(
            f"installing the environment into {prefix} failed: {one_line_reason(exc)}"
        ),
    )
    history = prefix / "conda-meta" / "history"
    history.parent.mkdir(parents=True, exist_ok=True)
    if not history.exists():
        history.write_text(HISTORY_NOTE)
