"""The relay's log: a line per request and per listener connecting or leaving, as text for a
person or as JSON for a log pipeline (`hooktap relay --log-format json`).

What goes in is chosen field by field, never copied wholesale from a request: no header (so
no Authorization, no channel token, no relay key), no query string (senders put secrets in
them), no body. A channel id is logged; it is derived from a hash of the token and proves
nothing.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

LogFormat = Literal["text", "json"]

log = logging.getLogger("hooktap.relay")


def note(level: int, event: str, message: str, **fields: object) -> None:
    """Log one event: `message` for people, `event` and `fields` for machines."""
    log.log(level, message, extra={"event": event, "fields": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line, whatever logged it (hooktap, aiohttp, asyncio): a pipeline
    parses every line, and a traceback stays inside its line as a string."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.name != log.name:
            line["logger"] = record.name
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _utc(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def setup(fmt: LogFormat) -> None:
    """Send every log line to stderr in `fmt`: hooktap's from INFO up, others' warnings."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("hooktap").setLevel(logging.INFO)


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log, as `note` events. For AppRunner(access_log_class=...)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = request.rel_url.raw_path  # the query is left out on purpose: see the module
        remote = request.remote or ""
        duration_ms = round(time * 1000, 1)
        note(
            logging.INFO,
            "request",
            f"{request.method} {path} {response.status} {duration_ms:g} ms from {remote}",
            method=request.method,
            path=path,
            status=response.status,
            duration_ms=duration_ms,
            remote=remote,
            bytes_in=request.content_length or 0,
            bytes_out=response.body_length,
        )
