from hooktap.pivotal.rules import broken_rules


def _rules(**overrides: object) -> list[str]:
    args: dict[str, object] = {
        "status": 200,
        "duration_ms": 12.0,
        "error": None,
        "signature": "valid",
        "signature_reason": "",
        "duplicate": False,
    }
    args.update(overrides)
    return broken_rules(**args)  # type: ignore[arg-type]


def test_a_clean_delivery_breaks_nothing() -> None:
    assert _rules() == []


def test_non_2xx_and_slow_answers_say_when_pivotal_would_retry() -> None:
    assert _rules(status=500) == ["Pivotal would retry: next attempt in ~5 s (500 is not 2xx)"]
    (slow,) = _rules(duration_ms=12_500.0)
    assert slow.startswith("Pivotal would retry: next attempt in ~5 s") and "12.5 s" in slow
    (retry, dup) = _rules(status=503, duplicate=True)
    assert "next attempt in ~5 min" in retry and dup.startswith("duplicate svix-id")


def test_bad_signatures_carry_their_reason() -> None:
    assert _rules(status=401, signature="expired", signature_reason="timestamp 7 min old") == [
        "Pivotal would retry: next attempt in ~5 s (401 is not 2xx; a 4xx is retried too)",
        "signature expired: timestamp 7 min old",
    ]
    assert _rules(signature="unsigned") == []


def test_a_handler_that_contradicts_the_verdict_is_explained() -> None:
    (rejected_valid,) = _rules(status=401, signature="valid")[1:]
    assert "valid for your secret" in rejected_valid and "raw body" in rejected_valid
    (accepted_invalid,) = _rules(signature="invalid", signature_reason="no match")[1:]
    assert "not verifying" in accepted_invalid
    assert not any("raw body" in r for r in _rules(status=401, signature="invalid"))
    assert _rules(status=401, signature="unsigned") == [
        "Pivotal would retry: next attempt in ~5 s (401 is not 2xx; a 4xx is retried too)"
    ]


def test_a_404_or_405_names_the_path_and_the_forward_that_fixes_it() -> None:
    (retry, path) = _rules(status=404, target_url="http://localhost:8000/")
    assert retry.startswith("Pivotal would retry")
    assert path == (
        "your handler answered 404 for /: is the path right? Pivotal's handlers live at "
        "/webhooks/pivotal; restart with --forward localhost:8000/webhooks/pivotal"
    )
    (_, path) = _rules(status=405, target_url="http://127.0.0.1:3000/hook?x=1")
    assert path == (
        "your handler answered 405 for /hook: no POST route there; is the path right? "
        "Pivotal's handlers live at /webhooks/pivotal; restart with --forward "
        "127.0.0.1:3000/webhooks/pivotal"
    )
    (_, path) = _rules(status=404, target_url="https://dev.example:8443/")
    assert path.endswith("restart with --forward https://dev.example:8443/webhooks/pivotal")


def test_a_404_at_pivotals_path_asks_about_the_port_instead() -> None:
    (_, path) = _rules(status=404, target_url="http://localhost:8000/webhooks/pivotal")
    assert path.startswith("your handler answered 404 for /webhooks/pivotal: is the port right?")
    assert "--forward" not in path
    (_, path) = _rules(status=405, target_url="http://localhost:8000/webhooks/pivotal/")
    assert "does not take POST, and Pivotal only POSTs" in path


def test_no_path_rule_without_the_url_or_for_other_answers() -> None:
    assert len(_rules(status=404)) == 1  # callers that do not pass target_url: as before
    assert len(_rules(status=500, target_url="http://localhost:8000/")) == 1
    assert _rules(status=200, target_url="http://localhost:8000/") == []
