"""The review sample: a few de-identified texts per source with every replacement marked, for a human review of
the residual risk (``governance/deid_review_sample.jsonl``).

The deid stage writes it; erasure drops the erased documents from it (``drop_documents``, the deid stage's
erase hook).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from medcurate.core.zones import Zones, write_text_atomic

if TYPE_CHECKING:  # the de-identification engine (Presidio, spaCy): erasure imports this module without it
    from pipelines.deid.surrogates import DeidText

REVIEW_SAMPLE = "deid_review_sample.jsonl"


def write_review_sample(zones: Zones, records: list[dict[str, Any]]) -> None:
    path = zones.governance / REVIEW_SAMPLE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


def drop_documents(zones: Zones, doc_ids: set[str]) -> int:
    """Rewrite the sample without ``doc_ids``; returns how many records left it."""
    path = zones.governance / REVIEW_SAMPLE
    if not path.exists():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("doc_id") not in doc_ids]
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def mark_replacements(deid: DeidText) -> str:
    """The de-identified text with every replacement wrapped in «» for a human residual-risk review."""
    parts = []
    pos = 0
    for r in deid.replacements:
        parts.append(deid.text[pos : r.start])
        parts.append(f"«{deid.text[r.start : r.end]}»")
        pos = r.end
    parts.append(deid.text[pos:])
    return "".join(parts)
