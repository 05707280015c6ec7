"""The ingest stage: every source's input files -> raw zone Parquet in the shared document schema.

Per source, files are read in sorted order by that kind's parser.  Each input file becomes one Parquet part
(``raw/<source>/part-NNNNN.parquet``), written in row groups so a 2 GB PubMed file streams through; within
a ``medcurate run`` on one machine, files are parsed on Ray actors, one per CPU, and accounted for in
listing order (parse_files.py).  A file
the parser cannot read is quarantined whole (copied, with its reason) and the run goes on; a bad record
inside a readable file is quarantined alone.  The files come from ``medcurate.core.listing.list_inputs``: a
match it refuses (a dangling symlink, one leading outside the spec's folder) and a file that vanishes between
listing and reading get a quarantine record with their reason too.  Records a parser skips by policy (FHIR billing) are
counted in the report's ``details["skipped"]``, per source and reason.  Documents that a later record
supersedes (same ``doc_id``) or that a source deletes (PubMed ``DeleteCitation``) are removed at the end, with
the reason counted.

Each source is one unit (``ingest_unit``): it rewrites ``raw/<source>/`` and its own quarantine records, and
saves its counts and file list as a fragment, ``governance/stages/ingest/<source>.json``.  ``merge`` then
assembles the fragments into the stage's report (``governance/stages/ingest.json``) that the later stages,
the catalog and the report read.  ``run`` (``medcurate run``) is exactly that: every unit, then the merge;
an orchestrator runs the units as parallel tasks (one Airflow task per source) and the merge after them.

The raw zone holds PHI: its files are owner-only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from governance import audit
from medcurate.core.actor_pool import actor_count, ordered_actor_map
from medcurate.core.context import RunContext, SourceCounts, StageFailed, StageReport
from medcurate.core.hashing import sha256_file
from medcurate.core.listing import Listing, list_inputs
from medcurate.core.log_text import quote_name
from medcurate.core.quarantine import QuarantineWriter
from medcurate.core.schema import Document, Provenance, documents_to_table, make_doc_id
from medcurate.core.source_files import SourceFileIndex
from medcurate.core.spec import SourceSpec
from medcurate.core.zones import Zones, make_private_dir, write_parquet
from pipelines.ingest.base import Parser
from pipelines.ingest.parse_files import (
    BAD_INPUT,
    PARSER_ERROR,
    VANISHED,
    FileJob,
    ParsedFile,
    ParseFiles,
    worker_died,
)
from pipelines.ingest.registry import PARSERS

log = logging.getLogger(__name__)

STAGE = "ingest"
# A listed file (or its directory) that is gone when its turn to be read comes.
FILE_VANISHED = "file_vanished"


@dataclass
class _SourceState:
    """What the stage remembers about a source while streaming it, to settle supersessions at the end."""

    seq: int = 0
    latest_add: dict[str, int] = field(default_factory=dict)  # doc_id -> seq of its latest version
    latest_delete: dict[str, int] = field(default_factory=dict)  # doc_id -> seq of its latest deletion
    part_seqs: dict[Path, list[int]] = field(default_factory=dict)  # part -> seq of each row, in order
    part_ids: dict[Path, list[str]] = field(default_factory=dict)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def _account(
    source: str,
    job: FileJob,
    parsed: ParsedFile,
    state: _SourceState,
    counts: SourceCounts,
    skipped: Counter[str],
    quarantine: QuarantineWriter,
) -> dict:
    """Record what parsing one file found, in listing order; returns the file's ``input_files`` entry."""
    facts = {"sha256": parsed.sha256, "size": parsed.size}
    if parsed.outcome == VANISHED:
        _quarantine_vanished(quarantine, source, job.file_id, parsed.sha256)
        return _file_record(source, job.file_id, "quarantined", FILE_VANISHED, **facts)
    if parsed.outcome in (BAD_INPUT, PARSER_ERROR):
        reason = parsed.reason if parsed.outcome == BAD_INPUT else PARSER_ERROR
        quarantine.add_file(
            source=source,
            path=job.path,
            source_file=job.file_id,
            sha256=parsed.sha256,
            reason=reason,
            detail=parsed.detail,
        )
        if parsed.outcome == BAD_INPUT:
            log.warning("quarantined file %s of source %s: %s", job.file_id, quote_name(source), reason)
        else:
            log.error("parser error on file %s of source %s: %s", job.file_id, quote_name(source), parsed.error)
        return _file_record(source, job.file_id, "quarantined", reason, **facts)
    for record in parsed.rejected:
        quarantine.add(
            source=source,
            source_file=job.file_id,
            source_sha256=parsed.sha256,
            position=record.position,
            reason=record.reason,
            detail=record.detail,
        )
        counts.remove(record.reason)
    counts.input += parsed.documents + len(parsed.rejected)
    seqs, ids = [], []
    for kind, doc_id in parsed.items:
        seq = state.next_seq()
        if kind == "add":
            state.latest_add[doc_id] = seq
            seqs.append(seq)
            ids.append(doc_id)
        else:
            state.latest_delete[doc_id] = seq
    skipped.update(parsed.skipped)
    if ids:
        state.part_seqs[job.part] = seqs
        state.part_ids[job.part] = ids
    return _file_record(source, job.file_id, "ingested", None, **facts, documents=len(ids))


def _settle(state: _SourceState, counts: SourceCounts, zones: Zones) -> int:
    """Drop superseded and deleted rows from the parts; returns the number of documents kept."""
    kept_total = 0
    for part, seqs in state.part_seqs.items():
        ids = state.part_ids[part]
        keep = [
            state.latest_add[doc_id] == seq and state.latest_delete.get(doc_id, -1) < seq
            for doc_id, seq in zip(ids, seqs, strict=True)
        ]
        for doc_id, seq, kept in zip(ids, seqs, keep, strict=True):
            if not kept:
                counts.remove("superseded" if state.latest_add[doc_id] != seq else "deleted_by_source")
        kept_total += sum(keep)
        if all(keep):
            continue
        table = pq.read_table(part).filter(pa.array(keep))
        if table.num_rows:
            write_parquet(table, part, zones)
        else:
            part.unlink()
    return kept_total


def _quarantine_vanished(quarantine: QuarantineWriter, source: str, file_id: str, sha: str | None) -> None:
    """A listed file that is gone: its record says so; there is nothing left to copy."""
    detail = "the file or its directory disappeared after it was listed"
    quarantine.add(source=source, source_file=file_id, source_sha256=sha, reason=FILE_VANISHED, detail=detail)
    log.warning("quarantined file %s of source %s: %s", file_id, quote_name(source), FILE_VANISHED)


def _file_record(source: str, file_id: str, status: str, reason: str | None, **facts: object) -> dict:
    """One entry of the report's ``input_files`` (sha256, size and documents are None when never read)."""
    return {
        "source": source,
        "source_file": file_id,
        "sha256": None,
        "size": None,
        "status": status,
        "reason": reason,
        "documents": 0,
        **facts,
    }


def ingest_source(
    ctx: RunContext,
    source: SourceSpec,
    parser: Parser,
    report: StageReport,
    quarantine: QuarantineWriter,
    listing: Listing,
) -> list[dict]:
    """Ingest the files ``listing`` found for one source (they may have vanished since: each such file is
    quarantined); returns the input-file records (file id, sha256, size, status) for the catalog.  Documents a
    policy skips are counted in ``report.details["skipped"]`` by reason.

    The id -> path mapping of its files is saved owner-only beside its raw parts (medcurate.core.source_files)."""
    counts = report.counts(source.name)
    skipped: Counter[str] = Counter()
    out_dir = ctx.zones.raw / source.name
    # Re-running ingest replaces this source's raw parts: the stage is idempotent per source.
    shutil.rmtree(out_dir, ignore_errors=True)
    make_private_dir(out_dir)
    state = _SourceState()
    file_ids = SourceFileIndex(ctx.secret_key)
    files: list[dict] = []
    shas: dict[Path, str] = {}
    for refused in listing.refused:
        file_id = file_ids.id_of(refused.path, follow_symlink=False)
        quarantine.add(source=source.name, source_file=file_id, reason=refused.reason, detail=refused.detail)
        log.warning("refused input %s of source %s: %s", file_id, quote_name(source.name), refused.reason)
        files.append(_file_record(source.name, file_id, "quarantined", refused.reason))
    jobs = [
        FileJob(path, file_ids.id_of(path), out_dir / f"part-{index:05d}.parquet")
        for index, path in enumerate(listing.files)
    ]
    provenance = Provenance(source.name, source.kind, "", "", source.license, source.legal_basis, ctx.run_id)
    for job, parsed in zip(jobs, _parsed(ctx, parser, provenance, jobs), strict=True):
        files.append(_account(source.name, job, parsed, state, counts, skipped, quarantine))
        if parsed.sha256:
            shas[job.path] = parsed.sha256
    report.details["skipped"] = {source.name: dict(sorted(skipped.items()))}
    if not files:
        # The patterns are not logged: they may hold an input folder's path or a patient's file name.
        log.warning(
            "optional source %s: no input file matches its %d path pattern(s)",
            quote_name(source.name),
            len(source.paths),
        )

    derived = [(path, doc) for path, doc in parser.finalize()]
    if derived:
        by_file: dict[Path, list[Document]] = {}
        for path, doc in derived:
            by_file.setdefault(path, []).append(doc)
        tables = [
            documents_to_table(
                docs,
                Provenance(
                    source.name,
                    source.kind,
                    file_ids.id_of(path),
                    shas.get(path) or sha256_file(path),
                    source.license,
                    source.legal_basis,
                    ctx.run_id,
                ),
            )
            for path, docs in sorted(by_file.items())
        ]
        derived_part = out_dir / "part-derived.parquet"
        write_parquet(pa.concat_tables(tables), derived_part, ctx.zones)
        derived_ids = [make_doc_id(source.name, doc.natural_key) for _, doc in derived]
        seqs = [state.next_seq() for _ in derived_ids]
        state.part_seqs[derived_part] = seqs
        state.part_ids[derived_part] = derived_ids
        for doc_id, seq in zip(derived_ids, seqs, strict=True):
            state.latest_add[doc_id] = seq
        counts.input += len(derived_ids)

    counts.output = _settle(state, counts, ctx.zones)
    file_ids.save(ctx.zones, source.name)
    return files


def _parsed(ctx: RunContext, parser: Parser, provenance: Provenance, jobs: list[FileJob]) -> Iterator[ParsedFile]:
    """Each file parsed into its part, in listing order.  On Ray actors (``parallel.workers``, default one per
    CPU) when the run's own local Ray is up (``medcurate run`` starts one), the kind parses file by file and
    there are files to share; else in the driver, with ``parser`` itself.

    Never on a cluster named by ``RAY_ADDRESS``: its nodes need not see the input files nor the data root (the
    other stages send their actors the text), so there one Airflow task per source is what parallelizes
    ingest.  Nor does ingest start a local Ray of its own: a source ingested alone would pay seconds of start-up
    for what is mostly a few files.  A file whose actor dies under it is quarantined as a parser error
    (``worker_died``) and the others go on; in the driver such a crash ends the run, as it always did."""
    import ray

    local = ParseFiles(parser, ctx.zones, provenance)
    own_ray = ray.is_initialized() and not os.environ.get("RAY_ADDRESS")
    count = actor_count(ctx.spec.parallel.workers) if own_ray and len(jobs) > 1 and not parser.whole_source else 1
    if count == 1:
        yield from map(local.parse, jobs)
        return
    helper = local.parse if ctx.spec.parallel.workers is None else None
    arguments = (parser, ctx.zones, provenance)
    yield from ordered_actor_map(jobs, ParseFiles, arguments, "parse", count, local=helper, on_lost=worker_died)


def fragment_path(zones: Zones, source: str) -> Path:
    """Where one source's unit leaves its counts and file list for ``merge``."""
    return zones.governance / "stages" / STAGE / f"{source}.json"


class IngestIncomplete(StageFailed):
    """Some of the spec's sources have no ingest fragment yet: their unit has not run (or not succeeded)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"ingest: no ingested data yet for source(s) {', '.join(missing)}")
        self.missing = missing


class NoInputFiles(StageFailed):
    """A source's globs match no file: a wrong path or an undelivered feed must not pass as an empty source."""

    def __init__(self, source: str) -> None:
        # The patterns are not named: they may hold an input folder's path or a patient's file name.
        super().__init__(
            f"ingest: source {quote_name(source)}: no input file matches its path patterns "
            "(a source that may be empty says optional: true)"
        )


def ingest_unit(ctx: RunContext, source_name: str) -> StageReport:
    """Ingest one source of the spec and save its fragment; safe to re-run (it rewrites only that source).

    Audited as a unit of the ingest stage (``unit_start`` / ``unit_end`` / ``unit_failed``), so a source
    ingested by its own Airflow task leaves the same trail as one ingested inside ``medcurate run``.
    """
    source = ctx.spec.source(source_name)
    unit = {"stage": STAGE, "unit": source.name}
    audit.append_event(ctx.zones.governance, audit.UNIT_START, ctx.run_id, unit)
    started = time.perf_counter()
    try:
        parser = PARSERS[source.kind](source.options)
        report = StageReport(STAGE, ctx.run_id)
        quarantine = QuarantineWriter(ctx.zones, STAGE, ctx.run_id, source=source.name)
        listing = list_inputs(source, ctx.spec.base_dir)
        if not (listing.files or listing.refused or source.optional):
            raise NoInputFiles(source.name)
        files = ingest_source(ctx, source, parser, report, quarantine, listing)
        quarantine.flush()
        report.details |= {
            "input_files": files,
            "quarantined_files": sum(1 for f in files if f["status"] == "quarantined"),
            "seconds": round(time.perf_counter() - started, 3),
        }
        report.save(ctx, fragment_path(ctx.zones, source.name))
    except Exception as exc:
        audit.append_event(ctx.zones.governance, audit.UNIT_FAILED, ctx.run_id, {**unit, "error": type(exc).__name__})
        raise
    counts = report.counts(source.name)
    done = {**unit, "input": counts.input, "output": counts.output, "removed": dict(sorted(counts.removed.items()))}
    audit.append_event(ctx.zones.governance, audit.UNIT_END, ctx.run_id, done)
    return report


def merge(ctx: RunContext) -> StageReport:
    """The stage's report, assembled from every source's latest fragment (units may come from other runs).

    Fails with ``IngestIncomplete`` when a source of the spec has no fragment.  Quarantine records of
    sources the spec no longer names are removed, as a full ingest always did.
    """
    missing = [s.name for s in ctx.spec.sources if not fragment_path(ctx.zones, s.name).exists()]
    if missing:
        raise IngestIncomplete(missing)
    report = StageReport(STAGE, ctx.run_id)
    files: list[dict] = []
    skipped: dict[str, dict[str, int]] = {}
    unit_runs: dict[str, str] = {}
    for source in ctx.spec.sources:
        fragment = StageReport.from_dict(json.loads(fragment_path(ctx.zones, source.name).read_text()))
        report.sources[source.name] = fragment.counts(source.name)
        files.extend(fragment.details["input_files"])
        skipped.update(fragment.details.get("skipped", {}))
        unit_runs[source.name] = fragment.run_id
    names = {s.name for s in ctx.spec.sources}
    for stale in (ctx.zones.quarantine / STAGE).glob("*.parquet"):
        if stale.stem not in names:
            stale.unlink()
    report.details["input_files"] = files
    report.details["quarantined_files"] = sum(1 for f in files if f["status"] == "quarantined")
    report.details["unit_runs"] = unit_runs
    report.details["skipped"] = skipped
    return report


def check_parsers(ctx: RunContext) -> None:
    """Build every source's parser (and so check its options) before any source is read: a spec mistake in
    the last source fails before the first one is ingested."""
    for source in ctx.spec.sources:
        PARSERS[source.kind](source.options)


def run(ctx: RunContext) -> StageReport:
    """The whole stage in one process: every source's unit, in spec order, then the merge."""
    check_parsers(ctx)
    for source in ctx.spec.sources:
        ingest_unit(ctx, source.name)
    return merge(ctx)
