"""`POST /api/channels`: how a listener gets (or gets back) its channel.

A channel's id is derived from its token (`db.channel_id`), so only the token's holder can
ever name it: `{}` makes a new channel and token, `{"token": ...}` re-claims the channel that
token owns, on this relay or on one that lost its data. No request names an id, so no request
can take over someone else's.

A relay started with --require-key makes channels only for callers with its key. Re-claiming
a channel it already knows does not need the key: the token proves ownership, and listeners
keep their URLs when the key is rotated. Re-claiming one it does not know (it lost its data)
makes a channel, so that does.
"""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hooktap.relay.config import bearer, problem, public_base
from hooktap.relay.db import new_token, token_problem
from hooktap.relay.keys import RELAY
from hooktap.relay.rates import creation_rate

_EXAMPLE = 'send {} for a new channel, or {"token": "<your channel token>"} to re-claim yours'
_PASS_KEY = (
    "pass it with `hooktap listen --relay-key KEY` or HOOKTAP_RELAY_KEY (over HTTP: "
    "Authorization: Bearer <key>)"
)


def _key_refused(given: bool) -> web.Response:
    """401 without a key, 403 with a wrong one; the reason says how to pass the right one.
    Re-claiming a channel the relay knows needs none: its token already proves whose it is."""
    if not given:
        resp = problem(401, f"this relay requires a key to make a channel: {_PASS_KEY}")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="hooktap-relay"'
        return resp
    return problem(403, f"that is not this relay's key, so it cannot make a channel: {_PASS_KEY}")


async def create_channel(request: web.Request) -> web.Response:
    """201 with a new channel, or 200 with the existing one a token re-claims."""
    payload: object = {}
    if request.can_read_body:
        try:
            raw = await request.read()
        except (ConnectionError, HttpProcessingError) as exc:
            # The sender left mid-body, or its chunked framing broke: nobody may be there to
            # read this, but it is an answer, not a traceback in the log.
            return problem(400, f"the request body could not be read ({exc}); {_EXAMPLE}")
        try:
            payload = json.loads(raw or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return problem(400, f"body must be JSON: {_EXAMPLE}")
    if not isinstance(payload, dict):
        return problem(400, f"body must be a JSON object: {_EXAMPLE}")
    if "channel" in payload:
        return problem(
            400,
            "a channel id can no longer be asked for: it is derived from the channel's token, "
            f"so that only the token's holder can claim it; {_EXAMPLE}",
        )
    if "token" not in payload:
        token = new_token()
    elif (why := token_problem(payload["token"])) is not None:
        return problem(400, f"{why}; {_EXAMPLE}")
    else:
        token = payload["token"]
    relay = request.app[RELAY]
    broker = relay.broker
    reclaim = "token" in payload and await broker.owns(token)
    if not reclaim and not relay.config.key_matches(bearer(request)):
        return _key_refused(bearer(request) is not None)
    # Re-claiming a channel this relay knows makes nothing, so only a new one counts.
    if not reclaim and (limited := await creation_rate(request)) is not None:
        return limited
    claim = await broker.claim(token)
    if claim is None:
        return problem(
            409,
            "the channel id derived from this token is held by a channel an older relay "
            "created for another token; send {} for a new channel",
        )
    return web.json_response(
        {
            "channel": claim.channel,
            "token": token,
            "webhook_url": f"{public_base(request)}/c/{claim.channel}",
        },
        status=201 if claim.created else 200,
    )
