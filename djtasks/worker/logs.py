"""Console logging for worker and supervisor processes, unless the project's LOGGING already handles it."""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s [%(processName)s %(process)d] %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger("djtasks")
    root.setLevel(level.upper())
    if not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    os.environ.setdefault("DJTASKS_LOG_LEVEL", level.upper())
