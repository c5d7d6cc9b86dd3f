"""Copy as curl, parsed by a real shell: whatever a stranger posted to the public URL (method,
path, headers, body), pasting the command runs nothing but curl, with exactly these arguments.

`curl` here is a shell function defined before the command, which prints its argument count,
its arguments NUL-separated, then whatever it reads on stdin. No network is involved and none is
needed: what is under test is how /bin/sh splits and expands the copied command, not curl. A
real curl that got the same arguments would send the same request (test_keys runs one).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hooktap.tui.present import curl_command

# Each of these would create a file in the working directory if the shell ran it.
HOSTILE = [
    "`touch backtick`",
    "$(touch dollar)",
    "x; touch semicolon",
    "x && touch and",
    "x | touch pipe",
    "it's 'single' quoted",
    'a "double" $HOME \\ \\n',
    "line one\ntouch newline\n",
    "${IFS}touch${IFS}ifs",
    "*",
    "~",
    "#comment",
    "> redirected",
    "-X",
    "%s%n",
    "",
]
SHELL = """curl() { printf '%s\\0' "$#" "$@"; cat; }
"""


def run(command: str, cwd: Path) -> tuple[list[str], bytes]:
    """The arguments curl would get and what it would read on stdin, as /bin/sh sees them."""
    done = subprocess.run(
        ["/bin/sh", "-c", SHELL + command],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count, _, rest = done.stdout.partition(b"\0")
    args = rest.split(b"\0", int(count))
    stdin = args.pop()  # after the last argument's NUL: what curl read
    return [a.decode() for a in args], stdin


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    empty = tmp_path / "cwd"
    empty.mkdir()
    return empty


def expected(method: str, url: str, headers: list[tuple[str, str]]) -> list[str]:
    out = ["-sS", "--globoff", "-X", method, url]
    for name, value in headers:
        out += ["-H", f"{name}: {value}"]
    return out


@pytest.mark.parametrize("evil", HOSTILE)
def test_every_word_reaches_curl_literally_and_nothing_runs(evil: str, cwd: Path) -> None:
    method = evil or "POST"
    url = f"http://127.0.0.1:8000/c/x?q={evil}&t=`touch url`"
    headers = [("X-Evil", evil or "v"), (f"X-{evil[:3]}" if evil else "X-Name", "$(touch name)")]
    body = f'{{"note": "{evil}"}} $(touch body) `touch body2`\n'.encode()
    args, stdin = run(curl_command(url, method, headers, body), cwd)
    assert list(cwd.iterdir()) == []  # nothing ran
    assert args == [*expected(method, url, headers), "--data-binary", body.decode()]
    assert stdin == b""


def test_a_body_from_stdin_is_byte_exact(cwd: Path) -> None:
    """Bodies curl must not see as an argument: binary ones, and text starting with @, which
    curl would read as a file name to send (`@/home/you/.ssh/id_ed25519`)."""
    for body in (
        b"@/etc/passwd $(touch at)",
        b"@'quoted`touch at2`'\n\n",
        b"\x00\xff$(touch bin)\n'",
        bytes(range(256)),
    ):
        args, stdin = run(curl_command("http://h/", "POST", [], body), cwd)
        assert args == [*expected("POST", "http://h/", []), "--data-binary", "@-"]
        assert stdin == body
    assert list(cwd.iterdir()) == []


def test_text_bodies_keep_every_byte_as_an_argument(cwd: Path) -> None:
    for body in ("trailing newlines\n\n\n", "\r\ncrlf\r\n", "ünïcödé ✓", "'", "\\", "-d x"):
        args, _ = run(curl_command("http://h/", "PUT", [], body.encode()), cwd)
        assert args[-2:] == ["--data-binary", body]


def test_headers_curl_would_read_differently(cwd: Path) -> None:
    """`Name:` with nothing after it tells curl to remove the header; `Name;` sends it empty.
    Host and Content-Length are curl's to write, for the URL and body it sends."""
    headers = [
        ("Host", "evil.example"),
        ("Content-Length", "999"),
        ("X-Empty", ""),
        ("X-Blank", "  "),
        ("svix-id", "msg_1"),
    ]
    args, _ = run(curl_command("http://h/", "POST", headers, b""), cwd)
    empties = ["-H", "X-Empty;", "-H", "X-Blank;"]
    assert args == [*expected("POST", "http://h/", []), *empties, "-H", "svix-id: msg_1"]
