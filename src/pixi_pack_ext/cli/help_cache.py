"""``--help`` as it was last rendered for the same inputs, without importing rich-click.

Rendering the help needs rich-click, rich and the plugin manager (formats add their own flags):
most of a second's tenth before a line is printed. The text only changes when what it is made from
changes, so the first ``--help`` keeps what it printed (``startup_cache``, in the user's cache
folder), and later ones print that while everything it was made from is as it was:

- what is installed (``startup_cache.installation_key``: a plugin installed, upgraded or removed
  shows at once);
- the modification times of the tool's own modules that shape the help (an editable install);
- what the output looks like: terminal or not, its size, its encoding, and the environment
  variables that steer colours, widths and plugin loading.

A help that printed anything on standard error (a broken plugin's warning) is not kept, so the
warning shows every time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .. import startup_cache

KIND = "help"
#: Environment variables that can change the help's text or colours contain one of these.
ENV_MARKERS = ("COLOR", "TERM", "COLUMNS", "LINES", "TTY", "RICH", "CLICK", "PIXI_PACK", "JUPYTER")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The tool's own folders whose modules shape the help.
_SHAPERS = ("cli", os.path.join("builtin", "formats"))


def help_key(prog: str) -> str:
    """Everything the help of ``prog`` is made from, as one text (see the module)."""
    parts = [prog, startup_cache.installation_key()]
    for folder in _SHAPERS:
        with contextlib.suppress(OSError), os.scandir(os.path.join(_PACKAGE, folder)) as entries:
            parts += sorted(f"{e.name}@{e.stat().st_mtime_ns}" for e in entries if e.name.endswith(".py"))
    out = sys.stdout
    try:
        size = os.get_terminal_size(out.fileno())
        shape = f"{size.columns}x{size.lines}"
    except (OSError, ValueError, AttributeError):
        shape = "-"
    parts += [f"tty={out.isatty()}", f"size={shape}", f"encoding={getattr(out, 'encoding', '')}"]
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if any(m in k.upper() for m in ENV_MARKERS))
    return "\n".join(parts)


def print_kept(prog: str) -> bool:
    """Print the kept help of ``prog`` when its inputs are unchanged; whether it did."""
    text = startup_cache.read(KIND, help_key(prog))
    if text is None:
        return False
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except UnicodeEncodeError:  # nothing was written: the terminal cannot show it, render anew
        return False
    return True


class _Tee:
    """Passes writes through to ``stream`` and keeps a copy; looks like ``stream`` otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def render_and_keep(prog: str, run: Callable[[], None]) -> None:
    """Run the command (which prints the help and raises ``SystemExit``) and keep what it printed."""
    key = help_key(prog)  # before the run: it must describe the inputs the help was made from
    out, err = _Tee(sys.stdout), _Tee(sys.stderr)
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    code: object = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.stdout, sys.stderr = out.stream, err.stream
    if code in (0, None) and not "".join(err.parts):
        startup_cache.keep(KIND, key, "".join(out.parts))
    raise SystemExit(code)
