"""What every command shares: the user-error type, the secret option, input validation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from hooktap import local_secret
from hooktap.listen.target import Target, parse_target
from hooktap.pivotal.signing import InvalidSecret, parse_secret

F = TypeVar("F", bound=Callable[..., Any])

NO_SECRET = (
    "a signing secret is needed: pass --secret whsec_... or set PIVOTAL_WEBHOOK_SECRET "
    "(the endpoint's signing secret in Pivotal), or run `hooktap listen` once: it makes a "
    "local test secret, which this command then uses"
)
LOCAL_TEST = "local-test"  # the secret_source of hooktap's own secret (local_secret.py)


class BadInput(click.ClickException):
    """A user error: one clear line on stderr and exit code 2, never a traceback."""

    exit_code = 2


class Finite(click.FloatRange):
    """A number within a range. click's FloatRange lets nan through (every comparison with
    nan is false) and takes inf for a number: a timeout of either fails every delivery."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def secret_option(help: str) -> Callable[[F], F]:
    """--secret, read from PIVOTAL_WEBHOOK_SECRET as Pivotal's own docs tell users to set."""
    return click.option(
        "--secret",
        envvar="PIVOTAL_WEBHOOK_SECRET",
        show_envvar=True,
        metavar="WHSEC",
        help=help,
    )


def forward_option(help: str, *, required: bool = True) -> Callable[[F], F]:
    """--forward TARGET, spelled the same way by every command that sends to a handler."""
    return click.option(
        "--forward", "-f", "forward", required=required, metavar="TARGET", help=help
    )


def timeout_option(help: str) -> Callable[[F], F]:
    """--timeout in seconds, defaulting to Pivotal's own 10 s limit."""
    return click.option(
        "--timeout",
        default=10.0,
        show_default=True,
        type=Finite(0.1, 600),
        help=help,
    )


def valid_secret(secret: str | None) -> str | None:
    """The normalized secret, or None; a malformed one is refused before anything starts."""
    if secret is None:
        return None
    try:
        return parse_secret(secret)
    except InvalidSecret as exc:
        raise BadInput(str(exc)) from None


@dataclass(frozen=True)
class Secret:
    """The secret a command works with, and where it came from, for telling the user."""

    value: str | None
    source: str  # "--secret", "PIVOTAL_WEBHOOK_SECRET", LOCAL_TEST, or "none"
    made_now: bool = False  # the local test secret was created by this command

    @property
    def local(self) -> bool:
        return self.source == LOCAL_TEST


def _given_as() -> str:
    ctx = click.get_current_context(silent=True)
    from_env = ctx is not None and ctx.get_parameter_source("secret") is ParameterSource.ENVIRONMENT
    return "PIVOTAL_WEBHOOK_SECRET" if from_env else "--secret"


def resolve_secret(secret: str | None, *, make: bool = False) -> Secret:
    """--secret or PIVOTAL_WEBHOOK_SECRET always win; without either, the local test secret
    (made now when `make`: only `hooktap listen` makes it). A given secret equal to the local
    one (exported from `hooktap listen --print-secret`) is still reported as the local one:
    it is not Pivotal's, and the user must not be told it is."""
    given = valid_secret(secret)
    if given is not None:
        try:
            local = local_secret.load()
        except local_secret.LocalSecretError:
            local = None  # a broken file must not stand in the way of a secret given outright
        return Secret(given, LOCAL_TEST if given == local else _given_as())
    try:
        if make:
            value, made_now = local_secret.load_or_create()
        else:
            value, made_now = local_secret.load(), False
    except local_secret.LocalSecretError as exc:
        raise BadInput(str(exc)) from None
    return Secret(value, LOCAL_TEST if value else "none", made_now)


def required_secret(secret: str | None) -> str:
    """The secret to sign with (trigger, check): the given one, else the local test secret,
    named on stderr so nobody mistakes it for Pivotal's."""
    resolved = resolve_secret(secret)
    if resolved.value is None:
        raise BadInput(NO_SECRET)
    if secret is None:  # taken by default, not given
        click.echo(
            f"Signing with hooktap's local test secret ({local_secret.path()}), not Pivotal's; "
            "`hooktap listen --print-secret` prints it for your handler. To sign with "
            "Pivotal's, pass --secret or set PIVOTAL_WEBHOOK_SECRET.",
            err=True,
        )
    return resolved.value


def valid_target(text: str) -> Target:
    try:
        return parse_target(text)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def valid_relay_url(url: str, option: str = "--relay") -> str:
    """An http(s) URL with a host, or exit 2 saying what is wrong with it."""
    example = "e.g. https://hooks.example.com"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise BadInput(f"{option} {url!r} is not a valid URL ({exc}); {example}") from None
    if parts.scheme not in ("http", "https"):
        raise BadInput(f"{option} must be an http(s) URL, got {url!r}; {example}")
    if not parts.hostname:
        raise BadInput(f"{option} {url!r} has no host; {example}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise BadInput(f"{option} {url!r} must be a plain URL: no query, fragment or login")
    return url.rstrip("/")


def valid_relay_urls(text: str, option: str = "--relay") -> list[str]:
    """Comma-separated relay URLs, the instances of one relay to try in this order: each must
    be a valid --relay URL, and none empty (a stray comma is a typo, not "no relay")."""
    urls: list[str] = []
    for position, item in enumerate(text.split(","), 1):
        item = item.strip()
        if not item:
            raise BadInput(
                f"{option} {text!r} has an empty item at position {position}: give URLs "
                "separated by single commas, e.g. https://a.example.com,https://b.example.com"
            )
        url = valid_relay_url(item, option)
        if url not in urls:  # the same instance twice would only slow the rotation down
            urls.append(url)
    return urls
