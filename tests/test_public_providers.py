"""Choosing a provider, and ngrok's clear errors. ngrok's service cannot be reached from
here, so what is tested is what hooktap says before it would try: no SDK (the `ngrok`
extra), no NGROK_AUTHTOKEN, a --domain that is not a host name."""

from __future__ import annotations

import sys

import pytest

from hooktap.public import Cloudflared, LocalhostRun, Ngrok, PublicUnavailable, provider_for
from hooktap.public.ngrok_sdk import verdict


def hide_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if `pip install 'hooktap[ngrok]'` had not been run (installed here or not)."""
    monkeypatch.setitem(sys.modules, "ngrok", None)


def test_no_sdk_and_no_token_are_named_together(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_sdk(monkeypatch)
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    with pytest.raises(PublicUnavailable) as failed:
        Ngrok().check()
    assert failed.value.kind == "missing"
    message = str(failed.value)
    assert "pip install 'hooktap[ngrok]'" in message and "NGROK_AUTHTOKEN" in message


def test_no_sdk_with_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_sdk(monkeypatch)
    monkeypatch.setenv("NGROK_AUTHTOKEN", "2abc_token")
    with pytest.raises(PublicUnavailable, match=r"hooktap\[ngrok\]") as failed:
        Ngrok().check()
    assert "NGROK_AUTHTOKEN" not in str(failed.value)


@pytest.mark.parametrize("token", [None, "", "   "])
async def test_no_token_is_refused_before_any_connection(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    if token is None:
        monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    else:
        monkeypatch.setenv("NGROK_AUTHTOKEN", token)
    with pytest.raises(PublicUnavailable, match=r"NGROK_AUTHTOKEN.*your-authtoken") as failed:
        await Ngrok().open("http://127.0.0.1:9")
    assert failed.value.kind == "missing"


def test_domain_is_ngroks_and_makes_the_url_stable() -> None:
    assert Ngrok("https://Quiet-Otter.ngrok-free.app/").domain == "quiet-otter.ngrok-free.app"
    assert Ngrok("quiet-otter.ngrok-free.app").stability_note is None
    note = Ngrok().stability_note or ""
    assert "--domain" in note and "hooktap relay" in note
    for bad in ("not a domain", "https://", "x", "a..b"):
        with pytest.raises(PublicUnavailable, match="not a host name"):
            Ngrok(bad)


def test_provider_for() -> None:
    assert isinstance(provider_for(None), Cloudflared)
    assert isinstance(provider_for("cloudflared"), Cloudflared)
    assert isinstance(provider_for("ssh"), LocalhostRun)
    ngrok = provider_for("ngrok", domain="quiet-otter.ngrok-free.app")
    assert isinstance(ngrok, Ngrok) and ngrok.domain == "quiet-otter.ngrok-free.app"
    with pytest.raises(PublicUnavailable, match="--domain goes with `--public ngrok`"):
        provider_for("cloudflared", domain="quiet-otter.ngrok-free.app")
    with pytest.raises(PublicUnavailable, match="choose one of cloudflared, ssh, ngrok"):
        provider_for("localtunnel")
    for name in ("cloudflared", "ssh"):
        note = provider_for(name).stability_note or ""
        assert "every time hooktap starts" in note and "--domain" in note and "--relay" in note


@pytest.mark.parametrize(
    ("said", "kind", "sentence"),
    [
        # The first three as ngrok words them (quoted in public issue threads); the later
        # ones are made up, to exercise the rules that go by keyword.
        (
            "failed to connect session: Usage of ngrok requires a verified account and "
            "authtoken.\nSign up for an account: https://dashboard.ngrok.com/signup\nInstall "
            "your authtoken: https://dashboard.ngrok.com/get-started/your-authtoken "
            "error_code: ERR_NGROK_4018",
            "refused",
            "ngrok refused NGROK_AUTHTOKEN",
        ),
        (
            "failed to connect session: The authtoken you specified does not look like a proper "
            "ngrok tunnel authtoken. ERR_NGROK_105",
            "refused",
            "ngrok refused NGROK_AUTHTOKEN",
        ),
        (
            "failed to connect session: Your account is limited to 1 simultaneous ngrok agent "
            "sessions. ERR_NGROK_108",
            "refused",
            "one agent session at a time",
        ),
        ("failed to start listener: rate limit exceeded", "rate-limited", "rate-limiting"),
        (
            "failed to start listener: The domain 'x.ngrok-free.app' is not reserved for your "
            "account",
            "refused",
            "ngrok refused the domain",
        ),
        ("something new went wrong", "failed", "ngrok could not open a tunnel"),
    ],
)
def test_ngrok_errors_become_one_sentence(said: str, kind: str, sentence: str) -> None:
    judged = verdict(said)
    assert judged.kind == kind
    assert sentence in str(judged) and said.strip() in str(judged)
