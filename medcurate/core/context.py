"""What every stage receives (``RunContext``) and returns (``StageReport``).

Stages never pass Python objects to each other: they read and write Parquet in the zones.  The only thing
that travels between them is the ``StageReport`` JSON saved under ``governance/stages/``: counts, reasons,
ids and zone paths, never document text nor a source file's path (``medcurate.core.source_files``).  That is
what Airflow's XCom carries too.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medcurate.core.spec import CorpusSpec
from medcurate.core.zones import Zones, write_text_atomic

log = logging.getLogger("medcurate")


@dataclass
class RunContext:
    spec: CorpusSpec
    zones: Zones
    run_id: str
    # The pseudonymization key (HMAC key for patient pseudonyms and date shifts).  Never logged or written.
    secret_key: bytes = field(repr=False)

    @property
    def stage_dir(self) -> Path:
        return self.zones.governance / "stages"


@dataclass
class SourceCounts:
    """Per source: documents read by the stage, written by it, and removed with a reason."""

    input: int = 0
    output: int = 0
    removed: Counter[str] = field(default_factory=Counter)

    def remove(self, reason: str, n: int = 1) -> None:
        self.removed[reason] += n


@dataclass
class StageReport:
    stage: str
    run_id: str
    sources: dict[str, SourceCounts] = field(default_factory=dict)
    # Stage-specific, PHI-free facts: PHI counts by type, validation results, manifest path, ...
    details: dict[str, Any] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str | None = None

    def counts(self, source: str) -> SourceCounts:
        return self.sources.setdefault(source, SourceCounts())

    @property
    def total_input(self) -> int:
        return sum(c.input for c in self.sources.values())

    @property
    def total_output(self) -> int:
        return sum(c.output for c in self.sources.values())

    @property
    def removed_by_reason(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for c in self.sources.values():
            total.update(c.removed)
        return total

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = {
            name: {"input": c.input, "output": c.output, "removed": dict(sorted(c.removed.items()))}
            for name, c in sorted(self.sources.items())
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageReport:
        sources = {
            name: SourceCounts(c["input"], c["output"], Counter(c["removed"]))
            for name, c in data.get("sources", {}).items()
        }
        return cls(
            stage=data["stage"],
            run_id=data["run_id"],
            sources=sources,
            details=data.get("details", {}),
            started_at=data["started_at"],
            finished_at=data.get("finished_at"),
        )

    def save(self, ctx: RunContext, path: Path | None = None) -> Path:
        """Write the report (by default ``governance/stages/<stage>.json``) under a temporary name, then rename:
        a reader never sees half a report."""
        self.finished_at = datetime.now(UTC).isoformat()
        path = path or ctx.stage_dir / f"{self.stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str))


def load_stage_reports(zones: Zones) -> dict[str, StageReport]:
    stage_dir = zones.governance / "stages"
    reports = {}
    for path in sorted(stage_dir.glob("*.json")):
        report = StageReport.from_dict(json.loads(path.read_text()))
        reports[report.stage] = report
    return reports


class StageFailed(RuntimeError):
    """A batch-level failure: the stage's output must not be published and nothing downstream may run.

    The message must be PHI-free: it is printed, logged, and shown as the Airflow task's error.
    """
