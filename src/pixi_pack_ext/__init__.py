"""pixi-pack-ext: pack a locked pixi environment and unpack it where no channel is reachable."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pixi-pack-ext")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

#: The pack layout version written to and accepted from ``pixi-pack.json``.
PACK_FORMAT_VERSION = "1"
