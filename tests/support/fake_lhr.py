"""What localhost.run prints on an ssh session, for a test sshd's ForceCommand.

Real sshd carries the real `ssh -R` forward; this only stands in for the service's words.
Asked for `--output json` (in SSH_ORIGINAL_COMMAND) it prints JSON lines as localhost.run
does, else its plain-text announcement:

    fake_lhr.py --address NAME.lhr.life [--rotate-file PATH --next OTHER.lhr.life]

With --rotate-file, once PATH exists it announces --next, as a free name that rotates; with
--refuse MESSAGE it announces a failed forward instead of the address. It
stays until the session that started it is gone (its parent sshd exits).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path


def announce(address: str, as_json: bool, connection: str) -> None:
    message = f"{address} tunneled with tls termination, https://{address}"
    if as_json:
        event = {
            "connection_id": connection,
            "event": "tcpip-forward",
            "message": message,
            "address": address,
            "listen_host": address,
            "status": "success",
            "tls_termination": True,
        }
        print(json.dumps(event), flush=True)
    else:
        print(message, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--rotate-file")
    parser.add_argument("--next")
    parser.add_argument("--refuse", help="announce this failure instead of the address")
    args = parser.parse_args()
    as_json = "--output json" in os.environ.get("SSH_ORIGINAL_COMMAND", "")
    connection = secrets.token_hex(8)
    if as_json:
        said = "authenticated as anonymous user"
        authn = {"connection_id": connection, "event": "authn", "message": said}
        print(json.dumps(authn), flush=True)
    else:
        print("\n===============================================================\n", flush=True)
    if args.refuse:
        failure = {"connection_id": connection, "event": "tcpip-forward", "status": "failure"}
        print(json.dumps({**failure, "message": args.refuse}), flush=True)
    else:
        announce(args.address, as_json, connection)
    parent = os.getppid()
    rotated = False
    while os.getppid() == parent:
        if args.rotate_file and not rotated and Path(args.rotate_file).exists():
            announce(args.next, as_json, connection)
            rotated = True
        time.sleep(0.05)
    sys.exit(0)


if __name__ == "__main__":
    main()
