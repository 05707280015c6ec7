"""The report's words as data: the reason-code glossary, the definition of "quarantined", and the
de-identification method statement with its measured figures (``report_content.yaml``).

Kept out of the code so that a definition or a measured figure is written once, and a reviewer who is not
a programmer can correct it without reading Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

CONTENT_FILE = Path(__file__).with_name("report_content.yaml")
T = TypeVar("T")


@cache
def content() -> dict[str, Any]:
    return yaml.safe_load(CONTENT_FILE.read_text(encoding="utf-8"))


def glossary() -> dict[str, str]:
    """Reason code (or code family, ending in ":" or "_") -> plain meaning."""
    return dict(content()["glossary"])


def by_code(table: Mapping[str, T], code: str | None) -> T | None:
    """A table keyed by reason code: the code's own entry, else its family's (the longest key that ends in
    ":" or "_" and starts the code: "residual_phi:" for "residual_phi:name")."""
    if code is None:
        return None
    if code in table:
        return table[code]
    families = [key for key in table if key.endswith((":", "_")) and code.startswith(key)]
    return table[max(families, key=len)] if families else None


def define(code: str) -> str | None:
    """The meaning of one reason code, from the glossary."""
    return by_code(glossary(), code)


def quarantine_definition() -> str:
    return str(content()["quarantine_definition"])


def deid_method() -> dict[str, Any]:
    return dict(content()["deid_method"])
