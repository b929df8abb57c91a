"""Import, while the downloads run, the modules a pack needs only once they are done.

The event loop mostly waits on the network during a fetch, and an import releases the GIL while
it reads files, so loading the index writer, the SBOM, the manifest and the output format then
shortens the run instead of delaying its first request (``pixi-pack`` imports them where they are
used; this only makes that import find them loaded).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterable

#: What every pack imports after its downloads (the format's own modules are added by the caller).
AFTER_FETCH = (
    "pixi_pack_ext.channel",
    "pixi_pack_ext.manifest",
    "pixi_pack_ext.archive",
    "pixi_pack_ext.pack.sbom",
    "packageurl",
)


def preload_in_background(modules: Iterable[str] = AFTER_FETCH) -> threading.Thread:
    """Start a daemon thread importing ``modules``; a failure is left to the import where the
    module is used, which reports it."""

    def run() -> None:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=run, name="pixi-pack-preload", daemon=True)
    thread.start()
    return thread
