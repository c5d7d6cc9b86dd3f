"""`POST /api/channels`: how a listener gets (or gets back) its channel."""

from __future__ import annotations

import json
import re

from aiohttp import web

from hooktap.relay.config import problem, public_base
from hooktap.relay.db import new_channel_id, new_token
from hooktap.relay.keys import DB

CHANNEL_RE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")


async def create_channel(request: web.Request) -> web.Response:
    """Make a channel; a listener may ask for a specific id to keep its URL stable."""
    wanted: str | None = None
    if request.can_read_body:
        try:
            payload = json.loads(await request.read() or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return problem(400, 'body must be JSON, e.g. {} or {"channel": "my-channel"}')
        if not isinstance(payload, dict):
            return problem(400, "body must be a JSON object")
        wanted = payload.get("channel")
        if wanted is not None and (not isinstance(wanted, str) or not CHANNEL_RE.match(wanted)):
            return problem(400, "channel must be 4-64 letters, digits, '-' or '_'")
    db = request.app[DB]
    token = new_token()
    channel = wanted or new_channel_id()
    if not db.create_channel(channel, token):
        return problem(409, f"channel {channel!r} already exists")
    return web.json_response(
        {
            "channel": channel,
            "token": token,
            "webhook_url": f"{public_base(request)}/c/{channel}",
        },
        status=201,
    )
