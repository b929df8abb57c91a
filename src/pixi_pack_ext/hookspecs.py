"""The plugin author's contract: every hook pixi-pack-ext calls, and the records they return.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose names match the specs
below. Each hook returns a list of typed records; the core looks records up by name or by what they
match and refuses two records that claim the same name. Built-in sources, injectors and formats are
registered through these same hooks, so a third-party plugin can do anything a built-in does.

Register a plugin with an entry point in the ``pixi_pack`` group::

    [project.entry-points.pixi_pack]
    my-plugin = "my_package.plugin_module"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from rattler import RepoDataRecord

    from .config import Settings
    from .plan import PackPlan

PROJECT_NAME = "pixi_pack"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------------------------------
# Channel sources
# --------------------------------------------------------------------------------------------------


class DownloadSink(Protocol):
    """Where a source writes the bytes of one file; the core hashes and counts them as they pass.

    ``offset`` is how many bytes the sink already holds, so a source that can resume asks the server
    for the rest (``Range: bytes=offset-``); one that cannot calls ``restart()`` and sends everything.
    """

    @property
    def offset(self) -> int: ...

    #: The file's size as the lock records it (None when it does not): a source may choose how to
    #: receive the file by it; the sink refuses any byte beyond it.
    limit: int | None

    def write(self, chunk: bytes) -> None: ...

    def restart(self) -> None: ...

    async def receive_file(
        self, write_file: Callable[[Path], Awaitable[None]], idle_timeout: float | None = None
    ) -> None:
        """For a downloader that writes files itself: ``write_file(path)`` writes the file at a
        path the sink chooses; the sink then holds what is there (all of it, or what was written
        before a failure, so ``offset`` tells where to resume). Raises ``TimeoutError`` (after
        cancelling ``write_file``) when the file stops growing for ``idle_timeout`` seconds.
        Only on an empty sink."""
        ...


class SourceSession(Protocol):
    """An open connection pool of one source, shared by all downloads of one pack run."""

    async def download(self, url: str, sink: DownloadSink) -> None:
        """Stream the file at ``url`` into ``sink``; raise ``DownloadError`` (or a subclass) on failure."""
        ...


@dataclass(frozen=True)
class ChannelSource:
    """A way to fetch package files for some URLs.

    ``schemes`` are the URL schemes it serves (``"https"``, ``"s3"``, ...). ``open`` is called once per
    pack run with the resolved settings and returns an async context manager yielding a session; the
    session lives as long as the downloads do.

    The core verifies every file's hash, expands ``[mirrors]`` into candidate URLs before choosing a
    source, and bounds concurrency; a source only moves bytes. A third-party source serving a
    built-in's scheme takes it over; two third-party sources serving one scheme are refused.
    """

    #: Unique name, shown by ``pixi-pack plugins`` (``"http"``, ``"s3"``).
    name: str
    #: URL schemes served (``("http", "https")``).
    schemes: tuple[str, ...]
    #: ``open(settings)`` returns an async context manager yielding the run's ``SourceSession``.
    open: Callable[[Settings], AbstractAsyncContextManager[SourceSession]]
    #: One line for ``pixi-pack plugins``.
    description: str = ""


# --------------------------------------------------------------------------------------------------
# Injectors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Injector:
    """Adds a local file (``--inject PATH``) to a pack plan without re-solving.

    ``suffixes`` are the file name endings it accepts (``".conda"``, ``".whl"``). ``inject`` checks the
    file itself (readable, built for the plan's platform) and adds it to ``plan.conda`` or ``plan.pypi``
    (replacing a package of the same name, with a line in ``plan.notes``), raising ``InjectionError``
    with a clear message when the file does not fit. Once every file is in, the core checks the plan
    as a whole (conda dependencies and constraints, wheel tags against the python), so injected files
    may depend on each other in any order.
    """

    #: Unique name, shown by ``pixi-pack plugins`` (``"conda"``, ``"wheel"``).
    name: str
    #: File name endings accepted by ``--inject`` (``(".conda", ".tar.bz2")``).
    suffixes: tuple[str, ...]
    #: ``inject(path, plan)`` checks the file and adds it to ``plan``; raises ``InjectionError``.
    inject: Callable[[Path, PackPlan], None]
    #: One line for ``pixi-pack plugins``.
    description: str = ""


# --------------------------------------------------------------------------------------------------
# Output formats
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteRequest:
    """What a format needs to write a pack: the laid-out pack folder and where the result goes.

    ``staging`` holds the complete pack (``pixi-pack.json``, ``environment.yml``, ``channel/``, ``pypi/``)
    and belongs to the format once ``write`` is called (it may move it). ``output`` is a path, or
    ``None`` for standard output. ``options`` carries format-specific values keyed by
    ``FormatOption.key`` (``--base-image X`` or ``--format-option base-image=X`` arrive as
    ``{"base_image": "X"}``), plus ``pixi_unpack_source`` from the core's ``--pixi-unpack-source``.
    """

    #: The complete, laid-out pack folder; the format's to consume (it may move it).
    staging: Path
    #: Where the pack goes; ``None`` for standard output.
    output: Path | None
    #: The pack's platform (``"linux-64"``).
    platform: str
    #: Format settings keyed by ``FormatOption.key``.
    options: dict[str, object] = field(default_factory=dict)
    #: A format that embeds code run before the pack is read (a self-extracting header's unpacker)
    #: calls this with the sha256 it checks that code against, before it writes the pack's tar: the
    #: (signed) manifest in ``staging`` then covers that code too.
    seal_unpacker: Callable[[str], None] | None = None


@dataclass(frozen=True)
class FormatOption:
    """A setting a format accepts, declared so that ``pixi-pack`` can offer and check it.

    ``pixi-pack`` turns each declared option into a ``--NAME VALUE`` flag (unless the core already
    uses that flag; ``--format-option NAME=VALUE`` always works) and refuses options the chosen
    format does not declare. Values reach ``WriteRequest.options`` as strings under ``key``.

    Example::

        FormatOption("base-image", "OCI layout or archive to build on", metavar="PATH")
    """

    #: The flag's name without dashes (``"base-image"`` -> ``--base-image``).
    name: str
    #: One line for ``--help``.
    help: str = ""
    #: The value's placeholder in ``--help``.
    metavar: str = "VALUE"

    @property
    def key(self) -> str:
        """The key of the value in ``WriteRequest.options`` (``base-image`` -> ``base_image``)."""
        return self.name.replace("-", "_")


class PackFiles(Protocol):
    """What the unpacker wants to hear while a format extracts a pack (see ``PackFormat``)."""

    def file_ready(self, name: str, path: Path) -> None:
        """The pack's file ``name`` (e.g. ``channel/linux-64/x-1-0.conda``) is complete at ``path``."""

    def file_starting(self, name: str, size: int) -> None:
        """``name`` (``size`` bytes) is next: raising refuses the pack before the file is written.
        Optional for formats (the unpacker checks every file again once the pack is open), but a
        format that calls it lets a signed pack be refused before anything else is written."""

    def folder_starting(self, name: str) -> None:
        """The folder ``name`` is next (optional, like ``file_starting``): raising refuses the pack
        before the folder is made (a signed pack's folders must each hold a listed file)."""

    def file_located(self, name: str, path: Path, source: Path, offset: int, size: int) -> bool:
        """``name`` is about to be written to ``path``, and its bytes are the ``size`` bytes at
        ``offset`` of the file ``source``: work on it can start before it is written. True takes
        the file over: the format does not write it (nor reports it ready); the listener reads
        those bytes itself."""


@dataclass(frozen=True)
class PackFormat:
    """A way to write a pack (tar, folder, self-extracting script, image, ...) and to read it back.

    ``write`` must leave nothing at the output path when it fails. ``can_read(path)`` says whether
    this format recognises an existing input (``None`` for "can it read standard input"), and
    ``open_pack(path, workdir)`` makes the pack available as a folder and returns it (extracting into
    ``workdir`` if it needs to). Formats that only write leave the read side as ``None``.
    A format that sets ``reports_files`` takes a third argument, ``open_pack(path, workdir, files)``
    (a ``PackFiles``), and calls ``files.file_ready(name, path)`` for every file as soon as it is
    complete, and ``files.file_located(...)`` before it writes a file whose bytes lie as they are
    in a readable file (an uncompressed tar), leaving out the file when that returns True: the
    unpacker then extracts packages while the rest of the pack is still being read, big ones
    straight from the pack, never copied out.
    ``peek_metadata(path)`` lets the unpacker refuse a wrong-platform pack before writing anything.
    ``options`` declares the format's settings (see ``FormatOption``); ``check(platform, options)``,
    when given, is called before anything is downloaded and raises a ``PixiPackError`` for a target
    platform or option values the format cannot handle.
    """

    #: Unique name, chosen with ``--format NAME``.
    name: str
    #: ``write(request)`` writes the pack; nothing is left at the output path when it fails.
    write: Callable[[WriteRequest], None]
    #: ``default_output(platform)`` is the output file name when ``-o`` is not given.
    default_output: Callable[[str], str]
    #: ``can_read(path)``: whether this format reads an existing input (``None``: standard input).
    can_read: Callable[[Path | None], bool] | None = None
    #: ``open_pack(path, workdir[, files])`` makes the pack a folder and returns it.
    open_pack: Callable[..., Path] | None = None
    #: One line for ``pixi-pack plugins`` and ``--help``.
    description: str = ""
    #: ``open_pack`` takes a ``PackFiles`` and reports each file as it lands (see above).
    reports_files: bool = False
    #: True when the format can write to standard output (``-o -``).
    streams: bool = False
    #: Read ``pixi-pack.json`` from an existing input without unpacking it (None: cannot look ahead).
    peek_metadata: Callable[[Path], str | None] | None = None
    #: The settings this format accepts (``--NAME VALUE`` / ``--format-option NAME=VALUE``).
    options: tuple[FormatOption, ...] = ()
    #: Refuse a platform or option values early: ``check(platform, options)`` before any download.
    check: Callable[[str, dict[str, object]], None] | None = None
    #: The output is a folder (the core then refuses an existing file or non-empty folder there
    #: before downloading); otherwise it is a file, and an existing folder there is refused.
    writes_folder: bool = False


# --------------------------------------------------------------------------------------------------
# Unpack steps
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnpackContext:
    """What an unpack step knows: the pack folder, the environment prefix and its platform."""

    #: The unpacked pack folder (``pixi-pack.json``, ``channel/``, ``pypi/``), checked.
    pack_dir: Path
    #: The environment being made.
    prefix: Path
    #: Its platform (``"linux-64"``).
    platform: str
    #: The conda records being installed (the pack's repodata, checked), for ``prepare``.
    records: tuple[RepoDataRecord, ...] = ()
    #: A folder of the step's own, removed after the unpack: what ``prepare`` made for ``run``.
    scratch: Path | None = None
    #: Whether the user asked for bytecode (``--compile-bytecode``): compiling runs the environment's
    #: python, code from the pack, so it never happens unless asked.
    compile_bytecode: bool = False
    #: Where the environment will live once it is moved into place (``prefix`` is where it is
    #: assembled): what scripts and files that name the environment's own path must say.
    target_prefix: Path | None = None

    @property
    def final_prefix(self) -> Path:
        """The environment's path once in place: ``target_prefix``, else ``prefix`` itself."""
        return self.target_prefix or self.prefix


@dataclass(frozen=True)
class UnpackStep:
    """Work done after the conda packages are installed (wheels, extra files, ...), in ``order``.

    ``prepare``, when given, runs while rattler installs the conda packages, so work that does not
    need the environment costs no extra time: it must not touch ``context.prefix`` (rattler is
    writing it) and keeps what it makes in ``context.scratch``. ``run`` follows the install, and
    an error ``prepare`` raised fails the unpack once the install is over."""

    #: Unique name, shown by ``pixi-pack plugins`` (``"wheels"``).
    name: str
    #: ``run(context)`` after the install (a coroutine function or a plain one).
    run: Callable[[UnpackContext], Awaitable[None] | None]
    #: Steps run in ascending ``order``; the built-in wheel step is 100.
    order: int = 100
    #: One line for ``pixi-pack plugins``.
    description: str = ""
    #: ``prepare(context)`` while rattler installs; must not touch ``context.prefix``.
    prepare: Callable[[UnpackContext], Awaitable[None] | None] | None = None


# --------------------------------------------------------------------------------------------------
# Hook specifications
# --------------------------------------------------------------------------------------------------


@hookspec
def pixi_pack_sources() -> list[ChannelSource]:
    """Return the channel sources this plugin provides.

    Example::

        @hookimpl
        def pixi_pack_sources():
            return [ChannelSource(name="ftp", schemes=("ftp",), open=open_ftp_session)]
    """


@hookspec
def pixi_pack_injectors() -> list[Injector]:
    """Return the injectors this plugin provides (file types accepted by ``--inject``).

    Example::

        @hookimpl
        def pixi_pack_injectors():
            return [Injector(name="rpm", suffixes=(".rpm",), inject=add_rpm_to_plan)]
    """


@hookspec
def pixi_pack_formats() -> list[PackFormat]:
    """Return the output formats this plugin provides (selected with ``--format NAME``).

    Example::

        @hookimpl
        def pixi_pack_formats():
            return [PackFormat(name="zip", write=write_zip, default_output=lambda p: f"env-{p}.zip")]
    """


@hookspec
def pixi_pack_unpack_steps() -> list[UnpackStep]:
    """Return steps that run while and after the conda packages of a pack are installed.

    Example::

        @hookimpl
        def pixi_pack_unpack_steps():
            return [UnpackStep(name="licenses", run=copy_licenses, order=200)]
    """
