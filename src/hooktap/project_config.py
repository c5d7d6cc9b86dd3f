"""`hooktap.toml`: the routes and event filter a team commits beside its code.

    # hooktap.toml
    [listen]
    forward = [
      "customer.*=localhost:8001/hooks",
      "task.*=localhost:8002/webhooks/pivotal",
      "localhost:8000/webhooks/pivotal",
    ]
    events = ["customer.*", "task.completed"]

The values are spelled exactly as on the command line (`--forward`, `--events`), so there is
one way to write a route. Flags win: `--forward` given on the command line replaces the file's
whole route list (merging two ordered lists would make "first match wins" hard to read), and
`--events` replaces its events. Secrets never belong here; the file is meant to be committed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "hooktap.toml"
_KNOWN = {"forward", "events"}


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ProjectConfig:
    path: Path
    forward: tuple[str, ...] = ()
    events: tuple[str, ...] = ()


def load(path: Path | None = None, cwd: Path | None = None) -> ProjectConfig | None:
    """The config at `path` (`--config`, which must exist), else `hooktap.toml` in the
    working directory when there is one, else None."""
    if path is None:
        found = (cwd or Path.cwd()) / FILE_NAME
        if not found.is_file():
            return None
        path = found
    try:
        # utf-8-sig: a byte-order mark, as some Windows editors write, is not TOML's error.
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return _parse(path, data)


def _parse(path: Path, data: dict[str, Any]) -> ProjectConfig:
    extra = sorted(set(data) - {"listen"})
    if extra:
        raise ConfigError(f"{path}: unknown table or key {extra[0]!r}; hooktap reads [listen]")
    listen = data.get("listen", {})
    if not isinstance(listen, dict):
        raise ConfigError(f"{path}: 'listen' must be a table, [listen]")
    unknown = sorted(set(listen) - _KNOWN)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r} in [listen]; known: {', '.join(sorted(_KNOWN))}"
        )
    return ProjectConfig(
        path=path,
        forward=_strings(path, listen, "forward"),
        events=_strings(path, listen, "events"),
    )


def _strings(path: Path, table: dict[str, Any], key: str) -> tuple[str, ...]:
    """A list of strings; a single string is a one-item list, and for events a comma-separated
    string as on the command line."""
    value = table.get(key, [])
    if isinstance(value, str):
        value = value.split(",") if key == "events" else [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: [listen] {key} must be a list of strings")
    items = tuple(v.strip() for v in value)
    if any(not v for v in items):
        raise ConfigError(f"{path}: [listen] {key} has an empty entry")
    return items
