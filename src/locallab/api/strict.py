"""What the request schemas share: strict JSON parsing that still counts 5.0 as an integer."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _takes_int_not_float(annotation: Any) -> bool:
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    return int in args and float not in args


class StrictBody(BaseModel):
    """Unknown fields are refused, and values are not coerced ("5" is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _integral_float_to_int(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON Schema counts 5.0 as an integer; strict validation alone would refuse it.
        if isinstance(value, float) and value.is_integer() and info.field_name:
            if _takes_int_not_float(cls.model_fields[info.field_name].annotation):
                return int(value)
        return value
