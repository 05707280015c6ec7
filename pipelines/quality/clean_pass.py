"""Curate's cleaning pass, on Ray actors or in the driver: the residual-PHI gate and the filters judge each
document, and the survivors' dedup fingerprints (exact key, word hashes, MinHash signature, copy-forward
paragraph keys) are computed beside them.  This is most of curate's time, and all of it is per document.

What depends on the whole run stays in the driver, which takes the batches back in input order
(``ordered_actor_map``): it replays each batch's ledger events (quarantine records, counts), adds the steps'
counts to its own steps, records the fingerprints in the dedup stores and spills the cleaned documents.  So
the quarantine, the dedup decisions and the curated bytes are the same whatever the number of workers.

One worker is the driver itself, as for tokenization.  Each actor gets a copy of the gate (decided: each
patient's date shift) with its raw-zone index, which holds identifiers and dates but no text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from medcurate.core.actor_pool import actor_count, ordered_actor_map
from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup import (
    NearFingerprints,
    NoteParagraphs,
    copy_forward_fingerprints,
    exact_fingerprints,
    near_fingerprints,
)
from pipelines.quality.steps import LedgerRecord, Step, run_steps
from pipelines.quality.zone_io import deid_table

# Batches queued per worker: one running, one waiting.
QUEUED_PER_WORKER = 2


@dataclass(frozen=True)
class CleanedBatch:
    """One batch after the gate and the filters, with what the driver must account for in order."""

    table: pa.Table  # the surviving documents, in the de-identified zone's (relaxed) schema
    ledger: LedgerRecord
    facts: dict[str, Counter[str]]  # each step's counts for this batch (Step.facts)
    exact: list[str]
    near: NearFingerprints
    notes: list[NoteParagraphs]


class CleanDocuments:
    """Actor body: a batch of de-identified documents (Arrow) through ``steps`` -> ``CleanedBatch``."""

    def __init__(self, steps: list[Step], dedup: DedupConfig) -> None:
        self.steps = steps
        self.dedup = dedup

    def clean(self, table: pa.Table) -> CleanedBatch:
        ledger = LedgerRecord()
        docs = run_steps(self.steps, table.to_pylist(), ledger)
        return CleanedBatch(
            table=deid_table(docs),
            ledger=ledger,
            facts={step.name: step.take_facts() for step in self.steps},
            exact=exact_fingerprints(docs),
            near=near_fingerprints(docs, self.dedup),
            notes=copy_forward_fingerprints(docs, self.dedup),
        )


def cleaned_batches(
    tables: Iterable[pa.Table], steps: list[Step], dedup: DedupConfig, workers: int | None
) -> Iterator[CleanedBatch]:
    """Each table cleaned, in input order, by ``actor_count(workers)`` workers; call inside ``ray_session()``
    unless that is 1.  The steps' counts stay with the steps the driver passed (``CleanedBatch.facts`` are
    already added to them)."""
    count = actor_count(workers)
    if count == 1:
        results: Iterable[CleanedBatch] = map(CleanDocuments(steps, dedup).clean, tables)
    else:
        import ray

        # One copy of the steps (the gate's raw-zone index) in the object store for every actor to load.
        arguments = (ray.put(steps), dedup)
        local = CleanDocuments(steps, dedup).clean if workers is None else None
        results = ordered_actor_map(
            tables, CleanDocuments, arguments, "clean", count, queued_per_actor=QUEUED_PER_WORKER, local=local
        )
    by_name = {step.name: step for step in steps}
    for batch in results:
        for name, facts in batch.facts.items():
            by_name[name].facts.update(facts)
        yield batch
