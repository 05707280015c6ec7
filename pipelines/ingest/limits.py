"""Caps on what one input file may make a parser read (``limits.yaml``, overridable per source).

A reader that trusts its input can be made to hold gigabytes: a 4 MB gzip expanding to 4 GB, one CSV cell or
NDJSON line with no end, a PubMed element that never closes, JSON nested a million deep.  Every parser gets a
``Limits`` from its source's ``options.limits`` over the defaults of ``limits.yaml``; the streams of
``pipelines.ingest.files`` count decompressed bytes per file and per record against it, and ``load_json``
checks nesting, so memory stays bounded by the caps whatever the file holds.  What goes past a cap becomes a
``BadInput`` (the whole file) or a rejected record, with one of the reason codes below.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from medcurate.core.spec import SpecError

DEFAULTS = Path(__file__).with_name("limits.yaml")
FILE_TOO_LARGE = "file_too_large"
RECORD_TOO_LARGE = "record_too_large"
TOO_DEEP = "too_deep"


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_record_bytes: int
    max_depth: int

    @classmethod
    def from_options(cls, overrides: Any = None) -> Limits:
        """The defaults of ``limits.yaml`` with a source's ``options.limits`` on top; a bad value is a spec error."""
        if overrides is None:
            return default_limits()
        if not isinstance(overrides, Mapping):
            raise SpecError("options.limits must be a mapping")
        allowed = {f.name for f in fields(cls)}
        unknown = set(overrides) - allowed
        if unknown:
            raise SpecError(f"options.limits: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        merged = {**default_limits().__dict__, **overrides}
        bad = sorted(k for k, v in merged.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1)
        if bad:
            raise SpecError(f"options.limits: {bad} must be positive whole numbers")
        return cls(**merged)


@lru_cache(maxsize=1)
def default_limits() -> Limits:
    data = yaml.safe_load(DEFAULTS.read_text(encoding="utf-8"))
    return Limits(**{f.name: int(data[f.name]) for f in fields(Limits)})


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), walked without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


class TooDeep(ValueError):
    """A JSON value nests deeper than the cap."""


def load_json(text: str, max_depth: int) -> Any:
    """``json.loads`` with a nesting cap: raises ``json.JSONDecodeError`` or ``TooDeep``.

    The C decoder itself gives up with ``RecursionError`` around the interpreter's recursion limit, before any
    memory is at stake; the walk afterwards applies the (lower) configured cap.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(f"nested deeper than {max_depth} levels") from None
    if json_depth(value) > max_depth:
        raise TooDeep(f"nested deeper than {max_depth} levels")
    return value
