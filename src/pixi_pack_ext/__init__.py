"""pixi-pack-ext: pack a locked pixi environment and unpack it where no channel is reachable.

The names in ``__all__`` are the public API for plugin authors and scripts; everything else in the
package is internal and may change. They are loaded on first use, so importing the package (as
``pixi-pack --version`` does) costs nothing more than reading the version::

    from pixi_pack_ext import ChannelSource, DownloadError, Settings, hookimpl

A format plugin that installs environments itself (as the OCI plugin does) finds the helpers it
needs in ``pixi_pack_ext.format_toolkit``; a test of a plugin finds an offline conda world in
``pixi_pack_ext.testing``.
"""

from __future__ import annotations

# Not typing's, nor importlib.metadata: those two take longer to import than the
# rest of the start of a console script, and a Ctrl-C then would end in a traceback from them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The distribution's version, as pyproject.toml declares it (tests/test_startup.py checks that both
#: agree). Written out rather than read from the installed metadata: importing
#: ``importlib.metadata`` and searching the installed distributions cost more than the rest of a
#: ``pixi-pack --version``.
__version__ = "0.1.0"

#: The pack layout version written to and accepted from ``pixi-pack.json``.
PACK_FORMAT_VERSION = "1"

#: Public name -> the module that defines it.
_EXPORTS = {
    # hooks and the records they return
    "hookimpl": "hookspecs",
    "ChannelSource": "hookspecs",
    "DownloadSink": "hookspecs",
    "SourceSession": "hookspecs",
    "Injector": "hookspecs",
    "PackFormat": "hookspecs",
    "FormatOption": "hookspecs",
    "WriteRequest": "hookspecs",
    "PackFiles": "hookspecs",
    "UnpackStep": "hookspecs",
    "UnpackContext": "hookspecs",
    # what the core hands to plugins
    "Settings": "config",
    "S3Options": "config",
    "PackPlan": "plan",
    "CondaPackage": "plan",
    "PypiPackage": "plan",
    "redact_url": "redact",
    "register_secret": "redact",
    # the error tree (errors.py draws it)
    "PixiPackError": "errors",
    "UsageError": "errors",
    "ConfigError": "errors",
    "LockFileError": "errors",
    "PluginError": "errors",
    "DownloadError": "errors",
    "AuthenticationError": "errors",
    "ChecksumError": "errors",
    "PrefixError": "errors",
    "InjectionError": "errors",
    "PythonNotFoundError": "errors",
    "PackError": "errors",
    "InvalidPackError": "errors",
    "UnsafeArchiveError": "errors",
    "UnpackError": "errors",
    "EnvironmentMismatchError": "errors",
}

__all__ = [
    "PACK_FORMAT_VERSION",
    "AuthenticationError",
    "ChannelSource",
    "ChecksumError",
    "CondaPackage",
    "ConfigError",
    "DownloadError",
    "DownloadSink",
    "EnvironmentMismatchError",
    "FormatOption",
    "InjectionError",
    "Injector",
    "InvalidPackError",
    "LockFileError",
    "PackError",
    "PackFiles",
    "PackFormat",
    "PackPlan",
    "PixiPackError",
    "PluginError",
    "PrefixError",
    "PypiPackage",
    "PythonNotFoundError",
    "S3Options",
    "Settings",
    "SourceSession",
    "UnpackContext",
    "UnpackError",
    "UnpackStep",
    "UnsafeArchiveError",
    "UsageError",
    "WriteRequest",
    "__version__",
    "hookimpl",
    "redact_url",
    "register_secret",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .config import S3Options, Settings
    from .errors import (
        AuthenticationError,
        ChecksumError,
        ConfigError,
        DownloadError,
        EnvironmentMismatchError,
        InjectionError,
        InvalidPackError,
        LockFileError,
        PackError,
        PixiPackError,
        PluginError,
        PrefixError,
        PythonNotFoundError,
        UnpackError,
        UnsafeArchiveError,
        UsageError,
    )
    from .hookspecs import (
        ChannelSource,
        DownloadSink,
        FormatOption,
        Injector,
        PackFiles,
        PackFormat,
        SourceSession,
        UnpackContext,
        UnpackStep,
        WriteRequest,
        hookimpl,
    )
    from .plan import CondaPackage, PackPlan, PypiPackage
    from .redact import redact_url, register_secret
