"""The AppKeys under which the relay's parts live on its aiohttp app."""

from __future__ import annotations

from aiohttp import web

from hooktap.relay.db import RelayDB
from hooktap.relay.hub import Hub
from hooktap.relay.metrics import RelayMetrics

DB = web.AppKey("db", RelayDB)
HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", RelayMetrics)
