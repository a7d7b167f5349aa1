"""Reading a sequence document: YAML or JSON text in, a validated definition or field errors out.

Documents are bounded in size and node count (a YAML alias bomb is refused), and pydantic's errors
are translated to dotted paths spelled with the document's own keys (``steps.1.wait.for``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

try:  # libyaml parses a 256 KB document ~10x faster than the pure-Python parser
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

from sequences.definitions.document import (
    MAX_DOCUMENT_BYTES,
    MAX_NODES,
    STEP_KINDS,
    SequenceDefinition,
)
from sequences.definitions.refusals import DefinitionError, FieldError


class _StrictLoader(_BaseLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, object]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if (key_node.tag, key_node.value) in seen:
                    problem = f"duplicate key {key_node.value!r}"
                    raise yaml.constructor.ConstructorError(
                        None, None, problem, key_node.start_mark
                    )
                seen.add((key_node.tag, key_node.value))
        return super().construct_mapping(node, deep)


def _body_error(message: str) -> DefinitionError:
    return DefinitionError([FieldError("body", message)])


def _load_text(source: str | bytes) -> object:
    data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _body_error(f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KB")
    try:
        return yaml.load(data, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _body_error(f"invalid YAML{where}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise _body_error(f"invalid YAML: {' '.join(str(exc).split())}") from exc


def _check_size(document: object) -> None:
    """Count values, stopping at the limit: an alias bomb costs no more than a big file."""
    pending: list[Iterator[object]] = [iter((document,))]
    for count in itertools.count(1):
        item = next(pending[-1], pending)
        while item is pending and len(pending) > 1:
            pending.pop()
            item = next(pending[-1], pending)
        if item is pending:
            return
        if count > MAX_NODES:
            raise _body_error(f"the document has more than {MAX_NODES} values (aliases included)")
        if isinstance(item, Mapping):
            pending.append(itertools.chain(item.keys(), item.values()))
        elif isinstance(item, list | tuple):
            pending.append(iter(item))


def _path(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    # A step's union tag sits between its index and its fields: steps.3.wait.wait.for.
    if len(parts) > 3 and parts[0] == "steps" and parts[2] in STEP_KINDS:
        del parts[2]
    return ".".join(str(part) for part in parts)


def _message(error: ErrorDetails) -> str:
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "step_kind" and isinstance(value, Mapping):
        kinds = [kind for kind in STEP_KINDS if kind in value]
        if kinds:
            return f"a step has exactly one kind, this one has {' and '.join(kinds)}"
    return error["msg"].removeprefix("Value error, ")


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors: list[FieldError] = []
    for error in exc.errors(include_url=False):
        path = _path(error["loc"])
        inner = error.get("ctx", {}).get("error")
        if isinstance(inner, DefinitionError):
            errors += [
                FieldError(".".join(filter(None, (path, e.path))), e.message) for e in inner.errors
            ]
        else:
            errors.append(FieldError(path or "body", _message(error)))
    return errors


def parse_definition(source: str | bytes | Mapping[str, object]) -> SequenceDefinition:
    """Parse YAML/JSON text or an already-parsed mapping; raise DefinitionError if invalid."""
    document = source if isinstance(source, Mapping) else _load_text(source)
    _check_size(document)
    if not isinstance(document, Mapping):
        raise _body_error("a sequence definition must be a mapping (key, name, sender, steps...)")
    try:
        return SequenceDefinition.model_validate(document)
    except ValidationError as exc:
        raise DefinitionError(_field_errors(exc)) from exc


def canonical_json(defn: SequenceDefinition) -> str:
    """One spelling per meaning: sorted keys, aliases, defaults filled in, nulls dropped."""
    document = defn.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_checksum(defn: SequenceDefinition) -> str:
    return hashlib.sha256(canonical_json(defn).encode()).hexdigest()
