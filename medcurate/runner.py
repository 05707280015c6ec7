"""Runs the stages, in one process tree (``medcurate run``) or one at a time (an Airflow task).

The stage list below is the whole pipeline.  Each stage is a function ``(RunContext) -> StageReport`` that
reads one zone and writes the next; the runner only opens the run, times each stage, saves its report and
stops at the first failure, so a failed stage never lets anything downstream be published.  Stage modules
are imported when their stage runs, which keeps the command line and the Airflow tasks fast.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from governance import audit
from medcurate.core import storage
from medcurate.core.context import RunContext, StageReport
from medcurate.core.keys import load_key
from medcurate.core.log_text import describe_exception
from medcurate.core.names import STAGE_NAMES
from medcurate.core.ray_runtime import ray_session
from medcurate.core.run_lock import run_lock
from medcurate.core.sealing import seal_published
from medcurate.core.spec import load_spec
from medcurate.core.zones import Zones

log = logging.getLogger("medcurate")

DEMO_KEY_FILE = "raw/.demo-pseudonym-key"


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunContext], StageReport]
    purpose: str


# One function per stage, each importing its stage module when the stage runs: importing every stage up front
# (Presidio, Great Expectations, Ray, DuckDB) costs tens of seconds that the CLI and the Airflow workers would
# pay for every command and task.
def _ingest(ctx: RunContext) -> StageReport:
    from pipelines.ingest.stage import run

    return run(ctx)


def _validate_raw(ctx: RunContext) -> StageReport:
    from pipelines.quality.stage import validate_raw

    return validate_raw(ctx)


def _deid(ctx: RunContext) -> StageReport:
    from pipelines.deid.stage import run

    return run(ctx)


def _curate(ctx: RunContext) -> StageReport:
    from pipelines.quality.stage import curate

    return curate(ctx)


def _shard(ctx: RunContext) -> StageReport:
    from pipelines.shard.stage import run

    return run(ctx)


def _validate_shards(ctx: RunContext) -> StageReport:
    from pipelines.quality.stage import validate_shards

    return validate_shards(ctx)


def _catalog(ctx: RunContext) -> StageReport:
    from governance.catalog import run

    return run(ctx)


def _report(ctx: RunContext) -> StageReport:
    from governance.report import run

    return run(ctx)


# In the order of ``medcurate.core.names.STAGE_NAMES``.
STAGES: tuple[Stage, ...] = (
    Stage("ingest", _ingest, "parse input files into the raw zone"),
    Stage("validate_raw", _validate_raw, "Great Expectations on the raw zone"),
    Stage("deid", _deid, "de-identify text, structured fields and DICOM headers"),
    Stage("curate", _curate, "validate de-identified documents, publish curated"),
    Stage("shard", _shard, "tokenize on Ray and write trainer-ready shards"),
    Stage("validate_shards", _validate_shards, "Great Expectations on the shards"),
    Stage("catalog", _catalog, "rebuild the lineage catalog (DuckDB)"),
    Stage("report", _report, "write the governance report (JSON + HTML)"),
)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def open_run(
    spec_path: str | Path,
    data_root: str | Path | None = None,
    run_id: str | None = None,
    demo: bool = False,
    secret_key: str | None = None,
) -> RunContext:
    """Load the spec, create the zones and fetch the key: everything a stage needs, checked up front."""
    spec = load_spec(spec_path)
    # Stage settings that live in the spec are checked here too, so a typo fails before any stage writes.
    from pipelines.quality.curation_config import curation_config

    curation_config(spec)
    root = data_root or spec.data_root
    # An object-store root (s3://...) is worked on in a local working copy (medcurate.core.storage).
    if storage.is_uri(root):
        root = storage.working_copy(str(root)).root
    else:
        root = Path(data_root) if data_root else spec.resolve(root)
    with storage.exclusive(root):
        storage.pull(root)
        zones = Zones(root.resolve()).ensure()
        key = load_key(value=secret_key, demo_key_file=zones.root / DEMO_KEY_FILE if demo else None)
        if demo:
            storage.push(zones.root, only=[zones.root / DEMO_KEY_FILE])  # every worker must use the same demo key
    return RunContext(spec=spec, zones=zones, run_id=run_id or new_run_id(), secret_key=key)


def _attach_run_log(ctx: RunContext) -> logging.Handler:
    """Every run leaves its log under governance/logs/: counts, codes and ids only, never PHI (nor a file's name)."""
    path = _run_log_path(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    for name in ("medcurate", "pipelines", "governance"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    return handler


def _run_log_path(ctx: RunContext) -> Path:
    return ctx.zones.governance / "logs" / f"{ctx.run_id}.log"


def _detach_run_log(handler: logging.Handler) -> None:
    for name in ("medcurate", "pipelines", "governance"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def run_stage(ctx: RunContext, name: str, step: Callable[[RunContext], StageReport] | None = None) -> StageReport:
    """Run one stage and save its report; exceptions propagate (the caller decides how to fail).

    ``step`` replaces the stage's function when an orchestrator ran the stage's units as separate tasks and
    only its last step is left (ingest: ``pipelines.ingest.stage.merge`` after one task per source).

    With an object-store data root the stage starts from the store's state and publishes everything it
    changed once it succeeded; a failed stage publishes only its failure event and log.
    """
    stage = next((s for s in STAGES if s.name == name), None)
    if stage is None:
        raise ValueError(f"unknown stage '{name}'; stages: {', '.join(STAGE_NAMES)}")
    with storage.exclusive(ctx.zones.root):
        storage.pull(ctx.zones.root)
        return _run_and_publish(ctx, stage, step)


def _run_and_publish(ctx: RunContext, stage: Stage, step: Callable[[RunContext], StageReport] | None) -> StageReport:
    name = stage.name
    handler = _attach_run_log(ctx)
    succeeded = False
    try:
        log.info("run %s: stage %s started", ctx.run_id, name)
        audit.append_event(ctx.zones.governance, audit.STAGE_START, ctx.run_id, {"stage": name})
        started = time.perf_counter()
        report = (step or stage.run)(ctx)
        report.details.setdefault("seconds", round(time.perf_counter() - started, 3))
        report.save(ctx)
        # Published zones are read-only from here on; the audit log says what was published and when.
        seal_published(ctx.zones, name)
        audit.record_stage_end(ctx, report)
        log.info(
            "run %s: stage %s finished: %d in, %d out, removed %s",
            ctx.run_id,
            name,
            report.total_input,
            report.total_output,
            dict(report.removed_by_reason),
        )
        succeeded = True
        return report
    except Exception as exc:
        log.error("run %s: stage %s failed: %s", ctx.run_id, name, describe_exception(exc))
        details = {"stage": name, "error": type(exc).__name__}
        audit.append_event(ctx.zones.governance, audit.STAGE_FAILED, ctx.run_id, details)
        raise
    finally:
        _detach_run_log(handler)
        if succeeded:
            storage.push(ctx.zones.root)
        else:
            _push_failure_record(ctx)


def _push_failure_record(ctx: RunContext) -> None:
    """Publish the failure event and the run log only; a push error is logged so the stage's own error surfaces."""
    try:
        storage.push(ctx.zones.root, only=[audit.audit_log_path(ctx.zones.governance), _run_log_path(ctx)])
    except Exception as exc:
        log.error("run %s: could not publish the failure record: %s", ctx.run_id, type(exc).__name__)


def run_pipeline(ctx: RunContext, progress: Callable[[str], None] = print) -> list[StageReport]:
    """All stages in order, sharing one Ray runtime; stops at the first failure.  Audited from start to end.

    The run holds its data root from start to end (``medcurate.core.run_lock``): a second run on the same
    root raises ``RootBusy`` before it writes anything."""
    with run_lock(ctx.zones.root, ctx.run_id):
        return _run_all(ctx, progress)


def _run_all(ctx: RunContext, progress: Callable[[str], None]) -> list[StageReport]:
    reports: list[StageReport] = []
    with storage.exclusive(ctx.zones.root):
        audit.record_run_start(ctx)
        push_audit_log(ctx.zones.root)
    status = "failed"
    try:
        with ray_session():
            for index, stage in enumerate(STAGES, 1):
                progress(f"[{index}/{len(STAGES)}] {stage.name}: {stage.purpose} ...")
                report = run_stage(ctx, stage.name)
                removed = report.removed_by_reason
                progress(
                    f"      {report.total_input} in -> {report.total_output} out"
                    + (f", removed {sum(removed.values())} ({_reasons(removed)})" if removed else "")
                    + f" [{report.details['seconds']:.1f}s]"
                )
                reports.append(report)
        status = "succeeded"
    finally:
        details = {"status": status, "stages": [r.stage for r in reports]}
        with storage.exclusive(ctx.zones.root):
            audit.append_event(ctx.zones.governance, audit.RUN_END, ctx.run_id, details)
            push_audit_log(ctx.zones.root)
    return reports


def push_audit_log(root: Path) -> None:
    """Publish audit events at once (holding the working copy): a later pull would drop unpushed ones.

    A no-op for a local data root (``medcurate.core.storage``)."""
    storage.push(root, only=[audit.audit_log_path(root / "governance")])


def _reasons(removed: dict[str, int]) -> str:
    """Every removal reason with its count, most frequent first: the counts must add up to the total shown."""
    ordered = sorted(removed.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason}: {count}" for reason, count in ordered)


def summary_rows(reports: list[StageReport]) -> list[dict[str, Any]]:
    return [
        {
            "stage": r.stage,
            "input": r.total_input,
            "output": r.total_output,
            "removed": sum(r.removed_by_reason.values()),
            "seconds": r.details.get("seconds", 0.0),
            "reasons": _reasons(r.removed_by_reason),
        }
        for r in reports
    ]
