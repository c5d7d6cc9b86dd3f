"""How a relay proves who it is to NATS, and checks NATS over TLS (`hooktap relay --nats-creds,
--nats-token, --nats-user, --nats-ca, --nats-cert/--nats-key`).

The CLI builds a `NatsConnect` and `check()`s it before the relay starts, so a wrong file is
exit 2 naming the option, not a connect that retries for ever; JetStreamBroker passes
`connect_kwargs()` into nats.connect. Nothing here imports nats-py (the optional `nats` extra):
the CLI loads this module either way.

A refusal on the first connect (an authorization violation, expired credentials, a certificate
either side does not accept) ends the start at once with `NatsRefused`: retrying cannot fix
credentials, and nats-py, told to reconnect for ever, would retry until CONNECT_WAIT and say only
that NATS did not answer. Once the relay has been connected, such an error met while nats-py
reconnects is only logged, and it keeps reconnecting (a token rotated on the servers first comes
right on a restart). One the server sends on a live connection (`-ERR` after a config reload
changed the token, an expired creds JWT, a revoked account) is different: nats-py closes the
client for good, and the broker builds a new one (nats_revive.py).

nats-py upgrades a connection to TLS when the server's INFO asks for it (`tls_required`), for
nats:// and tls:// URLs alike; the context given here then decides what is trusted. It does not
upgrade when INFO does not ask, even for a tls:// URL: so when the operator asked for TLS
(`tls_wanted`), nats_tls.py refuses such a server before CONNECT carries the credentials. The
token, password and seed are never in a message, a log line or this object's repr.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooktap.relay.broker import KeepFailed

ErrorCallback = Callable[[Exception], Awaitable[None]]

# What nats-server says when it turns credentials down (-ERR '...'), in lower case.
_AUTH_REFUSALS = (
    "authorization violation",
    "authentication expired",
    "authentication revoked",
    "account authentication expired",
)
# OpenSSL's reasons when the server's TLS turns this relay's certificate down (or wants one).
_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server does not accept this relay's certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the CA of this relay's certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server says this relay's certificate expired",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server refused the TLS handshake",
}
_CREDS_BLOCK = re.compile(r"-{3,}\s*BEGIN (NATS USER JWT|USER NKEY SEED)\s*-{3,}\s*\n\s*(\S+)")
CREDS_HELP = (
    "it must be a NATS user credentials file as `nsc generate creds` writes: the user JWT, "
    "then the user's nkey seed"
)


class NatsOptionError(ValueError):
    """A --nats-* option that cannot work: a sentence naming it (the CLI's exit 2)."""


class NatsRefused(KeepFailed):
    """NATS turned this relay down on its first connect; the message says why, not how."""


class PlainTextRefused(Exception):
    """The relay would have logged in to NATS without TLS although TLS was asked for; the
    message is the whole sentence (nats_tls.py raises it as a nats-py error too)."""


@dataclass(frozen=True)
class NatsConnect:
    """Who this relay is to NATS (at most one of creds, token, user and password) and whom it
    trusts for TLS. nats-py reads the creds file on every connect, so a rotated one counts
    from the next reconnect; certificates are read once, as the relay starts."""

    creds: Path | None = None
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def auth_advice(self) -> str:
        """What to check when NATS turns these credentials down."""
        if self.creds is not None:
            return f"check --nats-creds {self.creds}"
        if self.token is not None:
            return "check --nats-token (HOOKTAP_NATS_TOKEN)"
        if self.user is not None:
            return "check --nats-user and its HOOKTAP_NATS_PASSWORD"
        return (
            "this relay gave no credentials: give --nats-token (HOOKTAP_NATS_TOKEN), --nats-user "
            "(HOOKTAP_NATS_PASSWORD) or --nats-creds"
        )

    def check(self) -> None:
        """NatsOptionError unless every option can be used as given."""
        given = [
            name
            for name, value in (
                ("--nats-creds", self.creds),
                ("--nats-token/HOOKTAP_NATS_TOKEN", self.token),
                ("--nats-user", self.user),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise NatsOptionError(
                f"{' and '.join(given)}: a NATS server takes one way of logging in; give one"
            )
        if (self.user is None) != (self.password is None):
            raise NatsOptionError(
                "--nats-user needs its password in HOOKTAP_NATS_PASSWORD (or --nats-password)"
                if self.password is None
                else "HOOKTAP_NATS_PASSWORD/--nats-password needs --nats-user"
            )
        if self.creds is not None:
            _check_creds(self.creds)
        tls_context(self)


def tls_asked_by(servers: list[str], options: NatsConnect | None) -> str | None:
    """What asked for TLS to NATS (a tls:// URL, or a CA or certificate to use for it), or
    None. Then every connection, to a server in the list or one discovered later, must be TLS."""
    if any(url.strip().lower().startswith("tls://") for url in servers):
        return "a tls:// URL in --nats"
    options = options or NatsConnect()
    for name, value in (("--nats-ca", options.ca), ("--nats-cert", options.cert)):
        if value is not None:
            return name
    return "--nats-key" if options.key is not None else None


def tls_context(options: NatsConnect) -> ssl.SSLContext | None:
    """None without --nats-ca/--nats-cert: nats-py then verifies a TLS server against this
    machine's trust store. Otherwise a context that checks the server's name and chain, against
    only --nats-ca when given, and shows --nats-cert when the server asks for one."""
    if (options.cert is None) != (options.key is None):
        given, missing = (
            ("--nats-cert", "--nats-key") if options.key is None else ("--nats-key", "--nats-cert")
        )
        raise NatsOptionError(f"{given} needs {missing} too: the client certificate and its key")
    if options.ca is None and options.cert is None:
        return None
    try:
        context = ssl.create_default_context(cafile=None if options.ca is None else options.ca)
    except OSError as exc:
        why = _pem_problem("--nats-ca", options.ca, exc, "the CA's certificate")
        raise NatsOptionError(why) from None
    if options.cert is not None and options.key is not None:
        try:
            context.load_cert_chain(options.cert, options.key, password=_no_password)
        except _Encrypted:
            raise NatsOptionError(
                f"--nats-key {options.key} is encrypted; the relay needs it unencrypted (kept "
                f"readable by its user only), e.g. openssl pkey -in {options.key} -out key.pem"
            ) from None
        except OSError as exc:
            if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
                raise NatsOptionError(
                    f"--nats-key {options.key} is not the key of --nats-cert {options.cert}"
                ) from None
            raise NatsOptionError(
                _pem_problem("--nats-cert/--nats-key", options.cert, exc, "a certificate and key")
            ) from None
    return context


class _Encrypted(Exception):
    pass


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal, and a relay under a process
    # manager would hang there for good.
    raise _Encrypted


def _pem_problem(option: str, path: Path | None, exc: OSError, what: str) -> str:
    if not isinstance(exc, ssl.SSLError):
        return f"{option} {exc.filename or path}: {exc.strerror}"
    return (
        f"{option} {path} holds no PEM that OpenSSL can read ({exc.reason or exc}); it must be "
        f"{what}, as -----BEGIN ...----- blocks"
    )


def _check_creds(path: Path) -> None:
    """The file holds a user JWT and the seed of the same user, as nats-py will read them."""
    if importlib.util.find_spec("nkeys") is None:
        raise NatsOptionError("--nats-creds needs the nkeys package: pip install 'hooktap[nats]'")
    import nkeys

    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise NatsOptionError(f"--nats-creds {path} is not text; {CREDS_HELP}") from None
    except OSError as exc:
        raise NatsOptionError(f"--nats-creds {path}: {exc.strerror}") from None
    blocks = dict(m.groups() for m in _CREDS_BLOCK.finditer(text))
    jwt, seed = blocks.get("NATS USER JWT"), blocks.get("USER NKEY SEED")
    if jwt is None or seed is None:
        missing = "user JWT" if jwt is None else "user nkey seed"
        raise NatsOptionError(f"--nats-creds {path} holds no {missing}; {CREDS_HELP}")
    try:
        public = nkeys.from_seed(seed.encode()).public_key.decode()
    except (nkeys.NkeysError, ValueError):
        public = ""
    if not public.startswith("U"):
        raise NatsOptionError(f"--nats-creds {path}: its seed is not a user nkey; {CREDS_HELP}")
    claims = _jwt_claims(jwt)
    if claims is None or claims.get("nats", {}).get("type", claims.get("type")) != "user":
        raise NatsOptionError(f"--nats-creds {path}: its JWT is not a user JWT; {CREDS_HELP}")
    if claims.get("sub") != public:
        raise NatsOptionError(
            f"--nats-creds {path}: the JWT is for user {claims.get('sub')}, the seed is user "
            f"{public}'s; the two must come from the same `nsc generate creds`"
        )


def _jwt_claims(jwt: str) -> dict[str, Any] | None:
    parts = jwt.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def connect_kwargs(options: NatsConnect | None, on_error: ErrorCallback) -> dict[str, Any]:
    """nats.connect's keyword arguments for these options, error_cb and disconnected_cb
    included (`on_error` gets every error that is not a refusal on the first connect)."""
    options = options or NatsConnect()
    kwargs: dict[str, Any] = {}
    if options.creds is not None:
        kwargs["user_credentials"] = str(options.creds)
    if options.token is not None:
        kwargs["token"] = options.token
    if options.user is not None:
        kwargs["user"], kwargs["password"] = options.user, options.password
    try:
        context = tls_context(options)
    except NatsOptionError as exc:  # checked at start; a file changed since
        raise KeepFailed(str(exc)) from None
    if context is not None:
        kwargs["tls"] = context
    watch = _FirstConnect(options, on_error)
    kwargs["error_cb"], kwargs["disconnected_cb"] = watch.error, watch.disconnected
    return kwargs


class _FirstConnect:
    """Raises NatsRefused out of nats.connect for a refusal until the relay was once connected.
    nats-py awaits error_cb inside its first-connect loop, so the exception ends nats.connect;
    a reconnect always follows a disconnected_cb, after which errors are only passed on."""

    def __init__(self, options: NatsConnect, on_error: ErrorCallback) -> None:
        self.options, self.on_error, self.connected_once = options, on_error, False

    async def error(self, exc: Exception) -> None:
        why = None if self.connected_once else refusal(exc, self.options)
        if why is not None:
            raise NatsRefused(why)
        await self.on_error(exc)

    async def disconnected(self) -> None:
        self.connected_once = True


def refusal(exc: BaseException, options: NatsConnect) -> str | None:
    """The sentence for an error that is NATS, or its certificate, turning this relay down;
    None for anything else (an unreachable server is retried until CONNECT_WAIT)."""
    if isinstance(exc, PlainTextRefused):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        said = exc.verify_message or exc.reason or str(exc)
        trusted = (
            f"the CA in --nats-ca {options.ca}" if options.ca else "this machine's trust store"
        )
        return (
            f"TLS to NATS failed: certificate verify failed ({said}); the server's certificate "
            f"must be issued for the host name in --nats and signed by {trusted}"
        )
    if isinstance(exc, ssl.SSLError) and exc.reason in _ALERTS:
        mine = f"--nats-cert {options.cert}" if options.cert else "no --nats-cert given"
        return f"NATS refused this relay's TLS: {_ALERTS[exc.reason]} ({mine})"
    said = str(exc).lower()
    for words in _AUTH_REFUSALS:
        if words in said:
            return f"NATS refused this relay: {words}; {options.auth_advice()}"
    return None
