"""The event catalog: every documented type exists, every sample fits its object's schema."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import pytest

from hooktap.pivotal.catalog import (
    BadOverride,
    UnknownEventType,
    encode,
    event_types,
    events,
    parse_override,
    sample,
    schemas,
)

DOCUMENTED = {
    "customer.created",
    "customer.updated",
    "customer.at_risk",
    "customer.churned",
    "onboarding.updated",
    "onboarding.delayed",
    "task.updated",
    "task.completed",
    "phase.changed",
    "webhook.ping",
}
JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def problems(value: Any, schema: dict[str, Any], where: str = "data") -> list[str]:
    """A small subset of JSON Schema: enough to keep the samples honest without a dependency."""
    found: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        is_bool = isinstance(value, bool)
        ok = any(
            isinstance(value, JSON_TYPES[k]) and not (is_bool and k in {"integer", "number"})
            for k in kinds
        )
        if not ok:
            return [f"{where}: {value!r} is not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: {value!r} != {schema['const']!r}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, str) and schema.get("format") == "date-time":
        datetime.fromisoformat(value)
    if isinstance(value, str) and schema.get("format") == "date":
        datetime.strptime(value, "%Y-%m-%d")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{where}: missing {key}")
        for key, item in value.items():
            if key in props:
                found += problems(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{where}: unexpected {key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], f"{where}[{i}]")
    return found


def test_the_validator_can_fail() -> None:
    customer = schemas()["customer"]
    good = sample("customer.updated")["data"]
    assert problems(good, customer) == []
    assert problems({**good, "health_score": "82"}, customer)
    assert problems({**good, "lifecycle_stage": "zombie"}, customer)
    assert problems({k: v for k, v in good.items() if k != "name"}, customer)
    assert problems({**good, "extra": 1}, customer)
    assert problems({**good, "tags": [1]}, customer)
    assert problems({**good, "health_score": True}, customer)  # bool is not an integer


def test_every_documented_type_exists_and_is_flagged() -> None:
    types = event_types()
    assert set(types) >= DOCUMENTED
    flagged = {e["type"] for e in events() if e["documented"]}
    assert flagged == DOCUMENTED
    assert len(types) == len(set(types))
    assert 18 <= len(types) <= 24  # "around twenty"


def test_four_objects_each_with_create_update_delete() -> None:
    objects = {e["object"] for e in events()} - {"endpoint"}
    assert objects == {"customer", "contact", "onboarding", "task"}
    for obj in objects:
        for verb in ("created", "updated", "deleted"):
            assert f"{obj}.{verb}" in event_types()


@pytest.mark.parametrize("event_type", event_types())
def test_every_sample_is_a_valid_envelope_with_a_full_record(event_type: str) -> None:
    entry = next(e for e in events() if e["type"] == event_type)
    assert entry["description"]
    for doc in (entry["sample"], sample(event_type)):
        assert set(doc) == {"id", "type", "created_at", "data"}
        assert doc["type"] == event_type
        assert doc["id"].startswith("evt_")
        datetime.fromisoformat(doc["created_at"])
        assert problems(doc["data"], schemas()[entry["object"]]) == []
        assert doc["data"]["object"] == entry["object"]


def test_state_flip_samples_show_the_state() -> None:
    assert sample("customer.at_risk")["data"]["health_status"] == "at_risk"
    assert sample("customer.churned")["data"]["churned_at"] is not None
    assert sample("onboarding.delayed")["data"]["status"] == "delayed"
    assert sample("onboarding.completed")["data"]["completed_at"] is not None
    assert sample("task.completed")["data"]["status"] == "completed"


def test_samples_are_fresh_each_call() -> None:
    first, second = sample("task.updated"), sample("task.updated")
    assert first["id"] != second["id"]
    created = datetime.fromisoformat(first["created_at"]).timestamp()
    assert abs(created - time.time()) < 5
    assert first["data"]["updated_at"] == first["created_at"]
    first["data"]["title"] = "mutated"
    assert sample("task.updated")["data"]["title"] != "mutated"


def test_overrides_parse_json_and_fall_back_to_strings() -> None:
    doc = sample(
        "customer.updated",
        {
            "data.health_score": "12",
            "data.name": "Acme Corp",
            "data.tags": '["vip"]',
            "data.owner_id": "null",
            "data.custom_fields.tier": "gold",
            "data.new.nested": "true",
            "id": "evt_fixed",
        },
    )
    data = doc["data"]
    assert data["health_score"] == 12
    assert data["name"] == "Acme Corp"
    assert data["tags"] == ["vip"]
    assert data["owner_id"] is None
    assert data["custom_fields"]["tier"] == "gold"
    assert data["new"] == {"nested": True}
    assert doc["id"] == "evt_fixed"


def test_override_into_a_list_and_bad_paths() -> None:
    assert sample("customer.updated", {"data.tags.0": "vip"})["data"]["tags"][0] == "vip"
    with pytest.raises(BadOverride, match="not an index"):
        sample("customer.updated", {"data.tags.9": "x"})
    with pytest.raises(BadOverride, match=r"data\.name is 'Northwind"):
        sample("customer.updated", {"data.name.first": "x"})
    with pytest.raises(BadOverride, match="empty segment"):
        sample("customer.updated", {"data..x": "1"})


def test_parse_override() -> None:
    assert parse_override("data.health_score=12") == ("data.health_score", 12)
    assert parse_override("data.name=a=b") == ("data.name", "a=b")
    assert parse_override("data.note=") == ("data.note", "")
    with pytest.raises(BadOverride, match="expected KEY=VALUE"):
        parse_override("data.health_score")
    with pytest.raises(BadOverride):
        parse_override("=12")


def test_unknown_event_type_lists_known_ones() -> None:
    with pytest.raises(UnknownEventType) as err:
        sample("customer.updatd")
    message = str(err.value)
    assert "did you mean customer.updated?" in message
    for known in event_types():
        assert known in message
    assert err.value.known == event_types()


def test_encode_does_not_survive_a_reserialization() -> None:
    doc = sample("customer.updated", {"data.name": "Zürich Freight <EU> & Co"})
    wire = encode(doc)
    assert json.loads(wire) == doc
    assert b"Z\xc3\xbcrich Freight \\u003cEU\\u003e \\u0026 Co" in wire
    assert b", " not in wire and b'": ' not in wire
    assert json.dumps(json.loads(wire)).encode() != wire  # Python's default
    assert json.dumps(json.loads(wire), separators=(",", ":"), ensure_ascii=False).encode() != wire
