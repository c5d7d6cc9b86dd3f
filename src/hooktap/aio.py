"""Running the long-lived event loops (relay, listener) on uvloop where it exists.

benchmarks/tunnel.py measured it: on uvloop the added p50 latency of a 1 KB delivery fell
from ~2.0 ms to ~0.9-1.2 ms and the embedded tunnel's 1 KB C=32 throughput rose ~1.7x.
uvloop has no Windows build, so the stdlib loop remains the fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def new_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop for code that runs its own (Textual's App.run takes one): uvloop's where
    it exists, so `hooktap listen` with its inspector forwards as fast as without."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
