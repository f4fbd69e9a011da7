"""``replicas = N`` in a ``[services.NAME]`` table: services ``NAME-0`` ... ``NAME-(N-1)``.

Each replica's table is the original one, ``replicas`` removed, with ``{index}``
substituted in every string of the process's keys (command or argv, env values,
cwd, log paths and any other key that is neither a `ServiceConfig` field nor
``depends_on``); ``{{`` and ``}}`` stand for literal braces. Pure: no trio.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ._config import ServiceConfig

__all__ = ["Expanded", "expand_replicas", "substitute_index"]

MAX_REPLICAS = 1000
"""More than this in one table is refused (a typo more likely than a need)."""

# keys whose strings are not substituted: the restart settings and the graph
_KEPT = frozenset({"depends_on", *(f.name for f in dataclasses.fields(ServiceConfig))})

Error = Callable[[str | None, str | None, str], Exception]


@dataclass(slots=True)
class Expanded:
    """The services of a file after expansion.

    Attributes:
        tables: service name -> (the table's own name, its keys), in file order.
        groups: a replicated table's name -> its replicas' names.
        names: every replica's name.
    """

    tables: dict[str, tuple[str, dict[str, object]]] = field(
        default_factory=dict[str, tuple[str, dict[str, object]]]
    )
    groups: dict[str, list[str]] = field(default_factory=dict[str, list[str]])
    names: list[str] = field(default_factory=list[str])


def expand_replicas(services: Mapping[str, dict[str, object]], error: Error) -> Expanded:
    """Expand every table with ``replicas``; *error* (table, key, problem) makes the errors.

    Raises:
        Exception: what *error* returns: ``replicas`` is not an int from 1 to
            `MAX_REPLICAS`, a placeholder other than ``{index}``, or a replica's
            name is taken by another table.
    """
    result = Expanded()
    for name, table in services.items():
        if "replicas" not in table:
            result.tables[name] = (name, table)
            continue
        where = f"services.{name}"
        count = table["replicas"]
        if isinstance(count, bool) or not isinstance(count, int):
            raise error(where, "replicas", f"must be an integer, not {type(count).__name__}")
        if not 1 <= count <= MAX_REPLICAS:
            raise error(where, "replicas", f"must be from 1 to {MAX_REPLICAS}, not {count}")
        names = [f"{name}-{i}" for i in range(count)]
        for replica in names:
            if replica in services:
                raise error(where, "replicas", f"makes {replica!r}, the name of another service")
        result.groups[name] = names
        result.names += names
        for index, replica in enumerate(names):
            keys = {
                key: value if key in _KEPT else _substitute(value, index, where, key, error)
                for key, value in table.items()
                if key != "replicas"
            }
            result.tables[replica] = (name, keys)
    return result


def substitute_index(text: str, index: int) -> str:
    """*text* with ``{index}`` replaced and ``{{`` / ``}}`` made single braces.

    Raises:
        ValueError: another placeholder, a format spec, or an unmatched brace.
    """
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    for literal, field_name, spec, conversion in parsed:
        out.append(literal)
        if field_name is None:
            continue
        if field_name != "index" or spec or conversion:
            whole = "{" + field_name + (f"!{conversion}" if conversion else "")
            whole += (f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"unknown placeholder {whole} (only {{index}};"
                " write {{ and }} for literal braces)"
            )
        out.append(str(index))
    return "".join(out)


def _substitute(value: object, index: int, where: str, key: str, error: Error) -> object:
    if isinstance(value, str):
        try:
            return substitute_index(value, index)
        except ValueError as exc:
            raise error(where, key, str(exc)) from None
    if isinstance(value, list):
        items: list[object] = value  # pyright: ignore[reportUnknownVariableType]
        return [
            _substitute(item, index, where, f"{key}[{i}]", error) for i, item in enumerate(items)
        ]
    if isinstance(value, dict):
        pairs: dict[str, object] = value  # pyright: ignore[reportUnknownVariableType]
        return {k: _substitute(v, index, f"{where}.{key}", k, error) for k, v in pairs.items()}
    return value
