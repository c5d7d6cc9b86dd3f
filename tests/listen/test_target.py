"""What users type after --forward, and where it sends deliveries: every accepted form names
the host and port meant, and a form the resolver would read as some other machine is
refused with a reason, never resolved."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hooktap.cli import main
from hooktap.cli.common import BadInput, valid_target
from hooktap.listen.target import parse_target


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("8000", "http://localhost:8000/"),
        ("3000/webhooks/pivotal", "http://localhost:3000/webhooks/pivotal"),
        ("3000/", "http://localhost:3000/"),
        ("  3000/hooks  ", "http://localhost:3000/hooks"),
        ("localhost:8000", "http://localhost:8000/"),
        ("localhost:8000/webhooks/pivotal", "http://localhost:8000/webhooks/pivotal"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000/"),
        ("127.0.0.1:8000/h", "http://127.0.0.1:8000/h"),
        ("http://10.0.0.1/", "http://10.0.0.1/"),
        ("https://127.0.0.1:8443/h", "https://127.0.0.1:8443/h"),
        ("https://hooks.example.com/pivotal/", "https://hooks.example.com/pivotal"),
        ("[::1]:8000", "http://[::1]:8000/"),
        ("1e100.net:80", "http://1e100.net/"),
    ],
)
def test_accepted_forms_name_the_host_meant(text: str, url: str) -> None:
    assert parse_target(text).url() == url


def test_a_port_with_a_path_is_a_port_on_this_machine() -> None:
    target = parse_target("3000/webhooks/pivotal")
    assert (target.host, target.port, target.path) == ("localhost", 3000, "/webhooks/pivotal")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # The resolver reads each of these hosts as an IPv4 address nobody typed.
        ("3000:8000", "has host '3000', which is not an IPv4 address"),
        ("http://3000/webhooks", "use localhost:3000"),
        ("127.1:8000", "has host '127.1'"),  # 127.0.0.1 to inet_aton
        ("0x7f000001:80", "has host '0x7f000001'"),
        ("010.0.0.1:80", "has host '010.0.0.1'"),  # octal: 8.0.0.1
        ("1.2.3.4.5", "has host '1.2.3.4.5'"),
        ("3000?x", "must not have a query"),
        ("3000/x#frag", "must not have a query or fragment"),
        ("99999/x", "Port out of range"),
        ("0/x", "outside 1-65535"),
        ("3000/a b", "whitespace"),
    ],
)
def test_numeric_looking_hosts_are_refused_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(ValueError, match="forward target") as refused:
        parse_target(text)
    assert words in str(refused.value), refused.value


def test_the_cli_takes_a_port_and_path_and_refuses_a_numeric_host() -> None:
    assert valid_target("3000/webhooks/pivotal").url() == "http://localhost:3000/webhooks/pivotal"
    with pytest.raises(BadInput, match="has host '3000'"):
        valid_target("3000:8000/webhooks/pivotal")
    result = CliRunner().invoke(main, ["listen", "--forward", "3000:8000/webhooks", "--json"])
    assert result.exit_code == 2, result.output
    assert "has host '3000'" in result.output and "use localhost:3000" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
