"""A small check that a real answer matches resetd's OpenAPI description.

It knows the parts of JSON Schema the description uses (``$ref`` within the
document, ``type``, ``const``, ``enum``, ``required``, ``properties``,
``additionalProperties: false``, ``items``, ``minItems``, ``pattern``) and
fails loudly on any other keyword, so the description cannot drift into
something this check silently ignores.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import ClientResponse

from resetd.api.v1 import OPENAPI_FILE

_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
}
_IGNORED = {"description", "title"}


def description() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    return doc


def validate(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str = "$") -> None:
    """Raises AssertionError naming the first place ``value`` breaks ``schema``."""
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part]
        validate(value, target, doc, where)
        return
    unknown = (
        set(schema)
        - _IGNORED
        - {
            "type",
            "const",
            "enum",
            "required",
            "properties",
            "additionalProperties",
            "items",
            "minItems",
            "pattern",
        }
    )
    assert not unknown, f"{where}: the check does not know {sorted(unknown)}"
    if "type" in schema:
        assert isinstance(value, _TYPES[schema["type"]]), f"{where}: not a {schema['type']}"
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} is not {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not among {schema['enum']}"
    if "pattern" in schema:
        assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: {name!r} is missing"
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                validate(item, properties[name], doc, f"{where}.{name}")
            else:
                assert schema.get("additionalProperties", True) is not False, (
                    f"{where}: {name!r} is not described"
                )
    if isinstance(value, list):
        assert len(value) >= schema.get("minItems", 0), f"{where}: too few items"
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), doc, f"{where}[{i}]")


async def check_answer(resp: ClientResponse, path: str, method: str) -> Any:
    """The answer's JSON (None for none), after checking its status, headers and
    body against the description of ``method path`` (``path`` under /api/v1)."""
    doc = description()
    operation = doc["paths"][path][method.lower()]
    described = operation["responses"].get(str(resp.status))
    assert described is not None, f"{method} {path}: {resp.status} is not described"
    for header in described.get("headers", {}):
        assert header in resp.headers, f"{method} {path} {resp.status}: no {header} header"
        validate(resp.headers[header], described["headers"][header]["schema"], doc, header)
    body = await resp.read()
    content = described.get("content")
    if content is None:
        assert body == b"", f"{method} {path} {resp.status}: a body where none is described"
        return None
    assert resp.content_type in content, f"{method} {path}: {resp.content_type} not described"
    value = json.loads(body)
    validate(value, content[resp.content_type]["schema"], doc)
    return value
