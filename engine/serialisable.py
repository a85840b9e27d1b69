"""`to_dict`/`from_dict`/JSON for Easel's frozen request dataclasses (no torch, no Qt).

Every stored request (history, PNG metadata, batch files) comes back through `from_dict`, which
checks each plain field's type so a hand-edited or foreign file gives one InputError naming the
setting instead of a TypeError deep in a job.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, ClassVar

from engine.errors import InputError


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


class Serialisable:
    """`to_dict`/`from_dict`/JSON for the frozen dataclasses below.

    `from_dict` ignores unknown keys (metadata written by a newer Easel still loads) and fills
    missing ones with defaults; nested dataclasses, enums and tuples are rebuilt from field types.
    """

    #: name stored under "type" so a stored dict says which request it is
    type_name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        data = _encode(self)
        data["type"] = self.type_name
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Anything stored (metadata, history, a batch file) becomes a valid request or one
        InputError: wrong types, bad nesting and out-of-range values never raise anything else."""
        if not isinstance(data, dict):
            raise InputError("Stored settings could not be read: they are not a JSON object.")
        hints = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        try:
            for name, value in data.items():
                if name in hints:
                    kwargs[name] = _decode_field(cls, name, _checked_type(name, hints[name], value))
            return cls(**kwargs)
        except (TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise InputError(f"Stored settings could not be read: {exc}") from exc

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


_PLAIN_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "str | None": (str, type(None)),
    "dict": (dict,),
}


def _checked_type(name: str, spec: dataclasses.Field, value: Any) -> Any:
    """A stored value of the field's plain type (whole floats accepted for ints), or
    InputError naming the setting; nested and enum fields are checked by their decoders."""
    allowed = _PLAIN_TYPES.get(str(spec.type))
    if allowed is None:
        return value
    if allowed == (int,) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) and bool not in allowed:
        raise InputError(f"Stored setting '{name}' must be {_type_words(allowed)}, not true/false.")
    if not isinstance(value, allowed):
        raise InputError(f"Stored setting '{name}' must be {_type_words(allowed)}.")
    if isinstance(value, float) and value != value:
        raise InputError(f"Stored setting '{name}' is not a number.")
    return value


def _type_words(allowed: tuple[type, ...]) -> str:
    words = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
    return " or ".join(
        dict.fromkeys(words.get(t, "an object") for t in allowed if t is not type(None))
    )


def _decode_field(cls: type, name: str, value: Any) -> Any:
    decoder = getattr(cls, "_decoders", {}).get(name)
    return decoder(value) if decoder else value
