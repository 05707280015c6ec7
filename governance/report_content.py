"""The report's words as data: the reason-code glossary, the definition of "quarantined", and the
de-identification method statement with its measured figures (``report_content.yaml``).

Kept out of the code so that a definition or a measured figure is written once, and a reviewer who is not
a programmer can correct it without reading Python.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

CONTENT_FILE = Path(__file__).with_name("report_content.yaml")


@cache
def content() -> dict[str, Any]:
    return yaml.safe_load(CONTENT_FILE.read_text(encoding="utf-8"))


def glossary() -> dict[str, str]:
    """Reason code (or code family, ending in ":" or "_") -> plain meaning."""
    return dict(content()["glossary"])


def define(code: str) -> str | None:
    """The meaning of one reason code: its own entry, else its family's (the longest matching prefix)."""
    entries = glossary()
    if code in entries:
        return entries[code]
    families = [key for key in entries if key.endswith((":", "_")) and code.startswith(key)]
    return entries[max(families, key=len)] if families else None


def quarantine_definition() -> str:
    return str(content()["quarantine_definition"])


def deid_method() -> dict[str, Any]:
    return dict(content()["deid_method"])
