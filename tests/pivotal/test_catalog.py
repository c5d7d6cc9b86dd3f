"""The event catalog: every documented type exists, every sample fits its object's schema."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hooktap.pivotal.catalog import (
    BadOverride,
    UnknownEventType,
    UnknownField,
    encode,
    event_schema,
    event_types,
    events,
    override,
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
    good = sample("customer.updated")["data"]["object"]
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
        # The record in data.object, as Pivotal's handler types it: { data: { object } }.
        assert set(doc["data"]) == {"object"}
        assert problems(doc["data"]["object"], schemas()[entry["object"]]) == []
        assert doc["data"]["object"]["object"] == entry["object"]
        assert problems(doc, event_schema(event_type)) == []


def test_state_flip_samples_show_the_state() -> None:
    def record(event_type: str) -> dict[str, Any]:
        return sample(event_type)["data"]["object"]

    assert record("customer.at_risk")["health_status"] == "at_risk"
    assert record("customer.churned")["churned_at"] is not None
    assert record("onboarding.delayed")["status"] == "delayed"
    assert record("onboarding.completed")["completed_at"] is not None
    assert record("task.completed")["status"] == "completed"


def test_samples_are_fresh_each_call() -> None:
    first, second = sample("task.updated"), sample("task.updated")
    assert first["id"] != second["id"]
    created = datetime.fromisoformat(first["created_at"]).timestamp()
    assert abs(created - time.time()) < 5
    assert first["data"]["object"]["updated_at"] == first["created_at"]
    first["data"]["object"]["title"] = "mutated"
    assert sample("task.updated")["data"]["object"]["title"] != "mutated"


def test_overrides_parse_json_and_fall_back_to_strings() -> None:
    doc = sample(
        "customer.updated",
        {
            "data.object.health_score": "12",
            "data.object.name": "Acme Corp",
            "data.object.tags": '["vip"]',
            "data.object.owner_id": "null",
            "data.object.custom_fields.tier": "gold",
            "data.object.domain": '"12"',
            "id": "evt_fixed",
        },
    )
    data = doc["data"]["object"]
    assert data["health_score"] == 12
    assert data["name"] == "Acme Corp"
    assert data["tags"] == ["vip"]
    assert data["owner_id"] is None
    assert data["custom_fields"]["tier"] == "gold"  # a free-form object takes any name
    assert data["domain"] == "12"  # quoted: text
    assert doc["id"] == "evt_fixed"


def test_override_into_a_list_and_bad_paths() -> None:
    doc = sample("customer.updated", {"data.object.tags.0": "vip"})
    assert doc["data"]["object"]["tags"][0] == "vip"
    with pytest.raises(BadOverride, match="not an index"):
        sample("customer.updated", {"data.object.tags.9": "x"})
    with pytest.raises(BadOverride, match=r"data\.object\.name is 'Northwind"):
        sample("customer.updated", {"data.object.name.first": "x"})
    with pytest.raises(BadOverride, match="empty segment"):
        sample("customer.updated", {"data..x": "1"})


def test_parse_override() -> None:
    assert parse_override("data.object.health_score=12") == ("data.object.health_score", 12)
    assert parse_override("data.object.name=a=b") == ("data.object.name", "a=b")
    assert parse_override("data.object.note=") == ("data.object.note", "")
    with pytest.raises(BadOverride, match=r"expected KEY=VALUE \(e\.g\. data\.object\."):
        parse_override("data.object.health_score")
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
    doc = sample("customer.updated", {"data.object.name": "Zürich Freight <EU> & Co"})
    wire = encode(doc)
    assert json.loads(wire) == doc
    assert b"Z\xc3\xbcrich Freight \\u003cEU\\u003e \\u0026 Co" in wire
    assert b", " not in wire and b'": ' not in wire
    assert json.dumps(json.loads(wire)).encode() != wire  # Python's default
    assert json.dumps(json.loads(wire), separators=(",", ":"), ensure_ascii=False).encode() != wire


# --- overrides held to the event's schema ------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "path", "where", "nearest"),
    [
        ("customer.updated", "date.health_score", "date", "data.object.health_score"),
        (
            "customer.updated",
            "data.object.healthscore",
            "data.object.healthscore",
            "data.object.health_score",
        ),
        # The shape samples had before the record moved into data.object.
        ("customer.updated", "data.health_score", "data.health_score", "data.object.health_score"),
        ("customer.updated", "data.healthscore", "data.healthscore", "data.object.health_score"),
        (
            "onboarding.updated",
            "data.object.phase.nme",
            "data.object.phase.nme",
            "data.object.phase.name",
        ),
        # A null field whose schema is not an object has no fields to create.
        ("customer.updated", "data.object.churned_at.x", "data.object.churned_at.x", None),
        ("customer.updated", "data.object.zzzzzz", "data.object.zzzzzz", None),
    ],
)
def test_a_path_the_event_does_not_have_is_refused_with_the_nearest(
    event_type: str, path: str, where: str, nearest: str | None
) -> None:
    with pytest.raises(UnknownField) as err:
        sample(event_type, {path: "12"})
    assert err.value.path == path
    assert err.value.suggestion == nearest
    message = str(err.value)
    assert f"{event_type} events have no field {where!r}" in message
    assert (f"did you mean {nearest}?" in message) if nearest else ("did you mean" not in message)


def test_new_fields_only_when_allowed() -> None:
    doc = sample("customer.updated", {"data.object.healthscore": "5"}, allow_new_fields=True)
    assert doc["data"]["object"]["healthscore"] == 5
    assert doc["data"]["object"]["health_score"] == 82  # untouched: that is why it is refused
    # A field the document has is known even when the schema lacks it (a --data-file record).
    doc = sample("customer.updated")
    doc["data"]["object"] = {"id": "cus_1", "extra": {"a": 1}}
    override(doc, "customer.updated", [("data.object.extra.a", 2)])
    assert doc["data"]["object"]["extra"] == {"a": 2}
    with pytest.raises(UnknownField):
        override(doc, "customer.updated", [("data.object.extr", 2)])


@pytest.mark.parametrize("raw", ["1e999", "-1e999", "1E400", "[1, 2e308]", '{"a": 9e999}'])
def test_numbers_past_a_double_are_refused_not_sent_as_infinity(raw: str) -> None:
    with pytest.raises(BadOverride, match=r"too large for a JSON number.*quote it"):
        parse_override(f"data.object.health_score={raw}")
    quoted = parse_override(f'data.object.name="{raw}"') if '"' not in raw else None
    assert quoted is None or quoted[1] == raw


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e9x"])
def test_what_json_does_not_have_is_text(raw: str) -> None:
    assert parse_override(f"data.object.name={raw}") == ("data.object.name", raw)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('data.object.name="\\ud800"', r"lone surrogate \('\\ud800'\)"),
        ("data.object.name=caf\udce9", r"lone surrogate \('\\udce9'\)"),  # undecodable argv
        ("data.object.name=" + "[" * 2000 + "]" * 2000, "nested too deep"),
        ("data.object.health_score=" + "9" * 5000, "cannot be read"),
    ],
)
def test_values_that_cannot_be_sent_are_refused(text: str, message: str) -> None:
    with pytest.raises(BadOverride, match=message):
        parse_override(text)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (".".join(["data"] * 2000), "has 2,000 segments; at most 32"),
        ("data.object.\udcff", "lone surrogate"),
    ],
)
def test_paths_that_cannot_be_sent_are_refused(path: str, message: str) -> None:
    for allow in (False, True):
        with pytest.raises(BadOverride, match=message):
            sample("customer.updated", {path: "1"}, allow_new_fields=allow)


def _strict(wire: bytes) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} on the wire is not JSON")

    return json.loads(wire.decode("utf-8"), parse_constant=refuse)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,3})?[eE][+-]?[0-9]{1,4}", fullmatch=True),
        st.from_regex(r'"(\\u[dD][89a-fA-F][0-9a-fA-F]{2}|[a-z]){0,3}"', fullmatch=True),
    )
)
def test_any_value_goes_out_as_strict_json_or_is_refused(raw: str) -> None:
    try:
        doc = sample("customer.updated", {"data.object.name": raw})
    except BadOverride:
        return
    assert _strict(encode(doc))["data"]["object"]["name"] == doc["data"]["object"]["name"]
