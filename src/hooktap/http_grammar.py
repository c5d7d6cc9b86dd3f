"""HTTP/1.1's grammar for what hooktap writes on a wire itself: a request head to a handler
(listen/forward.py) and a handler's response headers passed back to a sender (relay/ingress.py).

Both sides take these from a peer they do not control, so both check them against one
definition before a byte goes out.
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2 tchar: what a method and a header name may be made of.
TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# A request target: visible ASCII or obs-text; no space, CR, LF, NUL, DEL or other control.
TARGET_CHAR = r"[!-~\x80-\xff]"
# A field value: VCHAR, SP, HTAB and obs-text; no CR, LF, NUL, DEL or other control, and
# nothing above U+00FF, which latin-1 could not encode.
VALUE_CHAR = r"[\t -~\x80-\xff]"

# Headers that describe one connection, not the message (RFC 9110 §7.6.1, and the legacy
# ones proxies still send): never carried from one hop to the next, neither in a request to
# a handler nor in a handler's answer passed back to a sender.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

is_token = re.compile(rf"{TCHAR}+").fullmatch
is_field_value = re.compile(rf"{VALUE_CHAR}*").fullmatch
