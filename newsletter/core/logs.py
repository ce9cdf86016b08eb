"""Logging: readable lines on a terminal, one JSON object per line otherwise."""

from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    FIELDS = ("delivery_id", "endpoint_id", "feed", "worker")

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self.FIELDS:
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(verbose: bool = False, *, json_logs: bool | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    handler.setFormatter(
        JsonFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("alembic", "apscheduler.executors.default", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "Adding job tentatively", "Added job ..." at every start: only with --verbose
    logging.getLogger("apscheduler.scheduler").setLevel(
        logging.DEBUG if verbose else logging.WARNING
    )
