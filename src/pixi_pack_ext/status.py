"""Status lines: what a step that takes a while is doing, shown by default (not with -q).

Library code logs them to ``status`` (the logger named ``STATUS_LOGGER``); the CLI prints them as
plain lines. Without the CLI they are ordinary info records.
"""

from __future__ import annotations

import logging

STATUS_LOGGER = "pixi_pack_ext.status"

status = logging.getLogger(STATUS_LOGGER)
