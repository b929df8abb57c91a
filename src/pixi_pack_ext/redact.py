"""Keep secrets out of every message: URLs lose their credentials, known secrets become ``***``."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

_TOKEN_PATH = re.compile(r"/t/[^/]+/")
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


def redact(text: str) -> str:
    """Mask every registered secret in ``text``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = None
        return True
