"""The filter language: what users type in the TUI's `/` box and on the command line."""

from __future__ import annotations

from datetime import datetime

import pytest

from hooktap.filters import Filter, build_filter, parse_duration, parse_filter, parse_since


def test_full_expression() -> None:
    f = parse_filter("type:customer.* status:5xx sig:invalid acme")
    assert f.types == ("customer.*",)
    assert f.statuses == ("5xx",)
    assert f.signatures == ("invalid",)
    assert f.text == ("acme",)
    assert f.since_seconds is None and f.since_at is None


def test_empty_is_no_constraint() -> None:
    f = parse_filter("   ")
    assert f.empty
    assert f == Filter()
    assert f.cutoff(now=1000.0) is None


def test_alternatives_by_comma_and_by_repetition() -> None:
    f = parse_filter("status:4xx,5xx status:err type:task.* type:customer.created")
    assert f.statuses == ("4xx", "5xx", "err")
    assert f.types == ("task.*", "customer.created")


def test_signature_key_and_alias() -> None:
    assert parse_filter("signature:expired sig:no-secret").signatures == ("expired", "no-secret")
    assert parse_filter("sig:INVALID").signatures == ("invalid",)


def test_exact_status_and_classes() -> None:
    assert parse_filter("status:401 status:2XX").statuses == ("401", "2xx")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1w", 604800), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_since(text) == seconds


def test_fractional_duration() -> None:
    assert parse_duration("1.5h") == 5400


def test_since_duration_slides_with_now() -> None:
    f = parse_filter("since:1h")
    assert f.since_seconds == 3600
    assert f.cutoff(now=10_000.0) == 6400.0
    assert f.cutoff(now=20_000.0) == 16_400.0


def test_since_iso_is_fixed_instant() -> None:
    f = parse_filter("since:2024-05-01T12:00:00Z")
    assert f.since_at == datetime.fromisoformat("2024-05-01T12:00:00+00:00").timestamp()
    assert f.cutoff(now=0) == f.since_at
    naive = parse_filter("since:2024-05-01")
    assert naive.since_at == datetime(2024, 5, 1).timestamp()  # local midnight


def test_parse_since_iso_gives_seconds_back() -> None:
    at = datetime.fromisoformat("2024-05-01T12:00:00+00:00").timestamp()
    assert parse_since("2024-05-01T12:00:00Z", now=at + 90) == 90


def test_quoted_phrase_is_text_even_with_colon() -> None:
    f = parse_filter('"acme corp" "https://x.test" word')
    assert f.text == ("acme corp", "https://x.test", "word")
    assert f.types == ()


def test_escaped_quote_inside_phrase() -> None:
    assert parse_filter(r'"say \"hi\""').text == ('say "hi"',)


def test_digits_with_colon_are_text() -> None:
    assert parse_filter("12:30").text == ("12:30",)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("status:7xx", "bad status '7xx'"),
        ("status:99", "bad status '99'"),
        ("status:", "empty value"),
        ("status:5xx,", "empty value"),
        ("sig:maybe", "bad signature verdict 'maybe'"),
        ("since:yesterday", "bad time 'yesterday'"),
        ("since:5y", "bad time '5y'"),
        ("colour:red", "unknown filter 'colour:'"),
        ('"unterminated', "unterminated quote"),
        ("type:customer.[ab", "unbalanced"),
    ],
)
def test_errors_name_the_token(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_filter(text)
    assert fragment in str(info.value)


def test_error_message_quotes_whole_token() -> None:
    with pytest.raises(ValueError) as info:
        parse_filter("type:task.* status:600 acme")
    assert "'status:600'" in str(info.value)


def test_build_filter_merges_options_and_expression() -> None:
    f = build_filter(
        "acme sig:valid",
        types=["customer.*"],
        statuses=["4xx,5xx"],
        signatures=["invalid"],
        since="30m",
    )
    assert f.types == ("customer.*",)
    assert f.statuses == ("4xx", "5xx")
    assert f.signatures == ("valid", "invalid")
    assert f.since_seconds == 1800
    assert f.text == ("acme",)


def test_build_filter_names_the_option() -> None:
    with pytest.raises(ValueError, match="--status '5x'"):
        build_filter(statuses=["5x"])
    with pytest.raises(ValueError, match="--since"):
        build_filter(since="soon")
    with pytest.raises(ValueError, match="--signature"):
        build_filter(signatures=["ok"])
