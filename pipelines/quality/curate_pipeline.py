"""The curate stage's step list, and the per-source counts a run leaves for the next one's distribution check.

Order matters and is the point of this module: the residual-PHI gate first (a document with PHI must not even
be a dedup "kept twin" whose id a report names), then repairs and filters (so dedup compares cleaned text),
exact before near dedup (cheap first), copy-forward on the survivors, decontamination last (on the text that
would be published).  The GX "curated" suite then checks the result (stage.py).

The stage streams its documents in batches, so a step whose verdict depends on the whole run (the gate's
date shifts, the three dedup levels) is a ``TwoPassStep``: ``clean`` runs the per-document steps on each batch
(on Ray actors, clean_pass.py) and records the survivors' dedup fingerprints, ``decide`` settles dedup once
over the whole run in dedup order (earlier runs, spec source order, doc_id), and ``finish`` applies those
decisions batch by batch.  Which batch a document and its twin fall in, and which actor cleaned them,
therefore changes nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from medcurate.core.context import RunContext
from pipelines.quality.clean_pass import cleaned_batches
from pipelines.quality.curation_config import CurationConfig
from pipelines.quality.decontam import BenchmarkNgrams, Decontaminator
from pipelines.quality.dedup import CopyForwardDedup, ExactDedup, NearDedup
from pipelines.quality.dedup_index import PublishedIndex
from pipelines.quality.dedup_store import DocRegister, Rank
from pipelines.quality.filters import filter_steps
from pipelines.quality.phi_gate import RawPatientIndex, ResidualPhiGate, load_gate_config
from pipelines.quality.steps import Doc, Ledger, Step, run_steps

COUNTS_FILE = "curated_counts.json"


@dataclass
class CuratePipeline:
    gate: ResidualPhiGate
    filters: list[Step]
    exact: ExactDedup
    near: NearDedup
    copy_forward: CopyForwardDedup
    decontamination: Decontaminator

    def clean(self, tables: Iterable[pa.Table], ledger: Ledger, workers: int | None) -> Iterator[pa.Table]:
        """Curate's cleaning pass (the gate decided): the gate and the filters on each batch, on ``workers``
        Ray actors or in the driver (clean_pass.py); then, in batch order, the ledger takes what they dropped
        and dedup records the survivors' fingerprints.  Yields the survivors, batch by batch."""
        for batch in cleaned_batches(tables, [self.gate, *self.filters], self.near.config, workers):
            ledger.replay(batch.ledger)
            sources, doc_ids = batch.table.column("source").to_pylist(), batch.table.column("doc_id").to_pylist()
            ranks = [self.exact.order({"source": s, "doc_id": d}) for s, d in zip(sources, doc_ids, strict=True)]
            self.exact.record(ranks, batch.exact)
            self.near.record(ranks, batch.near)
            self.copy_forward.record(batch.notes)
            yield batch.table

    def decide(self) -> None:
        """Dedup's decisions over the whole run, each level over what the previous ones kept."""
        self.exact.decide()
        self.near.decide(skip=self.exact.twins.doc_ids())
        self.copy_forward.decide(skip=pa.concat_arrays([self.exact.twins.doc_ids(), self.near.twins.doc_ids()]))

    def finish(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        """Curate's second pass over one batch of cleaned documents: dedup's decisions, decontamination."""
        return run_steps([self.exact, self.near, self.copy_forward, self.decontamination], docs, ledger)

    def details(self) -> dict[str, Any]:
        """The StageReport details the report shows: PHI gate hits, filter facts, dedup, decontamination."""
        return {
            "residual_phi": self.gate.summary(),
            "filters": {s.name: s.summary() for s in self.filters if s.summary()},
            "dedup": {
                "exact": self.exact.summary(),
                "near": self.near.summary(),
                "copy_forward": self.copy_forward.summary(),
            },
            "decontamination": self.decontamination.summary(),
        }


def build_pipeline(ctx: RunContext, config: CurationConfig, previous: PublishedIndex, scratch: Path) -> CuratePipeline:
    """The steps; exact and near dedup keep what they observe in files under ``scratch`` (dedup_store.py)."""
    scratch.mkdir(parents=True, exist_ok=True)
    order = {source.name: index for index, source in enumerate(ctx.spec.sources)}

    def order_key(doc: Doc) -> Rank:
        return order[doc["source"]], doc["doc_id"]

    gate_config = load_gate_config()
    n = config.decontamination_ngram
    register = DocRegister()  # exact and near dedup observe the same documents: one register for both
    return CuratePipeline(
        gate=ResidualPhiGate(RawPatientIndex.from_raw_zone(ctx.zones, ctx.spec, gate_config), gate_config),
        filters=filter_steps(config.filters),
        exact=ExactDedup(previous, order_key, scratch, register),
        near=NearDedup(config.dedup, previous, order_key, directory=scratch, register=register),
        copy_forward=CopyForwardDedup(config.dedup),
        decontamination=Decontaminator([BenchmarkNgrams.load(b, n) for b in config.benchmarks], n),
    )


def counts_path(governance: Path) -> Path:
    return governance / COUNTS_FILE


def previous_counts(governance: Path) -> dict[str, int]:
    path = counts_path(governance)
    return json.loads(path.read_text())["sources"] if path.exists() else {}


def save_counts(governance: Path, run_id: str, counts: dict[str, int]) -> None:
    path = counts_path(governance)
    path.write_text(json.dumps({"run_id": run_id, "sources": dict(sorted(counts.items()))}, indent=2))


def minimum_rows(previous: int | None, max_drop: float) -> int:
    """At least one row, and no fewer than the previous count minus the allowed drop."""
    return max(1, math.ceil((previous or 0) * (1.0 - max_drop)))
