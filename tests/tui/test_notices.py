"""What the inspector says in notifications, from the listener's events (no screen needed)."""

from __future__ import annotations

from hooktap.listen.events import PublicChanged, Ready, TargetHealth
from hooktap.tui import notices
from hooktap.tui.feed import Feed


def test_public_url_news_and_the_local_secret_are_said_once_each() -> None:
    feed = Feed()
    feed(
        Ready(
            "http://127.0.0.1:8787/c/abc",
            "http://localhost:8000/webhooks/pivotal",
            queued=2,
            secret_source="local-test",
            public_url="https://x.trycloudflare.com/c/abc",
            public_note="This URL changes every time hooktap starts.",
        )
    )
    said = notices.of(feed.drain())
    assert [n.title for n in said] == ["", "Public URL", "Local test secret"]
    assert said[0].message == "2 deliveries were waiting at the relay"
    assert "not Pivotal's" in said[2].message and "--secret" in said[2].message
    assert notices.of(feed.drain()) == []  # drained: nothing twice

    feed(PublicChanged(None, "cloudflared exited (killed by SIGKILL)", retry_in=2))
    feed(PublicChanged("https://y.trycloudflare.com/c/abc", "cloudflared restarted"))
    (latest,) = notices.of(feed.drain())  # the latest news only
    assert latest.title == "New public URL" and latest.message.startswith("https://y.")

    feed(PublicChanged(None, "cloudflared exited", retry_in=4))
    (down,) = notices.of(feed.drain())
    assert (down.title, down.severity) == ("Public URL down", "error")


def test_pivotals_own_secret_gets_no_local_secret_notice() -> None:
    feed = Feed()
    feed(Ready("http://127.0.0.1:8787/c/abc", "http://localhost:8000/", secret_source="--secret"))
    assert notices.of(feed.drain()) == []


def test_a_handler_down_is_news_at_once_and_back_only_after_down() -> None:
    feed = Feed()
    feed(TargetHealth("localhost:8001", "up", "localhost:8001 is accepting connections"))
    down = "localhost:8000 is not accepting connections (connection refused)"
    feed(TargetHealth("localhost:8000", "down", down))
    said = notices.of(feed.drain())
    # The first probe's "up" is no news; a handler down at start is, before a webhook fails.
    assert [(n.title, n.message, n.severity) for n in said] == [("Handler down", down, "error")]
    back = "localhost:8000 is accepting connections again"
    feed(TargetHealth("localhost:8000", "up", back))
    assert [(n.title, n.message) for n in notices.of(feed.drain())] == [("Handler back", back)]
