"""TLS for the listener's side of an https:// relay, and plain words when it fails.

The listener verifies the relay's certificate against the system trust store, which
`ssl.create_default_context()` reads through OpenSSL's default verify paths: SSL_CERT_FILE
and SSL_CERT_DIR included, so a corporate proxy's CA set there works with no option at all.
`--ca-file` instead trusts exactly the CAs in one PEM file (as curl's --cacert does), for a
relay whose certificate a private CA signed.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

# OpenSSL's X509_V_ERR_* codes worth their own sentence (x509_vfy.h).
_EXPIRED = 10
_NOT_YET_VALID = 9
_HOSTNAME_MISMATCH = 62
_SELF_SIGNED = 18


class CAFileError(ValueError):
    """--ca-file names no usable PEM file of CA certificates: the user fixes the option."""


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The context every https/wss call to a relay uses: one per CA file, made once."""
    return _context(None if ca_file is None else Path(ca_file).resolve())


@functools.cache
def _context(ca_file: Path | None) -> ssl.SSLContext:
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except FileNotFoundError:
        raise CAFileError(f"--ca-file {ca_file}: no such file") from None
    except IsADirectoryError:
        raise CAFileError(f"--ca-file {ca_file}: is a directory, not a PEM file") from None
    except OSError as exc:
        raise CAFileError(f"--ca-file {ca_file}: {exc.strerror}") from None
    except ssl.SSLError as exc:
        raise CAFileError(
            f"--ca-file {ca_file} holds no PEM certificate OpenSSL can read "
            f"({exc.reason or exc}); it must be the CA's certificate, as "
            "-----BEGIN CERTIFICATE----- blocks"
        ) from None


def certificate_problem(
    relay: str, exc: ssl.SSLCertVerificationError, ca_file: Path | None = None
) -> str:
    """Why the relay's certificate was not accepted, and what the user does about it."""
    detail = getattr(exc, "certificate_error", exc)  # aiohttp wraps OpenSSL's error
    code = getattr(detail, "verify_code", None)
    said = getattr(detail, "verify_message", None) or str(detail)
    trusted = f"the CA in --ca-file {ca_file}" if ca_file else "this machine's trust store"
    head = f"the relay at {relay} presented a certificate hooktap will not accept ({said})"
    if code == _HOSTNAME_MISMATCH:
        return (
            f"{head}: it was not issued for that host name; use the name the certificate "
            "names in --relay (or HOOKTAP_RELAY)"
        )
    if code in (_EXPIRED, _NOT_YET_VALID):
        return f"{head}: the relay's operator must renew it (or check this machine's clock)"
    fix = (
        "check that --ca-file is the CA that signed the relay's certificate"
        if ca_file
        else "if a private CA signed it, pass that CA's certificate with --ca-file ca.pem, or "
        "add it to the file SSL_CERT_FILE names"
    )
    self_signed = " (it is self-signed)" if code == _SELF_SIGNED else ""
    return f"{head}: it is not signed by {trusted}{self_signed}; {fix}"


def handshake_problem(relay: str, exc: ssl.SSLError) -> str:
    """A TLS failure that is not about the certificate: most often http and https mixed up."""
    detail = getattr(exc, "os_error", exc)  # aiohttp wraps OpenSSL's error
    reason = getattr(detail, "reason", None) or str(detail)
    hint = (
        "; is the relay serving plain http? then use an http:// URL, or start it with "
        "--tls-cert/--tls-key"
        if "WRONG_VERSION_NUMBER" in str(reason).upper()
        else ""
    )
    return f"TLS with the relay at {relay} failed ({reason}){hint}"


class ServerCertError(ValueError):
    """--tls-cert/--tls-key cannot serve: a sentence naming the option and the fix."""


class _Encrypted(Exception):
    pass


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal, and a relay under a process
    # manager would hang there for good.
    raise _Encrypted


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The relay's TLS context: TLS 1.2 at least, Python's default ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _Encrypted:
        raise ServerCertError(
            f"--tls-key {key} is encrypted; the relay needs it unencrypted (kept readable by "
            f"its user only), e.g. openssl pkey -in {key} -out relay-key.pem"
        ) from None
    except OSError as exc:
        if not isinstance(exc, ssl.SSLError):
            name = exc.filename or cert
            raise ServerCertError(f"cannot read {name}: {exc.strerror}") from None
        reason = exc.reason or ""
        if reason == "KEY_VALUES_MISMATCH":
            why = f"--tls-key {key} is not the key of the certificate in --tls-cert {cert}"
        else:
            why = (
                f"--tls-cert {cert} and --tls-key {key} must be PEM files: the certificate "
                f"(then any intermediates) and its private key ({reason or exc})"
            )
        raise ServerCertError(why) from None
    return context
