"""Tool schemas as clients receive them: compact, and with an output schema that every result of the tool,
an error included, validates against.

Clients validate ``structuredContent`` against a tool's ``outputSchema`` (the TypeScript SDK does so for
errors too), so an error cannot simply be a different object: each output schema is the result's properties
plus ``error`` (the structured error), and requires either the result's fields or ``error``. Every client
and every schema validator reads that shape, and an agent tells the two apart by one key.

The schemas are sent with every ``tools/list``, which every conversation pays for: titles that repeat the
property names and ``null`` defaults are dropped, and nullable simple types are written as type lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

#: The key of the structured error in an error result's structured content.
ERROR_KEY = "error"
_SCHEMA_MAPS = ("properties", "$defs", "patternProperties")


def compact(schema: Any, *, keep_defaults: bool = True) -> Any:
    """``schema`` without generated titles and ``null`` defaults, with ``anyOf [T, null]`` as ``type [T, null]``
    for simple ``T``. The meaning is unchanged: it validates exactly the same documents."""
    if isinstance(schema, list):
        return [compact(item, keep_defaults=keep_defaults) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and (value is None or not keep_defaults)):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            result[key] = {name: compact(sub, keep_defaults=keep_defaults) for name, sub in value.items()}
        else:
            result[key] = compact(value, keep_defaults=keep_defaults)
    return _merge_nullable(result)


def _merge_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if not (isinstance(options, list) and len(options) == 2 and {"type": "null"} in options):
        return schema
    (other,) = [option for option in options if option != {"type": "null"}]
    if not (isinstance(other, dict) and isinstance(other.get("type"), str) and other["type"] != "object"):
        return schema
    if other.get("enum") is not None:
        return schema  # null is not among the enum's values: keep the union
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**other, **merged, "type": [other["type"], "null"]}


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The tool's arguments: the request model's JSON schema, compact. An optional argument is described by
    its type alone (omitting it is how a caller says "none"; an explicit ``null`` is accepted all the same)."""
    schema: dict[str, Any] = compact(model.model_json_schema())
    schema.pop("description", None)
    required = set(schema.get("required", []))
    for name, argument in schema.get("properties", {}).items():
        if name not in required:
            schema["properties"][name] = _without_null(argument)
    return schema


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = [item for item in kind if item != "null"]
        return {**schema, "type": rest[0] if len(rest) == 1 else rest}
    options = schema.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        (other,) = [option for option in options if option != {"type": "null"}]
        return {**other, **{key: value for key, value in schema.items() if key != "anyOf"}}
    return schema


#: Nesting kept in output schemas: the result's fields with their types; the objects inside them (an image's
#: record, an attempt) are just objects. Every tools/list carries three copies of the result's schema
#: (generate, edit, get_job), and their detail is in the results themselves.
OUTPUT_DEPTH = 1
#: Longer enums in output schemas are written as their type (error codes are listed in the documentation).
OUTPUT_ENUM_LIMIT = 4
#: An error result's ``error``: the fields a client acts on (the others, such as ``retry_after_s``, are in the
#: documentation and in every error all the same).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "remediation": {"type": "array"},
        "retryable": {"type": "boolean"},
        "attempts": {"type": "array"},
    },
    "required": ["code", "message"],
}


def output_schema(result: type[BaseModel], *, alternatives: Sequence[type[BaseModel]] = ()) -> dict[str, Any]:
    """The schema of ``result``, of each of ``alternatives`` (other successful shapes, e.g. a pending job) and of
    an error ``{"error": {...}}``, as one object schema that requires the fields of exactly one of them.

    Output schemas are for validating and for code that reads results; they carry types and structure but
    no descriptions (the tool's description says what it returns), and stop detailing at :data:`OUTPUT_DEPTH`.
    """
    properties: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    for shape in (result, *alternatives):
        schema = compact(shape.model_json_schema(), keep_defaults=False)
        definitions = schema.pop("$defs", {})
        outline = _outline(schema, definitions, 0)
        properties.update(outline["properties"])
        required = outline.get("required", [])
        if not required:
            raise ValueError(f"{shape.__name__} has no required field: an error would match its branch too")
        # Its first field tells a shape apart from the others; the rest are always there, never asked for.
        branches.append({"required": required[:1]})
    properties[ERROR_KEY] = ERROR_SCHEMA
    branches.append({"required": [ERROR_KEY]})
    return {"type": "object", "properties": properties, "oneOf": branches}


def _outline(schema: dict[str, Any], definitions: dict[str, Any], depth: int) -> dict[str, Any]:
    """``schema`` with its references inlined, without descriptions, objects below ``OUTPUT_DEPTH`` unspecified."""
    if "$ref" in schema:
        target = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**target, **{key: value for key, value in schema.items() if key != "$ref"}}
    # Nested ``required`` lists are left out too: only the top level's tell the branches apart.
    schema = {key: value for key, value in schema.items() if key != "description" and (depth == 0 or key != "required")}
    if isinstance(schema.get("enum"), list) and len(schema["enum"]) > OUTPUT_ENUM_LIMIT:
        schema.pop("enum")
    if "properties" in schema:
        if depth >= OUTPUT_DEPTH:
            return {"type": schema.get("type", "object")}
        schema["properties"] = {
            name: _outline(sub, definitions, depth + 1) for name, sub in schema["properties"].items()
        }
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _outline(schema[key], definitions, depth)
    if isinstance(schema.get("anyOf"), list):
        schema["anyOf"] = [_outline(option, definitions, depth) for option in schema["anyOf"]]
        schema = _merge_nullable(schema)
    if schema.get("additionalProperties") is True:
        schema.pop("additionalProperties")
    return schema
