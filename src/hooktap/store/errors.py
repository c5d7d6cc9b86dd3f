"""What the history raises: every failure a caller may want to tell apart, with the file named."""

from __future__ import annotations


class StoreError(Exception):
    """The history cannot be used: not a database, written by a newer hooktap, or a big
    delivery's body file missing or unwritable. The message names the file."""


class BodyMissing(StoreError, LookupError):
    """A big delivery's body file is gone, cut short or not its own. A LookupError too, so
    that code skipping deliveries it cannot find skips this one with its message."""


class AmbiguousId(LookupError):
    """An id prefix that matches more than one delivery; the message lists some of them."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        shown = ", ".join(candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        super().__init__(f"id prefix {prefix!r} matches several deliveries: {shown}")
        self.prefix = prefix
        self.candidates = candidates
