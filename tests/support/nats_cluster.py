"""Three real nats-servers routed into one JetStream cluster, for tests of relays that must
keep serving when a node dies.

Every port is chosen up front (a node's routes name the others before they exist), each node
has a monitoring port, and readiness is read from that port (/jsz: a JetStream metadata leader
every node agrees on), never from a sleep. Which node a client is connected to is read from
/connz, so a test can SIGKILL exactly that one.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.nats import nats_server_binary
from support.procs import free_port, stop_process

CLUSTER_NAME = "hooktap"


@dataclass
class Node:
    name: str
    port: int
    route_port: int
    monitor_port: int
    store: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def route(self) -> str:
        return f"nats://127.0.0.1:{self.route_port}"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def monitor(self, path: str) -> dict[str, Any]:
        """One JSON answer of the node's monitoring endpoint (/jsz, /connz?subs=1, ...)."""
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients or its routes, as a crashed machine."""
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class NatsCluster:
    nodes: list[Node]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def nats_option(self) -> str:
        """Every client URL, as `hooktap relay --nats` takes them."""
        return ",".join(self.urls)

    def alive(self) -> list[Node]:
        return [node for node in self.nodes if node.alive()]

    def node(self, name: str) -> Node:
        (found,) = [node for node in self.nodes if node.name == name]
        return found

    def holding(self, subject: str) -> list[Node]:
        """The live nodes with a client connection subscribed to `subject`."""
        found = []
        for node in self.alive():
            conns = node.monitor("/connz?subs=1").get("connections") or []
            if any(subject in (conn.get("subscriptions_list") or []) for conn in conns):
                found.append(node)
        return found

    def meta(self, node: Node) -> dict[str, Any]:
        """JetStream's metadata group as `node` sees it ({} while it cannot say)."""
        try:
            return node.monitor("/jsz").get("meta_cluster") or {}
        except (OSError, urllib.error.URLError, ValueError):
            return {}

    def formed(self) -> bool:
        """Every live node names the same leader, and that leader has every other node
        current: before that, JetStream refuses a stream of three replicas (and the relay
        would settle for one)."""
        names = {node.name for node in self.alive()}
        leaders = {self.meta(node).get("leader") or "" for node in self.alive()}
        if len(leaders) != 1 or not leaders <= names:
            return False
        peers = self.meta(self.node(leaders.pop())).get("replicas") or []
        current = {peer.get("name") for peer in peers if peer.get("current")}
        return len(current) == len(names) - 1

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        names = {node.name for node in self.alive()}
        while True:
            if self.formed():
                return
            for node in self.nodes:
                if node.popen is not None and node.popen.poll() is not None and node.name in names:
                    raise RuntimeError(f"{node.name} exited: {node.log()}")
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n.name}\n{n.log()}" for n in self.nodes)
                raise TimeoutError(f"no JetStream cluster formed in {timeout} s: {logs}")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            if node.popen is not None:
                stop_process(node.popen)


def _start_node(node: Node, routes: list[str]) -> None:
    node.store.mkdir(parents=True, exist_ok=True)
    args = [
        *("-a", "127.0.0.1", "-p", str(node.port), "-m", str(node.monitor_port)),
        *("--server_name", node.name, "--cluster_name", CLUSTER_NAME),
        *("--cluster", node.route, "--routes", ",".join(routes)),
        *("-js", "-sd", str(node.store)),
    ]
    # Its log goes to a file, not a pipe nobody may be reading: a full pipe would stall it.
    with node.log_path.open("wb") as log:
        node.popen = subprocess.Popen(
            [nats_server_binary(), *args], stdout=log, stderr=subprocess.STDOUT
        )


@contextlib.contextmanager
def running_cluster(root: Path, size: int = 3) -> Iterator[NatsCluster]:
    """`size` JetStream nodes n0..n{size-1} on loopback, yielded once JetStream's metadata
    group is formed (see NatsCluster.formed), all stopped afterwards (a node a test killed
    already is left as it is)."""
    nodes = [
        Node(f"n{i}", free_port(), free_port(), free_port(), root / f"n{i}", root / f"n{i}.log")
        for i in range(size)
    ]
    cluster = NatsCluster(nodes)
    try:
        for node in nodes:
            _start_node(node, [other.route for other in nodes if other is not node])
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()
