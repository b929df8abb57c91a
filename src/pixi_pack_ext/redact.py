"""Keep secrets out of every message: URLs lose their credentials, known secrets become ``***``."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

_TOKEN_PATH = re.compile(r"/t/[^/]+/")
#: Credentials inside any URL in free text (a library's log line, an error it raised): the user
#: info of ``scheme://user:pw@host`` and a conda token path ``/t/TOKEN/``.
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_URL_TOKEN_PATH = re.compile(r"(://[^/\s]+(?:/[^\s]*?)?)/t/[^/\s]+/")
_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret so that ``redact`` masks it wherever it appears."""
    if secret and len(secret) >= 4:
        _secrets.add(secret)


def redact_url(url: str) -> str:
    """``https://user:pw@host/t/TOKEN/x`` -> ``https://***@host/t/***/x``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = _TOKEN_PATH.sub("/t/***/", parts.path)
    return redact(urlunsplit((parts.scheme, netloc, path, parts.query and "***", parts.fragment)))


def public_url(url: str) -> str:
    """``url`` without anything secret, to be written down (a pack's repodata, conda-meta): no user
    info, no conda token path segment, no query or fragment. ``https://u:pw@host/t/TOKEN/x?sig=1``
    -> ``https://host/x``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = _TOKEN_PATH.sub("/", parts.path)
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def redact(text: str) -> str:
    """Mask every registered secret in ``text``, and the credentials of any URL in it."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    if "://" in text:
        text = _URL_TOKEN_PATH.sub(r"\1/t/***/", _URL_USERINFO.sub(r"\1***@", text))
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message of every record (ours and
    every library's: httpx logs each request's URL, conda token path and all)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True
