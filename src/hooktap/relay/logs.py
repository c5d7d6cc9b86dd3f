"""The relay's log: a line per request and per listener connecting or leaving, as text for a
person or as JSON for a log pipeline (`hooktap relay --log-format json`).

What goes in is chosen field by field, never copied wholesale from a request: no header (so
no Authorization, no channel token, no relay key), no query string (senders put secrets in
them), no body. A channel id is logged; it is derived from a hash of the token and proves
nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from typing import Literal

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, ResponseKey, StreamResponse

LogFormat = Literal["text", "json"]

log = logging.getLogger("hooktap.relay")

# Why a response refuses its request, for the log line: set by whoever refuses (the error
# middleware, a parse error's handler); the response's own body is never read back.
REFUSAL = ResponseKey("refusal", str)


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


class Limiter:
    """At most `lines` log lines per `window` seconds; the rest are counted, and once the
    window is over one line says how many were left out.

    Anyone on the internet can make the relay refuse a request, so a line per refusal with
    no bound is a way to fill the operator's disk (and to drown the lines that matter)."""

    def __init__(self, what: str, lines: int = 20, window: float = 10.0) -> None:
        self.what = what
        self.lines = lines
        self.window = window
        self._started = -math.inf
        self._logged = 0
        self._left_out = 0
        self._flush: asyncio.TimerHandle | None = None

    def allow(self) -> bool:
        now = time.monotonic()
        if now >= self._started + self.window:
            self._report()
            self._started, self._logged = now, 0
        if self._logged < self.lines:
            self._logged += 1
            return True
        self._left_out += 1
        if self._flush is None:
            self._schedule(self._started + self.window - now)
        return False

    def _schedule(self, delay: float) -> None:
        """Say how many were left out when the window ends, even if no refusal follows;
        outside an event loop the next allow() says it instead."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._flush = loop.call_later(max(delay, 0.0), self._report)

    def _report(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._left_out:
            left_out, self._left_out = self._left_out, 0
            note(
                logging.WARNING,
                "log-limited",
                f"{left_out} more {self.what} in {self.window:g} s were left out of the log "
                f"(at most {self.lines} are logged per {self.window:g} s)",
                what=self.what,
                left_out=left_out,
                window_s=self.window,
            )


# One per process: whichever relay or ingress refuses, the log gets the same bound.
refusals = Limiter("refused requests")
failures = Limiter("failed requests")
crowding = Limiter("connection-limit notes")


def refused(status: int, reason: str, remote: str) -> None:
    """One line for a request refused before its method and path could be read (a parse
    error); rate-limited with the access log's refusals."""
    if refusals.allow():
        note(
            logging.INFO,
            "refused",
            f"{status} from {remote or '?'}: {reason}",
            status=status,
            remote=remote,
            reason=reason,
        )


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log, as `note` events. For AppRunner(access_log_class=...).

    Lines for refused or failed requests (4xx, 5xx) share the refusals' rate limit: a flood
    of bad requests costs the log a bounded number of lines."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if response.status >= 400 and not refusals.allow():
            return
        path = request.rel_url.raw_path  # the query is left out on purpose: see the module
        remote = request.remote or ""
        duration_ms = round(time * 1000, 1)
        reason = response.get(REFUSAL)
        note(
            logging.INFO,
            "request",
            f"{request.method} {path} {response.status} {duration_ms:g} ms from {remote}"
            + (f": {reason}" if reason else ""),
            method=request.method,
            path=path,
            status=response.status,
            duration_ms=duration_ms,
            remote=remote,
            bytes_in=request.content_length or 0,
            bytes_out=response.body_length,
            **({"reason": reason} if reason else {}),
        )
