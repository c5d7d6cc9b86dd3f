"""`POST /api/channels`: how a listener gets (or gets back) its channel.

A channel's id is derived from its token (`db.channel_id`), so only the token's holder can
ever name it: `{}` makes a new channel and token, `{"token": ...}` re-claims the channel that
token owns, on this relay or on one that lost its data. No request names an id, so no request
can take over someone else's.
"""

from __future__ import annotations

import json

from aiohttp import web

from hooktap.relay.config import problem, public_base
from hooktap.relay.db import new_token, token_problem
from hooktap.relay.keys import DB

_EXAMPLE = 'send {} for a new channel, or {"token": "<your channel token>"} to re-claim yours'


async def create_channel(request: web.Request) -> web.Response:
    """201 with a new channel, or 200 with the existing one a token re-claims."""
    payload: object = {}
    if request.can_read_body:
        try:
            payload = json.loads(await request.read() or b"{}")
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
    claim = request.app[DB].claim(token)
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
