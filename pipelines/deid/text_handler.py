"""The deid stage's text handler: free text, titles and the free-text leaves of structured payloads.

Texts are analyzed on Ray actors (one ``DeidEngine`` per actor, spans out: no key and no replacement in the
workers), in one batch per raw part that holds the documents' texts, their titles and the leaves of their
structured payloads.  The structured handler (``structured_docs.StructuredPayloads``) walks each FHIR, HL7 or
CSV payload twice around that batch: once to collect its leaves, once to apply the spans found.  The replacer
then substitutes surrogates, shifted dates and tags; a FHIR timeline's or HL7 message's text is rendered again
from its de-identified payload instead.  A few texts per source go to the review sample.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from medcurate.core.keys import pseudonym
from medcurate.core.spec import ParallelSpec
from pipelines.deid.config import DeidConfig
from pipelines.deid.engine import DeidEngine, PhiSpan
from pipelines.deid.ledger import DeidLedger
from pipelines.deid.review_sample import mark_replacements
from pipelines.deid.structured_docs import (
    PAYLOAD_KEYS,
    PayloadError,
    StructuredPayloads,
    StructuredResult,
    renders_text,
)
from pipelines.deid.surrogates import DeidText, Replacer

BATCH_DOCS = 64
# Batches per actor before the pool grows by one (see RayTextAnalyzer).
BATCHES_PER_ACTOR = 8
REVIEW_PER_SOURCE = 3


class _Analyzer:
    """Ray actor body: one DeidEngine per worker process, spans out (no key, no replacement in workers)."""

    def __init__(self) -> None:
        self.engine = DeidEngine()

    def analyze(self, index: int, texts: list[str]) -> tuple[int, list[list[tuple[int, int, str, float]]]]:
        """The spans of batch ``index``, which comes back with them (batches finish out of order)."""
        return index, [
            [(s.start, s.end, s.label, s.score) for s in spans] for spans in self.engine.analyze_batch(texts)
        ]


class RayTextAnalyzer:
    """Spread batches of texts over an actor pool of at most one actor per CPU of the Ray cluster.

    Without a set number of ``workers`` the pool grows with the work it is given: an actor loads spaCy and
    Presidio (~430 MB, and seconds of start-up), which pays only when it takes several batches.  A call of
    ``n`` batches wants ``ceil(n / BATCHES_PER_ACTOR)`` actors; the bundled sample's calls hold one or two
    batches each, so it runs on one actor (its second one started, competed for the CPU and held memory for no
    batch).  A set number of ``workers`` starts that many at the first call.

    ``batch_docs`` and ``workers`` (the spec's ``parallel``) change how the work is cut, never the spans: each
    text is analyzed alone, and the pool gives results back in input order.
    """

    def __init__(self, workers: int | None = None, batch_docs: int | None = None) -> None:
        import ray

        self.batch_docs = batch_docs or BATCH_DOCS
        self.fixed = workers is not None
        self.max_actors = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        self.actor_class = ray.remote(num_cpus=1)(_Analyzer)
        self.actors: list = []
        self.pool = None

    def ensure_actors(self, wanted: int) -> None:
        """At least ``wanted`` actors (at most ``max_actors``) started."""
        from ray.util import ActorPool

        wanted = min(self.max_actors, max(1, wanted))
        if wanted > len(self.actors):
            self.actors += [self.actor_class.remote() for _ in range(wanted - len(self.actors))]
            self.pool = ActorPool(self.actors)

    def close(self) -> None:
        """Stop the actors.  Dropping the handles is not enough: a reference cycle through the stage can keep
        them, and with them spaCy and Presidio (~430 MB an actor), alive through the stages after deid."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.pool = [], None

    def analyze(self, texts: list[str]) -> list[list[PhiSpan]]:
        size = self.batch_docs
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        self.ensure_actors(self.max_actors if self.fixed else -(-len(batches) // BATCHES_PER_ACTOR))
        # Unordered, then put back in order: ``ActorPool.map`` gives an actor its next batch only once every
        # batch before its own is back, so a fast batch's actor would sit idle behind a slow one.
        results: list[list[list[tuple[int, int, str, float]]]] = [[] for _ in batches]
        for index, spans in self.pool.map_unordered(lambda a, item: a.analyze.remote(*item), list(enumerate(batches))):
            results[index] = spans
        return [[PhiSpan(*s) for s in spans] for result in results for spans in result]


class TextHandler:
    def __init__(
        self,
        secret_key: bytes,
        config: DeidConfig,
        replacer: Replacer,
        ledger: DeidLedger,
        parallel: ParallelSpec | None = None,
    ) -> None:
        self.secret_key = secret_key
        self.parallel = parallel or ParallelSpec()
        self.config = config
        self.replacer = replacer
        self.ledger = ledger
        self.structured_actions: Counter[str] = Counter()
        self.extra_dropped: Counter[str] = Counter()
        self.review: list[dict[str, Any]] = []
        self.analyzer: RayTextAnalyzer | None = None

    def close(self) -> None:
        """Stop the analyzer's Ray actors, if any were started; the next ``handle`` starts new ones."""
        if self.analyzer is not None:
            self.analyzer.close()
            self.analyzer = None

    def handle(self, rows: list[dict]) -> list[dict]:
        """Free text, titles and the free-text leaves of structured payloads, analyzed in one Ray batch."""
        if not rows:
            return []
        payloads = StructuredPayloads(self.secret_key, self.config, self.replacer)
        leaves = payloads.collect(rows)
        for row in rows:
            if row["doc_id"] in payloads.failures:
                failure = payloads.failures[row["doc_id"]]
                self.ledger.quarantine_row(row, failure.reason, failure.detail)
        rows = [row for row in rows if row["doc_id"] not in payloads.failures]
        narrative = [row for row in rows if not renders_text(row)]
        titles = [(row["metadata"] or {}).get("title") or "" for row in rows]
        if self.analyzer is None:
            self.analyzer = RayTextAnalyzer(self.parallel.workers, self.parallel.batch_docs)
        spans = self.analyzer.analyze([row["text"] for row in narrative] + titles + leaves)
        text_spans = {row["doc_id"]: s for row, s in zip(narrative, spans, strict=False)}
        title_spans = spans[len(narrative) : len(narrative) + len(rows)]
        leaf_spans = dict(zip(leaves, spans[len(narrative) + len(rows) :], strict=True))
        out = []
        for row, titled in zip(rows, title_spans, strict=True):
            try:
                structured = payloads.apply(row, leaf_spans)
            except PayloadError as failure:  # the same walk as in collect: not expected, but never fatal
                self.ledger.quarantine_row(row, failure.reason, failure.detail)
                continue
            out.append(self._text_row(row, text_spans.get(row["doc_id"]), titled, structured))
        return out

    def _text_row(
        self,
        row: dict,
        text_spans: list[PhiSpan] | None,
        title_spans: list[PhiSpan],
        structured: StructuredResult | None,
    ) -> dict:
        """One de-identified document: its text from the text engine's spans, or rendered from its payload."""
        patient = row["patient_key"] or ""
        labels = Counter(s.label for s in (text_spans or []) + title_spans)
        events = {}
        if structured is not None:
            labels.update(structured.phi)
            self.structured_actions.update(structured.actions)
            for name, n in structured.actions.items():
                rule, _, action = name.rpartition(":")
                events[rule] = (events.get(rule, (0, action))[0] + n, action)
        self.ledger.phi_by_source[row["source"]].update(labels)
        events.update({label: (n, self.config.operator(label)) for label, n in labels.items()})
        self.ledger.record_events(row, events)
        metadata = self._clinical_metadata(row["metadata"], patient, structured)
        if metadata.get("title"):
            metadata["title"] = self.replacer.apply(metadata["title"], title_spans, patient).text
        if text_spans is None:
            return self.ledger.finish(row, structured.text if structured else None, metadata)
        deid = self.replacer.apply(row["text"], text_spans, patient)
        self._maybe_review(row, deid)
        return self.ledger.finish(row, deid.text, metadata)

    def _clinical_metadata(self, metadata: dict | None, patient: str, structured: StructuredResult | None) -> dict:
        """Shifted event time, pseudonymized encounter, allow-listed extra keys.  A raw structured payload is
        never copied: its de-identified version takes its place when the allow-list keeps that key."""
        metadata = dict(metadata or {})
        if metadata.get("event_time") is not None:
            metadata["event_time"] = self.replacer.shift_datetime(metadata["event_time"], patient)
        if metadata.get("encounter_id"):
            metadata["encounter_id"] = pseudonym(self.secret_key, metadata["encounter_id"], "encounter")
        kept = []
        for key, value in metadata.get("extra") or []:
            if key in PAYLOAD_KEYS.values():
                continue
            if key in self.config.extra_keep_keys:
                kept.append((key, value))
            else:
                self.extra_dropped[key] += 1
        if structured is not None:
            if structured.key in self.config.extra_keep_keys:
                kept.append((structured.key, structured.payload))
            else:
                self.extra_dropped[structured.key] += 1
        metadata["extra"] = sorted(kept) or None
        return metadata

    def _maybe_review(self, row: dict, deid: DeidText) -> None:
        if sum(1 for r in self.review if r["source"] == row["source"]) >= REVIEW_PER_SOURCE:
            return
        self.review.append(
            {
                "doc_id": row["doc_id"],
                "source": row["source"],
                "doc_type": row["doc_type"],
                "text": mark_replacements(deid),
                "replacements": [
                    {"start": r.start, "end": r.end, "label": r.label, "operator": r.operator}
                    for r in deid.replacements
                ],
            }
        )
