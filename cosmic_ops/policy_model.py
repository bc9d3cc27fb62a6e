"""The one way a policy is declared and validated: a frozen pydantic model that refuses unknown keys.

Every policy of the project (partitions, retention, archive, saves, layout, monitoring) is a
``PolicyModel``. A value read from configuration (YAML, the Launchpad, a policy file) goes
through ``PolicyModel.from_mapping``, which turns pydantic's error into one ``PolicyError``
naming the field, so an operator reads ``premake: 3 has no unit``, never a stack of
validator internals.

Fields that carry a unit use the annotated types below; each one parses with ``units.py``.
In configuration a bare number is refused (``3`` could be months or days). Python code that
already holds the parsed value (``premake=3``) passes it directly: ``from_mapping`` sets the
validation context ``{"config": True}`` that makes the unit mandatory.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Mapping, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo

from .units import PolicyError, parse_age, parse_bytes, parse_duration, parse_months, parse_ratio, parse_rows

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")

Model = TypeVar("Model", bound="PolicyModel")


def plain_identifier(value: Any, *, what: str) -> str:
    """``value`` if it is a plain SQL identifier (letters, digits, ``_``, ``$``; at most 63
    characters), else a ``PolicyError`` naming ``what``: the one check for every configurable name."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise PolicyError(f"{what}: {value!r} is not a plain SQL identifier")
    return value


def _from_config(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("config"))


def _unit_parser(parse, python_types: tuple[type, ...]):
    """A before-validator: configuration must spell the unit; Python may pass the parsed value."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, python_types) and not isinstance(value, bool) and not _from_config(info):
            return value
        return parse(value, info.field_name)

    return validate


def _identifier(value: Any, info: ValidationInfo) -> str:
    return plain_identifier(value, what=info.field_name or "identifier")


def _errors_say(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "policy"
        cause = item.get("ctx", {}).get("error")
        message = str(cause) if isinstance(cause, PolicyError) else item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        parts.append(message if message.startswith(f"{where}:") else f"{where}: {message}")
    return "; ".join(parts)


# A plain SQL identifier (validated, never quoted by hand: SQL composes it with sql.Identifier).
Identifier = Annotated[str, AfterValidator(_identifier)]
# Whole months: "3 months", "1 year".
Months = Annotated[int, BeforeValidator(_unit_parser(lambda v, what: parse_months(v, what=what or "months"), (int,)))]
# Bytes: "2 GB".
ByteSize = Annotated[int, BeforeValidator(_unit_parser(lambda v, _: parse_bytes(v), (int,)))]
# A row count: "5M rows".
RowCount = Annotated[int, BeforeValidator(_unit_parser(lambda v, _: parse_rows(v), (int,)))]
# A ratio in (0, 1]: "20%".
Ratio = Annotated[float, BeforeValidator(_unit_parser(lambda v, _: parse_ratio(v), (float,)))]
# Seconds: "5 min".
Seconds = Annotated[float, BeforeValidator(_unit_parser(lambda v, _: parse_duration(v), (int, float)))]
# A positive age: "30 days".
Age = Annotated[timedelta, BeforeValidator(_unit_parser(lambda v, _: parse_age(v), (timedelta,)))]


class PolicyModel(BaseModel):
    """A policy: frozen, unknown keys refused, every field validated when it is built.

    Built directly in Python, a bad value raises pydantic's ``ValidationError`` (a ``ValueError``,
    as ``PolicyError`` is); built from configuration, ``from_mapping`` raises ``PolicyError``.
    (No ``__init__`` override: pydantic would then validate through it and drop the context.)
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    @classmethod
    def from_mapping(cls: type[Model], raw: Mapping[str, Any]) -> Model:
        """Build from loaded configuration, where every value with a unit must spell it; any
        error is one ``PolicyError`` naming the field."""
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{cls.__name__}: expected a mapping of settings, got {type(raw).__name__}")
        try:
            return cls.model_validate(dict(raw), context={"config": True})
        except ValidationError as exc:
            raise PolicyError(_errors_say(exc)) from None
