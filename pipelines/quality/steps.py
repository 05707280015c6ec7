"""The curate pipeline's plumbing: a step takes documents and returns the ones it keeps, and a ledger counts.

Like a DataTrove pipeline, curation is a list of small steps (residual-PHI gate, filters, dedup levels,
decontamination).  Documents are dicts in the de-identified zone's schema.  A step that judges a document
by itself runs on any batch of documents; a step whose verdict depends on other documents (dedup, the gate's
per-patient date shift) is a ``TwoPassStep``: it observes every batch's compact keys first, decides once for
the whole run, then applies its decisions batch by batch, so curate never holds the run's texts at once.

A step never silently loses a document: whatever it drops goes through ``Ledger.drop`` (a quarantine record
naming the step and reason, and the stage report's per-source counts), whatever it changes through
``Ledger.modify``.  Nothing a step records may contain document text: reasons are codes, details are counts,
ids and codes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from medcurate.core.context import StageReport
from medcurate.core.quarantine import QuarantineWriter

Doc = dict[str, Any]
# What ``Ledger.drop`` reads of a document.
QUARANTINE_FIELDS = ("source", "source_file", "source_sha256", "position", "doc_id")


class Step:
    """One curate step.  Subclasses set ``name`` and implement ``run``; ``summary`` adds step facts."""

    name: str = "step"

    def __init__(self) -> None:
        # Additive counts behind ``summary`` (documents scanned, lines removed): a copy of the step in a Ray
        # worker hands them to the driver's step batch by batch (``take_facts``), so the report counts once.
        self.facts: Counter[str] = Counter()

    def take_facts(self) -> Counter[str]:
        """The counts since the last call, cleared."""
        facts, self.facts = self.facts, Counter()
        return facts

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        return {}


class TwoPassStep(Step):
    """A step whose verdict on a document depends on the whole run: ``observe`` every batch (keeping compact
    keys, never texts), ``decide`` once, then ``run`` applies the decisions batch by batch.

    ``run`` on documents that were never observed (the step used alone, every document at hand) observes
    them and decides first, so a two-pass step also works as a plain step.
    """

    decided = False

    def observe(self, docs: list[Doc]) -> None:
        raise NotImplementedError

    def decide(self, skip: pa.Array | None = None) -> None:
        """Decide over everything observed except ``skip`` (doc_ids an earlier step dropped, an Arrow array: at a
        million documents a third may be skipped)."""
        self._decide(pa.array([], pa.string()) if skip is None else skip)
        self.decided = True

    def _decide(self, skip: pa.Array) -> None:
        raise NotImplementedError

    def apply(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        raise NotImplementedError

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        if not self.decided:
            self.observe(docs)
            self.decide()
        return self.apply(docs, ledger)


def drop_decided(
    docs: list[Doc], ledger: Ledger, step: str, reason: str, details: Callable[[list[str]], list[str | None]]
) -> list[Doc]:
    """The documents ``details`` says nothing of (asked for the batch's doc_ids at once); the others are dropped
    through the ledger, with what it says as the quarantine detail.  How a two-pass step applies decisions taken
    over the whole run."""
    kept = []
    for doc, said in zip(docs, details([d["doc_id"] for d in docs]), strict=True):
        if said is None:
            kept.append(doc)
        else:
            ledger.drop(doc, step, reason, said)
    return kept


@dataclass
class StepTally:
    """Per source: documents a step saw, kept, dropped by reason, and modified by kind of change."""

    input: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)
    dropped: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    modified: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def to_dict(self, step: str) -> dict[str, Any]:
        return {
            "step": step,
            "input": dict(sorted(self.input.items())),
            "kept": dict(sorted(self.kept.items())),
            "dropped": {s: dict(sorted(c.items())) for s, c in sorted(self.dropped.items())},
            "modified": {s: dict(sorted(c.items())) for s, c in sorted(self.modified.items())},
        }


class Ledger:
    """Where the steps account for every document: quarantine records, report counts, per-step tallies."""

    def __init__(self, writer: QuarantineWriter, report: StageReport) -> None:
        self.writer = writer
        self.report = report
        self.tallies: dict[str, StepTally] = {}

    def tally(self, step: str) -> StepTally:
        return self.tallies.setdefault(step, StepTally())

    def drop(self, doc: Doc, step: str, reason: str, detail: str = "") -> None:
        self.report.counts(doc["source"]).remove(reason)
        self.tally(step).dropped[doc["source"]][reason] += 1
        self.writer.add(
            source=doc["source"],
            source_file=doc["source_file"],
            source_sha256=doc.get("source_sha256"),
            position=doc.get("position"),
            doc_id=doc["doc_id"],
            reason=reason,
            detail=f"{step}: {detail}" if detail else step,
        )

    def modify(self, doc: Doc, step: str, change: str) -> None:
        self.tally(step).modified[doc["source"]][change] += 1

    def count(self, step: str, before: Iterable[Doc], after: Iterable[Doc]) -> None:
        self.counted(step, Counter(d["source"] for d in before), Counter(d["source"] for d in after))

    def counted(self, step: str, before: Counter[str], after: Counter[str]) -> None:
        """``count`` with documents per source already counted."""
        tally = self.tally(step)
        tally.input.update(before)
        tally.kept.update(after)

    def replay(self, record: LedgerRecord) -> None:
        """What the steps told a worker's ``LedgerRecord``, in the order they told it."""
        for method, args in record.events:
            getattr(self, method)(*args)

    def steps_summary(self) -> list[dict[str, Any]]:
        return [tally.to_dict(step) for step, tally in self.tallies.items()]


class LedgerRecord:
    """The ledger of steps that run in a Ray worker: it records what they say, in order, for the driver's
    ``Ledger.replay``, which writes the quarantine records and counts as if the steps had run in the driver.
    Of a dropped document it keeps only what a quarantine record names (no text)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def drop(self, doc: Doc, step: str, reason: str, detail: str = "") -> None:
        self.events.append(("drop", ({key: doc.get(key) for key in QUARANTINE_FIELDS}, step, reason, detail)))

    def modify(self, doc: Doc, step: str, change: str) -> None:
        self.events.append(("modify", ({"source": doc["source"]}, step, change)))

    def count(self, step: str, before: Iterable[Doc], after: Iterable[Doc]) -> None:
        counts = Counter(d["source"] for d in before), Counter(d["source"] for d in after)
        self.events.append(("counted", (step, *counts)))


def run_steps(steps: Iterable[Step], docs: list[Doc], ledger: Ledger | LedgerRecord) -> list[Doc]:
    """Pass the documents through every step in order, counting what each kept."""
    for step in steps:
        kept = step.run(docs, ledger)
        ledger.count(step.name, docs, kept)
        docs = kept
    return docs
