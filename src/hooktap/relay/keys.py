"""The one AppKey under which a relay app keeps its parts: the relay service object.

Its own module, so the parts (rates, upload, drain, the routes) can reach the service through
a request's app without importing the module that builds it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hooktap.relay.service import RelayService

RELAY: web.AppKey[RelayService] = web.AppKey("relay")
