#!/usr/bin/env python
"""Summarize py-spy raw (collapsed) stacks written by `tunnel.py --profile DIR`.

For each file: the functions with the most self time (the frame on top of the stack) and the
most inclusive time (anywhere on the stack), as percentages of the samples where the process
was busy (py-spy leaves out idle waits such as epoll by default).

    python benchmarks/hotspots.py /tmp/prof/1KB-c32-relay-listen.txt --top 25
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str, with_line: bool) -> str:
    """'ingress (/work/main/src/hooktap/relay/app.py:171)' -> 'ingress hooktap/relay/app.py'."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3":
                path = "stdlib/" + path.split("/", 1)[1]
            break
    where = f"{path}:{m['line']}" if with_line and m["line"] else path
    return f"{m['func']} ({where})"


def load(path: Path, with_line: bool) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for raw in path.read_text("utf-8", "replace").splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        names = [_short(f, with_line) for f in frames]
        self_time[_short(frames[-1], True)] += n
        for name in set(names):
            inclusive[name] += n
    return total, self_time, inclusive


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--grep", help="only inclusive rows whose name contains this")
    args = p.parse_args(argv)
    for path in args.files:
        total, self_time, inclusive = load(path, with_line=False)
        print(f"== {path.name}: {total} busy samples")
        if not total:
            continue
        print("  self time:")
        for name, n in self_time.most_common(args.top):
            print(f"    {100 * n / total:5.1f}%  {name}")
        print("  inclusive:")
        rows = [(k, v) for k, v in inclusive.most_common() if not args.grep or args.grep in k]
        for name, n in rows[: args.top]:
            print(f"    {100 * n / total:5.1f}%  {name}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
