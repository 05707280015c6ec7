"""The audit log: an append-only, hash-chained JSONL file at ``governance/audit.log.jsonl``.

Each line is one event (who ran what, where, when, with which counts) plus ``prev_hash`` and ``hash``, where
``hash = sha256(prev_hash + canonical JSON of the event)``.  Editing, deleting or reordering any line breaks
the chain from that line on, so ``medcurate audit verify`` can name the first event that was tampered with
without trusting whoever holds the file.  Rewriting the whole tail consistently is only caught against a
head hash kept elsewhere: the report and the catalog record it, and ``verify --expect-head`` checks it.

Events carry counts, codes, ids and hashes only: never document text, never the raw patient key, never the
pseudonymization key (``medcurate.core.keys.key_fingerprint`` tells which key was used without holding it).
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medcurate.core.context import RunContext, StageReport

AUDIT_LOG = "audit.log.jsonl"
GENESIS_HASH = "0" * 64
# The shortest head prefix ``verify --expect-head`` accepts: 32 bits, so a typo or a guess matches no event.
MIN_HEAD_PREFIX = 8
AIRFLOW_RUN_ENV = "AIRFLOW_CTX_DAG_RUN_ID"
AIRFLOW_DAG_ENV = "AIRFLOW_CTX_DAG_ID"

# Event types, so that readers (report, catalog, tests) do not spell them twice.
RUN_START = "run_start"
RUN_END = "run_end"
STAGE_START = "stage_start"
STAGE_END = "stage_end"
STAGE_FAILED = "stage_failed"
# One unit of a stage that an orchestrator runs as its own task (ingest: one source), inside the stage's events.
UNIT_START = "unit_start"
UNIT_END = "unit_end"
UNIT_FAILED = "unit_failed"
# An Airflow task that failed (any stage or none): dag, task, try and exception class; never its message.
TASK_FAILED = "task_failed"
PUBLICATION = "publication"
CONFIG_CHANGE = "config_change"
ERASURE = "erasure"


def audit_log_path(governance_dir: Path) -> Path:
    return governance_dir / AUDIT_LOG


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no whitespace, UTF-8 kept (what the chain hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, event: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(event)).encode()).hexdigest()


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers): the uid still identifies the account
        return f"uid:{os.getuid()}"


def _parse_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def append_event(
    governance_dir: Path, event_type: str, run_id: str | None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Append one event and return it as written (with ``seq``, ``prev_hash`` and ``hash``).

    The file is locked while the head is read and the line appended, so two processes (an Airflow task and
    an erasure) never fork the chain.
    """
    path = audit_log_path(governance_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            last = None
            for line in fh:
                if line.strip():
                    last = line
            head = json.loads(last) if last else None
            event = {
                "seq": head["seq"] + 1 if head else 0,
                "time": datetime.now(UTC).isoformat(),
                "type": event_type,
                "who": _who(),
                "where": socket.gethostname(),
                "airflow_dag_id": os.environ.get(AIRFLOW_DAG_ENV),
                "airflow_run_id": os.environ.get(AIRFLOW_RUN_ENV),
                "run_id": run_id,
                "details": details or {},
            }
            prev_hash = head["hash"] if head else GENESIS_HASH
            record = {**event, "prev_hash": prev_hash, "hash": chain_hash(prev_hash, event)}
            fh.seek(0, os.SEEK_END)
            fh.write(canonical_json(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return record


def read_events(governance_dir: Path) -> list[dict[str, Any]]:
    return _parse_lines(audit_log_path(governance_dir))


def head(governance_dir: Path) -> dict[str, Any] | None:
    """The last event's ``seq`` and ``hash`` (what the report and catalog record as the chain's head)."""
    events = read_events(governance_dir)
    return {"seq": events[-1]["seq"], "hash": events[-1]["hash"], "events": len(events)} if events else None


@dataclass(frozen=True)
class Verification:
    ok: bool
    events: int
    head_hash: str | None
    # The first event (by its position in the file, 0-based line) that does not fit the chain, and why.
    problem: str | None = None
    line: int | None = None
    # No event to verify (file absent or empty): a wrong data root or a deleted log, never "intact".
    missing: bool = False


class HeadPrefixError(ValueError):
    """``expect_head`` is not a usable head: too short, not hex, or a prefix of several events' hashes."""


def _expected_head_problem(events: list[dict[str, Any]], expect_head: str) -> str | None:
    """Why ``expect_head`` (a full head hash or a unique prefix of one) names no event of the chain.

    A malformed or ambiguous value raises ``HeadPrefixError``: that is the caller's mistake, not tampering.
    """
    wanted = expect_head.strip().lower()
    if len(wanted) < MIN_HEAD_PREFIX or any(c not in "0123456789abcdef" for c in wanted):
        raise HeadPrefixError(f"--expect-head needs at least {MIN_HEAD_PREFIX} hex characters of a hash")
    matches = [e for e in events if e["hash"].startswith(wanted)]
    if len(matches) > 1:
        raise HeadPrefixError(f"--expect-head {wanted} is a prefix of {len(matches)} events' hashes: give more")
    if not matches:
        return f"the expected head {wanted[:16]}... is not in the chain: events after it were rewritten"
    return None


def verify(governance_dir: Path, expect_head: str | None = None) -> Verification:
    """Check every event's hash, link and sequence number; name the first one that was tampered with.

    * edited: the event's recomputed hash differs from its recorded hash;
    * deleted: the sequence jumps (seq N is followed by N+2, and N+1 appears nowhere);
    * reordered: the sequence jumps but the missing event appears later in the file.

    A missing or empty log is not intact (``missing``): nothing was verified.  ``expect_head`` is a head hash
    recorded elsewhere, in full or as a prefix of at least ``MIN_HEAD_PREFIX`` characters naming one event.
    """
    path = audit_log_path(governance_dir)
    try:
        events = _parse_lines(path)
    except json.JSONDecodeError as exc:
        return Verification(False, 0, None, f"line {exc.lineno} is not valid JSON (edited)", exc.lineno - 1)
    if not events:
        state = "is empty" if path.exists() else "does not exist"
        return Verification(False, 0, None, f"{path} {state}: no events to verify", missing=True)
    seqs = [e.get("seq") for e in events]
    prev_hash = GENESIS_HASH
    for line, record in enumerate(events):
        event = {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}
        if chain_hash(record.get("prev_hash", ""), event) != record.get("hash"):
            return Verification(
                False, len(events), None, f"event seq {record['seq']} was edited (line {line + 1})", line
            )
        expected_seq = events[line - 1]["seq"] + 1 if line else 0
        if record.get("seq") != expected_seq:
            where = f"event seq {expected_seq}"
            if expected_seq in seqs[line + 1 :]:
                problem = f"{where} was reordered: found seq {record.get('seq')} in its place (line {line + 1})"
            else:
                problem = f"{where} was deleted: seq {record.get('seq')} follows seq {expected_seq - 1}"
            return Verification(False, len(events), None, problem, line)
        if record["prev_hash"] != prev_hash:
            problem = f"event seq {record['seq']} does not link to its predecessor (line {line + 1}): chain rewritten"
            return Verification(False, len(events), None, problem, line)
        prev_hash = record["hash"]
    head_hash = events[-1]["hash"]
    problem = _expected_head_problem(events, expect_head) if expect_head is not None else None
    if problem:
        return Verification(False, len(events), head_hash, problem, None)
    return Verification(True, len(events), head_hash)


def _last_config_hash(events: list[dict[str, Any]]) -> str | None:
    for event in reversed(events):
        if event.get("type") == RUN_START:
            return event["details"].get("spec_config_hash")
    return None


def record_run_start(ctx: RunContext) -> None:
    """``run_start``, preceded by ``config_change`` when the spec differs from the previous run's."""
    from medcurate.core.keys import key_fingerprint

    governance = ctx.zones.governance
    config_hash = ctx.spec.config_hash()
    previous = _last_config_hash(read_events(governance))
    if previous is not None and previous != config_hash:
        append_event(governance, CONFIG_CHANGE, ctx.run_id, {"previous": previous, "current": config_hash})
    append_event(
        governance,
        RUN_START,
        ctx.run_id,
        {
            "corpus": ctx.spec.name,
            "spec_config_hash": config_hash,
            "key_fingerprint": key_fingerprint(ctx.secret_key),
            "sources": len(ctx.spec.sources),
        },
    )


def record_stage_end(ctx: RunContext, report: StageReport) -> None:
    """``stage_end`` with the stage's counts; ``publication`` too when the stage published a zone."""
    from medcurate.core.sealing import PUBLISHING_STAGES

    governance = ctx.zones.governance
    append_event(
        governance,
        STAGE_END,
        ctx.run_id,
        {
            "stage": report.stage,
            "input": report.total_input,
            "output": report.total_output,
            "removed": dict(sorted(report.removed_by_reason.items())),
            "seconds": report.details.get("seconds"),
        },
    )
    zone = PUBLISHING_STAGES.get(report.stage)
    if zone:
        published = {"zone": zone, "documents": report.total_output}
        published.update({k: report.details[k] for k in ("merkle_root", "shard_count") if k in report.details})
        append_event(governance, PUBLICATION, ctx.run_id, published)
