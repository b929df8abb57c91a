"""The local path a ``file://`` URL's path names, as ``urllib.request.url2pathname`` gives it.

``urllib.request`` loads ``http.client`` and the email package, which an unpack otherwise never
needs; the conversion itself is ``nturl2path``'s on Windows and unquoting elsewhere, the same
choice ``urllib.request`` makes.
"""

from __future__ import annotations

import os

if os.name == "nt":  # pragma: no cover - Windows only
    from nturl2path import url2pathname
else:
    from urllib.parse import unquote as url2pathname

__all__ = ["url2pathname"]
