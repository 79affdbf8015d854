"""Which JSON schemas constrained decoding can enforce. A schema using anything else is refused by name.

The set follows llama.cpp's schema-to-grammar converter: keywords outside it would be silently ignored
there, and an output that ignores part of a schema is exactly what a user asking for a schema does not
want.
"""

from __future__ import annotations

from typing import Any

from locallab.errors import InvalidRequestError

SUPPORTED_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
        "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "pattern",
        "minLength", "maxLength", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        # annotations: no effect on what is valid
        "title", "description", "default", "examples", "$schema", "$id", "$comment",
    }
)  # fmt: skip
INTEGER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
SUPPORTED_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
SUPPORTED_FORMATS = frozenset({"date", "time", "date-time", "uuid"})
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
MAX_SCHEMA_DEPTH = 32


def check_json_schema(schema: Any, where: str = "schema", depth: int = 0) -> None:
    """Raises InvalidRequestError naming the first part of `schema` that cannot be enforced."""
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidRequestError(f"{where}: the schema nests deeper than {MAX_SCHEMA_DEPTH} levels.")
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{where}: a JSON schema must be an object.")
    for key, value in schema.items():
        if key not in SUPPORTED_KEYWORDS:
            raise InvalidRequestError(
                f"{where}: the JSON schema keyword '{key}' cannot be enforced during decoding; "
                f"supported keywords: {', '.join(sorted(SUPPORTED_KEYWORDS))}."
            )
        if key == "type":
            types = value if isinstance(value, list) else [value]
            unknown = [t for t in types if t not in SUPPORTED_TYPES]
            if unknown:
                raise InvalidRequestError(f"{where}.type: unknown type {unknown[0]!r}.")
        elif key in INTEGER_BOUNDS:
            if schema.get("type") != "integer":
                raise InvalidRequestError(
                    f"{where}: the JSON schema keyword '{key}' can be enforced on integers only "
                    f"(type 'integer'), not on {schema.get('type', 'untyped')!r} values."
                )
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InvalidRequestError(f"{where}.{key}: must be a number.")
        elif key == "format" and value not in SUPPORTED_FORMATS:
            supported = ", ".join(sorted(SUPPORTED_FORMATS))
            raise InvalidRequestError(
                f"{where}.format: '{value}' cannot be enforced; supported: {supported}."
            )
        elif key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
            raise InvalidRequestError(f"{where}.$ref: only local references ('#/...') are supported.")
        elif key in _SCHEMA_MAPS:
            if not isinstance(value, dict):
                raise InvalidRequestError(f"{where}.{key}: must be an object.")
            for name, sub in value.items():
                check_json_schema(sub, f"{where}.{key}.{name}", depth + 1)
        elif key in _SCHEMA_LISTS:
            if not isinstance(value, list):
                raise InvalidRequestError(f"{where}.{key}: must be a list of schemas.")
            for i, sub in enumerate(value):
                check_json_schema(sub, f"{where}.{key}[{i}]", depth + 1)
        elif key in ("items", "additionalProperties") and isinstance(value, dict | bool):
            check_json_schema(value, f"{where}.{key}", depth + 1)
