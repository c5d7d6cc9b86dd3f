"""A real OpenSSH server of the test's own: loopback, a free port, a temporary host key,
one temporary client key, remote forwarding allowed, and a ForceCommand that prints what
localhost.run prints (fake_lhr.py). Skips when sshd, ssh or ssh-keygen is not installed
(Debian: `apt-get install -y openssh-server openssh-client`)."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hooktap.public import LocalhostRun
from support.procs import free_port, stop_process

FAKE_LHR = Path(__file__).with_name("fake_lhr.py")


@dataclass
class Sshd:
    folder: Path
    port: int
    user: str
    forward_port: int  # the port `ssh -R` may ask this server to listen on
    log: list[str]

    def provider(self, key: str = "client_key", **changes: Any) -> LocalhostRun:
        """`--public ssh`'s provider pointed at this server instead of localhost.run."""
        here = LocalhostRun(
            host="127.0.0.1",
            user=self.user,
            port=self.port,
            remote_port=self.forward_port,
            ssh_options=self.client_options(key),
        )
        return dataclasses.replace(here, **changes)

    def client_options(self, key: str = "client_key") -> tuple[str, ...]:
        """What the ssh client needs to log in with `key` (authorized: client_key)."""
        return (
            "-F", "/dev/null",
            "-i", str(self.folder / key),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.folder / 'known_hosts'}",
        )  # fmt: skip


def _find_sshd() -> str | None:
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )


@contextlib.contextmanager
def running_sshd(folder: Path, force_command: list[str]) -> Iterator[Sshd]:
    sshd = _find_sshd()
    if sshd is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("no OpenSSH server here (apt-get install -y openssh-server)")
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key", "stranger_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)],
            check=True,
            timeout=30,
        )
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port, forward_port = free_port(), free_port()
    command = shlex.join([sys.executable, str(FAKE_LHR), *force_command])
    config = folder / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {folder / "host_key"}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {folder / "authorized_keys"}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding remote
GatewayPorts no
PermitListen 127.0.0.1:{forward_port} localhost:{forward_port}
ForceCommand {command}
LogLevel VERBOSE
"""
    )
    # sshd refuses to start without its privilege-separation folder, which only its init
    # script makes; it is not ours to remove afterwards.
    with contextlib.suppress(PermissionError):  # not root: sshd runs without privsep
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        said: list[str] = []
        for line in proc.stderr:  # readiness: sshd says so once it listens
            said.append(line)
            if "Server listening on" in line:
                break
        else:
            pytest.fail(f"sshd did not start: {''.join(said)}")
        threading.Thread(target=said.extend, args=(proc.stderr,), daemon=True).start()
        yield Sshd(folder, port, getpass.getuser(), forward_port, said)
    finally:
        stop_process(proc)
