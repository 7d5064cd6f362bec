"""Checking a sources block (or any parameter block) against a declarative JSON schema, with a
ConfigError that names the key, the value found and the fix.

The fix is the ``description`` of the schema node that failed, so a schema reads as the
documentation of its block. Integers are Python ints only: jsonschema would otherwise accept
``32.0`` (and ``True`` nowhere, which is what we want as well).
"""

from __future__ import annotations

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from xbml.errors import ConfigError

_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def check(instance, schema: dict, where: str, name: str = "the block") -> None:
    """Raise ConfigError (`where` first) when `instance` does not match `schema`; `name` is
    what the message calls `instance` itself."""
    error = best_match(_Validator(schema).iter_errors(instance))
    if error is not None:
        raise ConfigError(f"{where}: {_describe(error, name)}")


def _location(error: ValidationError, name: str) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    # a list entry is easier to find by its name than by its index
    if isinstance(error.instance, dict) and isinstance(error.instance.get("name"), str):
        out += f" ({error.instance['name']!r})"
    return out or name


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(error: ValidationError, name: str) -> str:
    where = _location(error, name)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        valid = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(valid))
        inside = f" in {where}" if error.absolute_path else ""
        return (
            f"unknown key(s) {', '.join(map(repr, unknown))}{inside}; "
            f"valid keys: {', '.join(valid)} (fix the spelling or remove the key)"
        )
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return f"{where} = {_short(error.instance)} lacks the key(s) {', '.join(missing)}; add them"
    fix = schema.get("description") or error.message
    return f"{where} = {_short(error.instance)} is invalid: it must be {fix}"
