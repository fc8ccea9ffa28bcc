"""Log output of a host process: `--log-level` and `--log-format text|json`, on stderr
(stdout is kept for the ready line and the host's own status lines)."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["configure_logging"]

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (epoch seconds), level, logger, message[, error]."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=True)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Send the `paglets` loggers to stderr at `level` (debug|info|warning|error)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(_TEXT, datefmt="%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    logger = logging.getLogger("paglets")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, level.upper(), logging.INFO))
    logger.propagate = False
