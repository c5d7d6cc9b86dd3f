"""How deliveries read on screen: pure functions from records to text, no Textual, no I/O.

Kept apart from the widgets so the words the inspector uses (times, verdicts, the rules a
delivery broke, a body shown as JSON or hex, a curl command) are tested as plain strings, and
so the list, the detail pane and the copy keys cannot drift apart in how they say things.
"""

from __future__ import annotations

import base64
import difflib
import json
import re
import shlex
import time
from dataclasses import dataclass

# NOT_FORWARDED: the states of a delivery stored and answered 200 without reaching any
# handler (routes.py decides); shown dim, with the state in place of a status.
from hooktap.filters import NOT_FORWARDED
from hooktap.http_grammar import HOP_BY_HOP
from hooktap.pivotal.retries import would_retry
from hooktap.pivotal.rules import broken_rules
from hooktap.records import Attempt, Delivery, Headers, header_value
from hooktap.store import Summary

# Bodies above this are shown without highlighting (pygments on a megabyte stalls the UI).
HIGHLIGHT_LIMIT = 64 * 1024
# Bodies above this are cut for display; `y` and `c` still copy every byte.
SHOW_LIMIT = 512 * 1024
HEX_LIMIT = 4096

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SIGNATURE_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")


def clock_text(ts: float, utc: bool, *, date: bool = True) -> str:
    """Month-day and time: a 90-day history needs the date, a live feed needs the seconds
    (and a narrow list only those)."""
    moment = time.gmtime(ts) if utc else time.localtime(ts)
    return time.strftime("%m-%d %H:%M:%S" if date else "%H:%M:%S", moment)


def full_time(ts: float, utc: bool) -> str:
    moment = time.gmtime(ts) if utc else time.localtime(ts)
    zone = "UTC" if utc else time.strftime("%Z", moment)
    return time.strftime("%Y-%m-%d %H:%M:%S", moment) + f".{int(ts % 1 * 1000):03d} {zone}"


def duration_text(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s"


def target_text(url: str) -> str:
    """A target as a person types it: `localhost:8001/hooks`; https stays spelled out."""
    return url.removeprefix("http://")


def status_text(status: int | None, error: str | None, state: str) -> str:
    """What the handler did: a code, err, not yet (three characters), or, for a delivery that
    went to no handler, why (its state: filtered, unrouted)."""
    if state in NOT_FORWARDED:
        return state
    if status is not None:
        return str(status)
    if state == "interrupted":
        return "int"
    if error:
        return "err"
    return "…"


def status_kind(status: int | None, error: str | None, state: str) -> str:
    """ok | fail | pending | not-forwarded: which colour a status gets (.tcss component classes)."""
    if state in NOT_FORWARDED:
        return "not-forwarded"
    if status is not None and 200 <= status <= 299:
        return "ok"
    if status is None and not error and state in ("received", "dispatched"):
        return "pending"
    return "fail"


def signature_kind(verdict: str) -> str:
    return {"valid": "ok", "invalid": "fail", "expired": "fail"}.get(verdict, "other")


def short_id(value: str | None, width: int = 14) -> str:
    if not value:
        return "-"
    return value if len(value) <= width else value[: width - 1] + "…"


@dataclass(frozen=True)
class Marks:
    """The flags a list row carries: each is a rule the delivery broke, or its replays."""

    retry: bool
    duplicate: bool
    replays: int
    held: bool = False  # waited at the relay past svix's tolerance (the note says what followed)

    @classmethod
    def of(cls, row: Summary) -> Marks:
        forwarded = row.status is not None or row.error is not None
        retry = forwarded and would_retry(row.status, row.duration_ms, row.error)
        retry = retry or row.state == "interrupted"
        held = row.note.startswith("held ")
        return cls(retry, row.duplicate, max(0, row.attempts - 1), held)


def settled_by(attempts: list[Attempt]) -> Attempt | None:
    """The newest re-send, when it went as Pivotal counts success (2xx within 10 s): the
    handler takes this delivery now, and what its original forward broke is history."""
    resends = [a for a in attempts if a.kind != "forward"]
    last = resends[-1] if resends else None
    if last is None or would_retry(last.status, last.duration_ms, last.error):
        return None
    return last


def rules(
    delivery: Delivery | Summary, forward: Attempt | None, duplicate: bool, *, settled: bool = False
) -> list[str]:
    """The rules this delivery broke, as the log lines and JSON stream word them.

    `settled` (a later re-send succeeded): the rules about the handler's answer are left out,
    as for one not answered yet; the signature and svix-id ones still hold. So are they for one
    that went to no handler: the listener answered it 200 itself."""
    waiting = ("received", "dispatched", *NOT_FORWARDED)
    if settled or (forward is None and delivery.state in waiting):
        status = duration = error = None
        pending = True
    else:
        status = forward.status if forward else None
        duration = forward.duration_ms if forward else None
        error = forward.error if forward else "listener stopped mid-forward"
        pending = False
    found = broken_rules(
        status=status,
        duration_ms=duration,
        error=error,
        signature=delivery.signature,
        signature_reason=delivery.signature_reason,
        duplicate=duplicate,
    )
    if pending:  # not answered yet: "no response" would be a lie
        found = [r for r in found if not r.startswith("Pivotal would")]
    return found


# --- bodies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyView:
    """A body ready to show: `kind` is json | text | hex | empty; `note` says what was done."""

    kind: str
    text: str
    note: str


def _printable(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def hexdump(data: bytes, limit: int = HEX_LIMIT) -> str:
    lines = []
    for offset in range(0, min(len(data), limit), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  {ascii_}")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit:,} more bytes")
    return "\n".join(lines)


def body_view(body: bytes) -> BodyView:
    """JSON pretty-printed, text as it came, anything else as hex; never the whole of a huge one."""
    size = f"{len(body):,} bytes"
    if not body:
        return BodyView("empty", "", "empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return BodyView("hex", hexdump(body), f"{size}, binary, shown as hex")
    if "\x00" in text:
        return BodyView("hex", hexdump(body), f"{size}, binary, shown as hex")
    cut = len(body) > SHOW_LIMIT
    if not cut and text.lstrip()[:1] in ("{", "["):
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            pass
        else:
            return BodyView("json", _printable(pretty), f"{size}, JSON, pretty-printed")
    shown = text[:SHOW_LIMIT] if cut else text
    note = f"{size}, first {SHOW_LIMIT // 1024} KB shown" if cut else f"{size}, text"
    return BodyView("text", _printable(shown.replace("\r\n", "\n")), note)


def headers_lines(headers: Headers) -> list[tuple[str, str]]:
    return [(_printable(name), _printable(value)) for name, value in headers]


# --- attempts -------------------------------------------------------------------------------


def attempt_line(number: int, attempt: Attempt, utc: bool) -> str:
    status = status_text(attempt.status, attempt.error, "done")
    what = "original forward" if attempt.kind == "forward" else attempt.kind
    parts = [
        f"#{number}",
        what,
        clock_text(attempt.started_at, utc),
        status,
        duration_text(attempt.duration_ms),
    ]
    line = "  ".join(parts)
    if attempt.note:
        line += f"  ({attempt.note})"
    if attempt.error:
        line += f"  error: {attempt.error}"
    return line


def _lines_of(body: bytes) -> list[str]:
    view = body_view(body)
    return view.text.splitlines() if view.kind in ("json", "text") else [view.note]


def attempt_diff(delivery: Delivery, original: Attempt, other: Attempt) -> list[str]:
    """How a re-send differed from the original: status, the body sent, the body answered.

    Unified-diff lines (`-` original, `+` this attempt); empty when nothing differs.
    """
    out: list[str] = []
    if (original.status, original.error) != (other.status, other.error):
        before = status_text(original.status, original.error, "done")
        after = status_text(other.status, other.error, "done")
        out += ["status", f"-{before}", f"+{after}"]
    sent_before = original.request_body if original.request_body is not None else delivery.body
    sent_after = other.request_body if other.request_body is not None else delivery.body
    for title, a, b in (
        ("request body", sent_before, sent_after),
        ("response body", original.response_body, other.response_body),
    ):
        if a == b:
            continue
        diff = list(difflib.unified_diff(_lines_of(a), _lines_of(b), lineterm="", n=2))
        out.append(title)
        out += diff[2:]  # drop the ---/+++ file headers
    return out


# --- signature ------------------------------------------------------------------------------


def signature_facts(delivery: Delivery) -> list[tuple[str, str]]:
    """(label, value) rows for the Signature tab: the verdict, why, and the signed headers."""
    facts = [("verdict", delivery.signature), ("reason", delivery.signature_reason or "-")]
    for name in _SIGNATURE_HEADERS:
        value = header_value(delivery.headers, name, name.replace("svix", "webhook"))
        facts.append((name, value if value is not None else "(absent)"))
    stamp = header_value(delivery.headers, "svix-timestamp", "webhook-timestamp")
    try:
        lag = delivery.received_at - float(stamp or "")
    except ValueError:
        pass
    else:
        when = "before" if lag >= 0 else "after"
        facts.append(("signed", f"{abs(lag):.1f} s {when} the relay received it"))
    return facts


# --- copying --------------------------------------------------------------------------------


def curl_args(
    url: str, method: str, headers: Headers, body: bytes
) -> tuple[list[str], bytes | None]:
    """curl's arguments for sending this delivery again, and the bytes it must read on stdin
    (None when the body travels as an argument).

    Host and Content-Length are left to curl (they follow the URL and body). curl reads some
    arguments as more than text, and each is kept literal: --globoff, so a URL's [] and {}
    are not ranges; `Name;` for an empty value, since `Name:` would delete the header; stdin
    for a body starting with @, which would otherwise name a file to send.
    """
    skip = HOP_BY_HOP | {"host", "content-length"}
    args = ["curl", "-sS", "--globoff", "-X", method, url]
    for name, value in headers:
        if name.lower() not in skip:
            args += ["-H", f"{name}: {value}" if value.strip() else f"{name};"]
    if not body:
        return args, None
    text = _shell_text(body)
    if text is None or text.startswith("@"):
        return [*args, "--data-binary", "@-"], body
    return [*args, "--data-binary", text], None


def _shell_text(data: bytes) -> str | None:
    """`data` as text a shell word can hold (UTF-8, no NUL), else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def curl_command(url: str, method: str, headers: Headers, body: bytes) -> str:
    """A shell command that sends this delivery again, byte for byte, to `url`.

    Every word is shell-quoted: method, URL, headers and body all come from whoever posted to
    the public URL, and the command is meant to be pasted into a shell. A body curl must read
    from stdin is piped in, as base64 through `base64 -d` unless it is text (a clipboard holds
    text, and a shell word cannot hold a NUL).
    """
    args, stdin = curl_args(url, method, headers, body)
    words = [shlex.quote(arg) for arg in args]
    lines = [" ".join(words[:6])]
    rest = words[6:]
    lines += [f"  {flag} {value}" for flag, value in zip(rest[::2], rest[1::2], strict=True)]
    command = " \\\n".join(lines)
    if stdin is None:
        return command
    text = _shell_text(stdin)
    if text is not None:
        return f"printf %s {shlex.quote(text)} | \\\n{command}"
    encoded = base64.b64encode(stdin).decode("ascii")
    return f"printf %s {shlex.quote(encoded)} | base64 -d | \\\n{command}"


def body_for_clipboard(body: bytes) -> tuple[str, str]:
    """(text, what) for `y`: the body as is when it is text, else base64 (and say so)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "binary body, copied as base64"
    return text, f"copied the body ({len(body):,} bytes)"
