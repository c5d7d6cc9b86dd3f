"""The local test secret: a signing secret made on this machine for a newcomer who has no
Pivotal endpoint yet, so `hooktap trigger`'s samples and `hooktap check` are signed with a
secret that the listener (and the user's own handler) can verify.

It is not Pivotal's secret and never leaves the machine: it lives in HOOKTAP_HOME, owner-only,
and the relay never sees it (verification happens in the listener). Only `hooktap listen`
makes it; the other commands use it when it exists and no secret was given.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import stat
from pathlib import Path

from hooktap.home import home_dir, home_path
from hooktap.pivotal.signing import InvalidSecret, parse_secret

FILE_NAME = "local-test-secret"
KEY_BYTES = 24  # what Svix itself generates for an endpoint secret


class LocalSecretError(Exception):
    """The secret file cannot be used as it is; the message names it and says what to do."""


def path() -> Path:
    return home_path() / FILE_NAME


def _unusable(where: Path, why: str) -> LocalSecretError:
    return LocalSecretError(
        f"the local test secret {where} {why}; delete it and `hooktap listen` makes a new one "
        "(a handler that verifies with the old one must then be given the new one)"
    )


def load() -> str | None:
    """The local test secret, or None when none was made yet."""
    where = path()
    try:
        raw = where.read_bytes()
        mode = where.stat().st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        home_dir()  # HOOKTAP_HOME itself is the problem: its own message says so and how out
        raise
    except OSError as exc:
        raise _unusable(where, f"cannot be read ({exc.strerror})") from None
    try:
        secret = parse_secret(raw.decode("ascii"))
    except (UnicodeDecodeError, InvalidSecret) as exc:
        why = "not ASCII text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise _unusable(where, f"is not a signing secret ({why})") from None
    if mode & 0o077:
        # Copied in with a permissive umask: owner-only again, as when it was made.
        with contextlib.suppress(OSError):
            os.chmod(where, stat.S_IRUSR | stat.S_IWUSR)
    return secret


def load_or_create() -> tuple[str, bool]:
    """The local test secret, made now if there is none; and whether it was made now."""
    existing = load()
    if existing is not None:
        return existing, False
    made = "whsec_" + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
    kept = put_back(made)
    return kept, kept == made


def put_back(secret: str) -> str:
    """Write `secret` as the local test secret unless one is there already; the one kept.

    Also how a running listener restores the secret it verifies with when HOOKTAP_HOME was
    deleted under it (see listen/state.py). Written to a private temporary file and linked
    into place, so two commands starting at once agree on one secret, and nobody ever reads
    a half-written file."""
    folder = home_dir()
    tmp = folder / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        try:
            os.link(tmp, path())
        except FileExistsError:  # another command made one first: that one is the secret
            return load() or put_back(secret)
    except OSError as exc:
        raise LocalSecretError(
            f"cannot write the local test secret to {path()} ({exc.strerror}); pass --secret "
            "or set PIVOTAL_WEBHOOK_SECRET instead"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return secret
