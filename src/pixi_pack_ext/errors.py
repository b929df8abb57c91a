"""The exception hierarchy: every failure a user can cause is a ``PixiPackError``.

The CLI turns any ``PixiPackError`` into one red line and its ``exit_code``; anything else is a bug
and keeps its traceback. Catch the base to handle them all, or a branch to handle one kind::

    PixiPackError                    exit 1 (the default of every class below unless noted)
    ├── UsageError                   exit 2: a flag, argument or combination that cannot work
    ├── ConfigError                  config.toml or auth file
    ├── LockFileError                pixi.lock
    ├── PluginError                  a plugin that fails to load or clashes with another
    ├── DownloadError                no source could give a file
    │   ├── AuthenticationError      credentials missing or refused
    │   └── ChecksumError            bytes that do not match the lock
    ├── PrefixError                  --prefix: not a packable environment
    ├── InjectionError               --inject: a file that does not fit
    ├── PythonNotFoundError          no python in the environment to take the pack's wheels
    ├── PackError                    writing the pack
    ├── InvalidPackError             a malformed, hostile or foreign pack
    │   └── UnsafeArchiveError       a member that would escape or is not a plain file
    └── UnpackError                  installing from a valid pack
        └── EnvironmentMismatchError the host lacks a virtual package the environment needs

Ctrl-C (and SIGTERM/SIGHUP) are not errors of this tree: the CLI exits 130 (128 + the signal).
"""

from __future__ import annotations


class PixiPackError(Exception):
    """Base of all errors a user can act on; the message is the whole story, one line."""

    exit_code = 1


class UsageError(PixiPackError):
    """A flag, argument or combination of them that cannot work."""

    exit_code = 2


class ConfigError(PixiPackError):
    """A config.toml or auth file that is missing, malformed or has a wrong type."""


class LockFileError(PixiPackError):
    """A pixi.lock that is missing, malformed, or lacks the requested environment or platform."""


class PluginError(PixiPackError):
    """A plugin that failed to load or declared something another plugin declares too."""


class DownloadError(PixiPackError):
    """A package could not be fetched from any of its sources."""


class AuthenticationError(DownloadError):
    """A server refused the request for lack of (valid) credentials."""


class OversizeDownloadError(DownloadError):
    """A server sent more bytes than the lock records for the file."""


class ChecksumError(DownloadError):
    """A downloaded or cached file does not match the hash the lock records."""


class PrefixError(PixiPackError):
    """An installed environment (``--prefix``) that is not a conda prefix or cannot be packed."""


class InjectionError(PixiPackError):
    """An injected file does not fit the environment (platform, dependencies, format)."""


class PythonNotFoundError(PixiPackError, ValueError):
    """An environment's python cannot take the pack's wheels (none, several, or of an unknown layout).

    Also a ``ValueError`` for callers that caught it as one before it joined this tree.
    """


class PackError(PixiPackError):
    """Writing the pack failed."""


class InvalidPackError(PixiPackError):
    """A pack that is malformed, hostile, for another platform or of an unknown version."""


class UnsafeArchiveError(InvalidPackError):
    """An archive member that would write outside the destination or is not a plain file/dir."""


class UnpackError(PixiPackError):
    """Installing the environment from a valid pack failed."""


class EnvironmentMismatchError(UnpackError):
    """The host lacks a virtual package (glibc, cuda, osx, ...) that the environment needs."""


def one_line_reason(exc: BaseException) -> str:
    """An error from rattler in one line: its first line, and the root of its ``Caused by:`` chain
    (where the real reason, such as "No space left on device", is)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    causes = [line.removeprefix("Caused by:").strip() for line in lines[1:] if line.startswith("Caused by:")]
    return f"{lines[0]} ({causes[-1]})" if causes and causes[-1] not in lines[0] else lines[0]
