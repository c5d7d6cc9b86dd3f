"""HAR 1.2 out and in: stored deliveries as an HTTP Archive (`hooktap deliveries --har`), and
the requests of a HAR file, hooktap's or any other tool's, as deliveries to replay
(`hooktap replay --har`), so webhooks captured in a browser, in mitmproxy or by a teammate
become replayable.

Pure: no I/O and no clock. The spec: http://www.softwareishard.com/blog/har-12-spec/. What
HAR has no field for (the signature verdict, the state, the target, every attempt) goes under
`_hooktap`: custom fields start with `_`, and readers other than hooktap ignore them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from hooktap import __version__
from hooktap.filters import Filter
from hooktap.http_grammar import is_field_value, is_token
from hooktap.listen.routes import Decision, Outcome, type_matches
from hooktap.pivotal.envelope import parse_envelope
from hooktap.pivotal.signing import Verdict, signature_header, verify
from hooktap.records import Attempt, Delivery, Headers, header_value

CREATOR = {"name": "hooktap", "version": __version__}
NOT_FORWARDED = ("filtered", "unrouted")
# The webhook URL's path: /c/{channel}, then the tail a sender appended (routes it to the
# target's path + tail, as the listener does).
_WEBHOOK_PATH = re.compile(r"/c/[^/?#]+(/[^?#]*)?").fullmatch
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# A Host header worth copying into the exported URL: a name, an IPv4 or a bracketed IPv6
# address, and a port. The header is the sender's: `x/c/zz/admin?` would move the path.
_HOST_PORT = re.compile(
    r"(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
)


class HarError(ValueError):
    """The file as a whole is not a HAR document hooktap can read; the message says why."""


# --- bodies ------------------------------------------------------------------------------------
# HAR 1.2 gives `content` (the response) an `encoding` ("base64") but `postData` (the request)
# only `text`, "plain text posted data": a request body that is not UTF-8 has no spec'd form.
# What readers do: Chrome and Firefox write the text lossily (U+FFFD for each bad byte);
# HAR 1.3's proposal, Reqable and an HTTP Toolkit change add `encoding: "base64"` to postData,
# which mitmproxy's reader (mitmproxy/io/har.py) ignores: it would send the base64 text itself.
# mitmproxy writes (savehar.py) and reads back the body decoded as UTF-8 with surrogateescape:
# each byte that is not UTF-8 becomes a lone surrogate U+DC80..U+DCFF (a \udcXX escape in the
# JSON), and its reader turns such text back into the same bytes (set_text falls back to
# UTF-8 with surrogateescape, and adds charset=utf-8 to its copy of the Content-Type). So
# hooktap writes that: byte-exact here and in mitmproxy (checked with mitmproxy 11.0's
# io.read_flows_from_paths), and any JSON.parse (browsers' devtools) opens the file. It reads
# both forms. The price: parsers that refuse lone surrogates (Rust's serde_json) refuse such a
# file; that happens only when a body is not UTF-8, and no Pivotal event is.


def body_text(body: bytes) -> str:
    return body.decode("utf-8", "surrogateescape")


def _post_body(post: dict[str, Any]) -> bytes:
    text = post.get("text")
    if not isinstance(text, str):
        if post.get("params"):
            raise ValueError(
                "its postData has params but no text: the body's exact bytes are not in the file"
            )
        raise ValueError("its postData has no text (the request body)")
    if post.get("encoding") == "base64":  # HAR 1.3 proposal, Reqable, HTTP Toolkit
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("its postData says base64 but its text is not base64") from None
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"its postData text holds {text[exc.start]!r}, which is no byte of a body"
        ) from None


def _content(body: bytes, mime: str) -> dict[str, Any]:
    """A response body: text when it is UTF-8, else base64, which HAR 1.2 allows here."""
    content: dict[str, Any] = {"size": len(body), "mimeType": mime}
    try:
        content["text"] = body.decode("utf-8")
    except UnicodeDecodeError:
        content["text"] = base64.b64encode(body).decode("ascii")
        content["encoding"] = "base64"
    return content


# --- deliveries out -----------------------------------------------------------------------------


def _iso(ts: float) -> str:
    """ISO 8601 in UTC with milliseconds, as browsers write startedDateTime."""
    moment = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def webhook_url(d: Delivery) -> str:
    """The URL the sender posted to: the relay's Host, /c/{channel}, the tail and the query,
    as received. HAR wants an absolute URL; the scheme is the one a proxy in front said
    (cloudflared, Caddy), else http, the embedded relay's."""
    proto = (header_value(d.headers, "x-forwarded-proto") or "").split(",")[0].strip().lower()
    scheme = proto if proto in ("http", "https") else "http"
    host = header_value(d.headers, "host") or ""
    if not _HOST_PORT.fullmatch(host):
        host = "localhost"
    path = f"/c/{d.channel}{d.path}" if d.channel else d.path or "/"
    return f"{scheme}://{host}{path}" + (f"?{d.query}" if d.query else "")


def _pairs(headers: Headers) -> list[dict[str, str]]:
    return [{"name": n, "value": v} for n, v in headers]


def _response(d: Delivery, latest: Attempt | None) -> tuple[dict[str, Any], float]:
    """The response of the latest attempt, and its time. None came back (not forwarded, a
    connection error, a timeout): status 0 with `_error`, as browsers and mitmproxy write a
    request that got no response."""
    if latest is None or latest.status is None:
        if latest is not None:
            error = latest.error or "no response"
        elif d.state in NOT_FORWARDED:
            error = Decision(cast(Outcome, d.state), None).reason
        else:
            error = f"not forwarded yet ({d.state})"
        response = {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_error": error,
        }
        return response, latest.duration_ms if latest else 0.0
    status = latest.status
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    headers = latest.response_headers
    body = latest.response_body
    response = {
        "status": status,
        "statusText": reason,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": _pairs(headers),
        "content": _content(body, header_value(headers, "content-type") or "x-unknown"),
        "redirectURL": header_value(headers, "location") or "",
        "headersSize": -1,
        "bodySize": len(body),
    }
    return response, latest.duration_ms


def entry(d: Delivery, attempts: list[Attempt]) -> dict[str, Any]:
    """One HAR entry: the request as the relay received it, the latest attempt's response."""
    response, elapsed = _response(d, attempts[-1] if attempts else None)
    elapsed = max(0.0, round(elapsed, 3))
    request = {
        "method": d.method,
        "url": webhook_url(d),
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": _pairs(d.headers),
        "queryString": [
            {"name": k, "value": v} for k, v in parse_qsl(d.query, keep_blank_values=True)
        ],
        # Always written, even empty, so a replay sends exactly what came (an empty body too).
        "postData": {
            "mimeType": header_value(d.headers, "content-type") or "",
            "text": body_text(d.body),
        },
        "headersSize": -1,
        "bodySize": len(d.body),
    }
    return {
        "startedDateTime": _iso(d.received_at),
        "time": elapsed,
        "request": request,
        "response": response,
        "cache": {},
        # hooktap times the whole exchange with the handler, not its phases: all of it is
        # the wait, so `time` is still the sum the spec asks for.
        "timings": {"send": 0, "wait": elapsed, "receive": 0},
        "_hooktap": {
            "id": d.id,
            "channel": d.channel,
            "path": d.path,
            "query": d.query,
            "received_at": d.received_at,
            "event_type": d.event_type,
            "event_id": d.event_id,
            "svix_id": d.svix_id,
            "signature": d.signature,
            "signature_reason": d.signature_reason,
            "state": d.state,
            "target": d.target,
            "body_sha256": hashlib.sha256(d.body).hexdigest(),
            "attempts": [
                {
                    "kind": a.kind,
                    "started": _iso(a.started_at),
                    "target_url": a.target_url,
                    "status": a.status,
                    "duration_ms": round(a.duration_ms, 3),
                    "error": a.error,
                    "note": a.note,
                }
                for a in attempts
            ],
        },
    }


def dumps(obj: Any) -> str:
    """JSON that encodes as UTF-8: readable text, with the lone surrogates of a non-UTF-8
    body escaped (\\udcXX), since UTF-8 cannot carry them raw."""
    text = json.dumps(obj, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def document(entries: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The HAR document in pieces, one entry at a time: a long history is never held whole."""
    yield '{"log": {"version": "1.2", "creator": ' + dumps(CREATOR) + ', "entries": ['
    for i, e in enumerate(entries):
        yield ("\n" if i == 0 else ",\n") + dumps(e)
    yield "\n]}}\n"


# --- requests in -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HarRequest:
    """One entry's request, ready to send again."""

    index: int  # its place in log.entries
    method: str
    url: str
    tail: str  # after /c/{channel} when the URL is a hooktap webhook URL, else ""
    query: str
    headers: Headers
    body: bytes
    started_at: float | None
    status: int | None  # its response's; None when it got none (status 0)
    hooktap: dict[str, Any]  # its `_hooktap`, when hooktap wrote it; else empty

    @property
    def where(self) -> str:
        return f"entries[{self.index}]"

    @property
    def delivery_id(self) -> str | None:
        value = self.hooktap.get("id")
        return value if isinstance(value, str) else None

    @property
    def state(self) -> str | None:
        value = self.hooktap.get("state")
        return value if isinstance(value, str) else None

    @property
    def event_type(self) -> str | None:
        envelope = parse_envelope(self.body)
        return envelope.type if envelope else None

    def verdict(self, secret: str | None) -> Verdict:
        """Its signature judged as on arrival: with the secret in force, at its start time."""
        return verify(secret, self.headers, self.body, now=self.started_at)

    def delivery(self, verdict: Verdict) -> Delivery:
        """As a Delivery for replay's one send path; never stored as one."""
        envelope = parse_envelope(self.body)
        return Delivery(
            id=self.delivery_id or self.where,
            received_at=self.started_at or 0.0,
            method=self.method,
            path=self.tail,
            query=self.query,
            headers=list(self.headers),
            body=self.body,
            signature=verdict.status,
            signature_reason=verdict.reason,
            svix_id=signature_header(self.headers, "id"),
            event_id=envelope.id if envelope else None,
            event_type=envelope.type if envelope else None,
            event_created_at=envelope.created_at if envelope else None,
        )


@dataclass(frozen=True)
class BadEntry:
    index: int
    reason: str

    @property
    def where(self) -> str:
        return f"entries[{self.index}]"


def read(data: bytes) -> list[HarRequest | BadEntry]:
    """The entries of a HAR file, each a request or why it cannot be sent; HarError when the
    file is not a HAR document at all."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))  # the spec lets writers add a BOM
    except UnicodeDecodeError as exc:
        raise HarError(f"not UTF-8 at byte {exc.start}: HAR files are UTF-8") from None
    except json.JSONDecodeError as exc:
        raise HarError(f"not JSON: {exc}") from None
    except ValueError as exc:  # an integer of more than 4,300 digits, say
        raise HarError(f"not JSON hooktap can read: {exc}") from None
    except RecursionError:
        raise HarError("not JSON hooktap can read: nested too deeply") from None
    log = doc.get("log") if isinstance(doc, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise HarError('not a HAR file: it has no "log": {"entries": [...]}')
    version = log.get("version") or "1.1"  # the spec: empty means 1.1
    if not isinstance(version, str) or not version.startswith("1."):
        raise HarError(f"HAR version {version!r}: hooktap reads HAR 1.x")
    out: list[HarRequest | BadEntry] = []
    for i, raw in enumerate(entries):
        try:
            out.append(_request(i, raw))
        except ValueError as exc:
            out.append(BadEntry(i, str(exc)))
    return out


def _request(index: int, raw: object) -> HarRequest:
    if not isinstance(raw, dict):
        raise ValueError("it is not an object")
    req = raw.get("request")
    if not isinstance(req, dict):
        raise ValueError("it has no request")
    method, url = req.get("method"), req.get("url")
    if not isinstance(method, str) or not is_token(method):
        raise ValueError(f"its request.method {method!r} is not an HTTP method")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"its request.url {url!r} is not an absolute http(s) URL")
    post = req.get("postData")
    if not isinstance(post, dict):
        raise ValueError("it has no postData (the request body), so there is nothing to send")
    parts = urlsplit(url)
    webhook = _WEBHOOK_PATH(parts.path)
    response = raw.get("response")
    status = response.get("status") if isinstance(response, dict) else None
    custom = raw.get("_hooktap")
    hooktap = custom if isinstance(custom, dict) else {}
    # Captured elsewhere, a URL's path is where it went there: the target's path stands.
    tail, query = (webhook.group(1) or "") if webhook else "", parts.query
    # Written by hooktap, the tail and query as received: the URL's host came from the
    # sender's Host header, so the URL is not to be trusted for where the path starts.
    saved_path, saved_query = hooktap.get("path"), hooktap.get("query")
    if isinstance(saved_path, str) and (not saved_path or saved_path.startswith("/")):
        tail = saved_path
        query = saved_query if isinstance(saved_query, str) else ""
    return HarRequest(
        index=index,
        method=method,
        url=url,
        tail=tail,
        query=query,
        headers=_headers(req.get("headers")),
        body=_post_body(post),
        started_at=_started(raw.get("startedDateTime")),
        status=status if isinstance(status, int) and status > 0 else None,
        hooktap=hooktap,
    )


def _headers(raw: object) -> Headers:
    if not isinstance(raw, list):
        raise ValueError("its request.headers is not a list")
    out: Headers = []
    for h in raw:
        # {"name", "value"} as the spec and browsers write it; [name, value] as Slack does.
        name = value = None
        if isinstance(h, dict):
            name, value = h.get("name"), h.get("value")
        elif isinstance(h, list) and len(h) == 2:
            name, value = h
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError(f"its request header {h!r} is not a name and a value")
        if name.startswith(":"):
            continue  # HTTP/2's pseudo-headers (:authority...): the request line, not headers
        if not is_token(name) or not is_field_value(value):
            raise ValueError(f"its request header {name!r}: {value!r} is not valid HTTP")
        out.append((name, value))
    return out


def _started(raw: object) -> float | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def matches(f: Filter, req: HarRequest, signature: str, now: float | None = None) -> bool:
    """The filter language over a HAR entry, as the store applies it to history: type from
    the body's envelope, status from its response (or hooktap's state), sig the verdict on
    arrival, since its start, words in its body (ASCII case-insensitive)."""
    if f.types and not any(type_matches(p, req.event_type) for p in f.types):
        return False
    if f.statuses and not any(_status_matches(s, req) for s in f.statuses):
        return False
    if f.signatures and signature not in f.signatures:
        return False
    cutoff = f.cutoff(now)
    if cutoff is not None and (req.started_at is None or req.started_at < cutoff):
        return False
    body = req.body.lower()
    return all(word.encode("utf-8", "surrogateescape").lower() in body for word in f.text)


def _status_matches(wanted: str, req: HarRequest) -> bool:
    if wanted in NOT_FORWARDED:
        return req.state == wanted
    if req.status is None:
        return wanted == "err" and req.state not in NOT_FORWARDED
    if wanted.endswith("xx"):
        return req.status // 100 == int(wanted[0])
    return wanted.isdigit() and req.status == int(wanted)
