"""Running the long-lived event loops (relay, listener) on uvloop where it exists.

benchmarks/tunnel.py measured it: on uvloop the added p50 latency of a 1 KB delivery fell
from ~2.0 ms to ~0.9-1.2 ms and the embedded tunnel's 1 KB C=32 throughput rose ~1.7x.
uvloop has no Windows build, so the stdlib loop remains the fallback.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


# gen0 collects every 20,000 new container objects instead of 700: a delivery allocates a few
# hundred, so the default ran a collection every couple of deliveries. Young garbage is mostly
# freed by reference counting anyway; cycles wait a little longer.
GC_THRESHOLDS = (20_000, 20, 20)


def calm_gc() -> None:
    """Keep the collector from stalling a long-lived loop.

    Everything loaded so far (modules, classes, the libraries' tables) lives until exit, yet a
    full collection walked all of it: under load `benchmarks/tunnel.py` saw the p99 latency at
    1 KB C=32 at 60-78 ms. With those objects frozen out of collection and gen0 collected less
    often it was 34-36 ms, in four runs out of four, at the same throughput."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(main: Coroutine[Any, Any, T]) -> T:
    calm_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def new_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop for code that runs its own (Textual's App.run takes one): uvloop's where
    it exists, so `hooktap listen` with its inspector forwards as fast as without."""
    calm_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
