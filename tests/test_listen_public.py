"""`hooktap listen --public`, wired: the real Listener with its embedded relay, given a public
URL by the cloudflared stand-in (tests/support/fake_cloudflared.py, which follows cloudflared's
documented interface; see test_public_cloudflared.py for how its public name is reached)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hooktap.listen.events import ListenerEvent, PublicChanged, Ready
from hooktap.listen.listener import Listener, ListenerConfig
from hooktap.listen.output import JsonLines
from hooktap.listen.target import parse_target
from hooktap.public import Cloudflared
from hooktap.store import Store
from support.public import Edges, client
from support.servers import running_handler, until
from test_public_cloudflared import edges  # noqa: F401 - the stand-in's fixture


async def test_listen_public_is_ready_with_a_probed_public_url_that_reaches_the_handler(
    tmp_path: Path,
    edges: Edges,  # noqa: F811
) -> None:
    async with running_handler() as handler:
        store = Store(tmp_path / "history.db")
        config = ListenerConfig(
            target=parse_target(handler.url + "/webhooks/pivotal"),
            port=0,
            public=Cloudflared(),
            public_connect_to=edges,
        )
        listener = Listener(config, store)
        events: list[ListenerEvent] = []
        out = io.StringIO()
        listener.subscribe(events.append)
        listener.subscribe(JsonLines(out, io.StringIO()))
        task = asyncio.create_task(listener.run())
        try:
            await until(lambda: any(isinstance(e, Ready) for e in events) or task.done(), 15)
            ready = next(e for e in events if isinstance(e, Ready))
            (name,) = list(edges)
            channel = ready.webhook_url.rsplit("/c/", 1)[1]
            assert ready.public_url == f"https://{name}/c/{channel}"
            assert "changes every time" in (ready.public_note or "")
            line = json.loads(out.getvalue().splitlines()[0])
            assert line["event"] == "ready" and line["public_url"] == ready.public_url
            assert line["webhook_url"] == ready.webhook_url  # the relay's own, as before
            # The probe that made it ready reached neither the handler nor history.
            assert handler.seen == [] and store.query(None, limit=5) == []

            async with client(edges) as http, http.post(ready.public_url, data=b"{}") as resp:
                assert resp.status == 200
            (seen,) = handler.seen
            assert seen.path_qs == "/webhooks/pivotal"
            assert len(store.query(None, limit=5)) == 1

            # The provider dies: the user hears at once, then of the new URL once probed.
            public = listener._public
            assert public is not None and public.tunnel.session is not None
            os.kill(public.tunnel.session.pid, signal.SIGKILL)
            await until(
                lambda: any(isinstance(e, PublicChanged) and e.url is None for e in events), 15
            )
            await until(lambda: any(isinstance(e, PublicChanged) and e.url for e in events), 30)
            back = next(e for e in events if isinstance(e, PublicChanged) and e.url)
            assert back.url != ready.public_url and back.url.endswith(f"/c/{channel}")
            kinds = [json.loads(x)["event"] for x in out.getvalue().splitlines()]
            assert kinds.count("public_url") >= 2
        finally:
            await listener.stop()
            await asyncio.wait_for(task, 15)
            store.close()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--public", "--relay", "http://relay.example"], "use one or the other"),
        (["--domain", "me.ngrok-free.app"], "use it with --public ngrok"),
        (["--public", "ssh", "--domain", "me.ngrok-free.app"], "ssh picks its own name"),
        (["--public", "ngrok"], "NGROK_AUTHTOKEN"),
    ],
)
def test_public_options_that_cannot_work_exit_2_saying_why(
    hooktap_home: Path, extra: list[str], words: str
) -> None:
    env = {**os.environ, "HOOKTAP_HOME": str(hooktap_home)}
    env.pop("NGROK_AUTHTOKEN", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hooktap",
            "listen",
            "--forward",
            "8000",
            "--json",
            "--port=0",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""  # never said ready
