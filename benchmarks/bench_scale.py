"""How each stage's speed and memory change with corpus size (issue 14): `medcurate run` on N documents.

Generates N documents (``scale_corpus.py``: 90% PubMed citations, 10% clinical notes), runs the real
command line on them in a temporary data root, samples the whole process tree (driver, Ray raylet and
workers) every 100 ms, and cuts the samples into stages by the audit log's ``stage_start`` / ``stage_end``
times.  Per stage it prints documents in, wall seconds, documents/s, MB/s of document text read (the text
column of the zone the stage reads), CPU seconds of the tree, documents per CPU-second (the per-core rate,
which neighbours on a shared machine do not distort as much as wall time) and the peak RSS while the stage
ran, for the whole tree and for the driver (the `medcurate run` process) alone.  Run it at several N: a
stage whose peak grows with N holds the corpus in memory; a stage whose documents/CPU-second falls with N
does more than linear work.

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py --docs 10000 --out benchmarks/results/scale-10000.md

One stage again on a kept run (``--docs`` must be the kept corpus's size; the table has that stage's row)::

    .venv/bin/python benchmarks/bench_scale.py --docs 1000000 --keep /data/scale-1m --stage curate
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from scale_corpus import generate
from tree_memory import measured_run

from medcurate.core.names import STAGE_NAMES

# The zone whose documents' text each stage reads (ingest: what it writes, the parsed text).
READS = {
    "ingest": "raw",
    "validate_raw": "raw",
    "deid": "raw",
    "curate": "deid",
    "shard": "curated",
    "validate_shards": "curated",
    "catalog": "curated",
}


def _text_bytes(zone: Path) -> int:
    """UTF-8 bytes of the ``text`` column over every Parquet file of a zone, read a column at a time."""
    total = 0
    for path in sorted(zone.rglob("*.parquet")):
        if "text" in pq.ParquetFile(path).schema_arrow.names:
            column = pq.read_table(path, columns=["text"]).column("text")
            total += pc.sum(pc.binary_length(column)).as_py() or 0
    return total


def _stage_windows(audit_log: Path) -> dict[str, tuple[float, float]]:
    """Each stage's (start, end) unix time from the audit log."""
    starts: dict[str, float] = {}
    windows: dict[str, tuple[float, float]] = {}
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        stage = (event.get("details") or {}).get("stage")
        when = datetime.fromisoformat(event["time"]).timestamp()
        if event.get("type") == "stage_start":
            starts[stage] = when
        elif event.get("type") == "stage_end" and stage in starts:
            windows[stage] = (starts[stage], when)
    return windows


def _window_stats(timeline: list[tuple[float, int, float, int]], start: float, end: float) -> tuple[int, float, int]:
    """Peak tree RSS, CPU seconds and the driver's peak RSS of the samples inside [start, end] (and the
    samples just outside, for CPU)."""
    before = [s for s in timeline if s[0] <= start]
    inside = [s for s in timeline if start <= s[0] <= end]
    after = [s for s in timeline if s[0] >= end]
    if not inside:
        inside = before[-1:] + after[:1]
    first = before[-1] if before else inside[0]
    last = after[0] if after else inside[-1]
    return max(s[1] for s in inside), last[2] - first[2], max(s[3] for s in inside)


def run(docs: int, notes_fraction: float, keep: Path | None, stage: str | None = None) -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        base = keep or Path(tmp)
        generated = time.perf_counter()
        if stage:  # the corpus and the earlier stages' zones are those of an earlier run kept in ``keep``
            spec = base / "corpus" / "scale.yaml"
        else:
            spec = generate(base / "corpus", docs, notes_fraction)
        generated = time.perf_counter() - generated
        input_bytes = sum(p.stat().st_size for p in (base / "corpus" / "incoming").rglob("*") if p.is_file())
        data_root = base / "data"
        memory, wall = measured_run(spec, data_root, stage)
        stage_dir = data_root / "governance" / "stages"
        windows = _stage_windows(data_root / "governance" / "audit.log.jsonl")
        text_mb = {zone: _text_bytes(data_root / zone) / 1e6 for zone in set(READS.values())}
        rows = []
        for name in [stage] if stage else STAGE_NAMES:
            report = json.loads((stage_dir / f"{name}.json").read_text())
            n = sum(s["input"] for s in report["sources"].values())
            out = sum(s.get("output", 0) for s in report["sources"].values())
            seconds = report["details"].get("seconds", 0.0)
            peak, cpu, driver = _window_stats(memory.timeline, *windows[name]) if name in windows else (0, 0.0, 0)
            mb = text_mb.get(READS.get(name, ""), 0.0)
            rows.append(
                {
                    "stage": name,
                    "docs": n,
                    "out": out,
                    "seconds": seconds,
                    "mb": mb,
                    "cpu": cpu,
                    "peak": peak,
                    "driver": driver,
                }
            )
        curate = json.loads((stage_dir / "curate.json").read_text())["details"]
        near = curate.get("dedup", {}).get("near", {})
        summary = {
            "near_dup_candidate_pairs": near.get("candidate_pairs_checked"),
            "near_dup_proposed_pairs": near.get("candidate_pairs_proposed"),
            "docs": docs,
            "command": f"stage {stage}" if stage else "run",
            "input_mb": input_bytes / 1e6,
            "generate_s": generated,
            "wall_s": wall,
            "cpu_s": memory.cpu_seconds,
            "peak": memory.peak,
        }
    return rows, summary


def table(rows: list[dict], summary: dict) -> str:
    head = (
        f"N={summary['docs']} documents, {summary['input_mb']:.1f} MB of input files; "
        f"`medcurate {summary['command']}` {summary['wall_s']:.1f} s wall, {summary['cpu_s']:.1f} CPU-s, "
        f"peak RSS of the process tree {summary['peak'] / 2**20:.0f} MiB; "
        f"near-duplicate candidate pairs verified by curate: {summary['near_dup_candidate_pairs']} "
        f"(LSH proposed {summary['near_dup_proposed_pairs']})"
    )
    lines = [
        head,
        "",
        "| stage | docs in | docs out | s | docs/s | MB/s | CPU-s | docs/CPU-s | peak RSS MiB | driver MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = r["docs"] / r["seconds"] if r["seconds"] and r["docs"] else 0.0
        per_cpu = r["docs"] / r["cpu"] if r["cpu"] > 0 and r["docs"] else 0.0
        mbs = r["mb"] / r["seconds"] if r["seconds"] and r["mb"] else 0.0
        lines.append(
            f"| {r['stage']} | {r['docs']} | {r['out']} | {r['seconds']:.1f} | {rate:.0f} | {mbs:.2f} "
            f"| {r['cpu']:.1f} | {per_cpu:.0f} | {r['peak'] / 2**20:.0f} | {r['driver'] / 2**20:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, required=True, help="documents to generate")
    parser.add_argument("--notes-fraction", type=float, default=0.1, help="share of clinical notes")
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) and the raw numbers (JSON) here")
    parser.add_argument("--keep", type=Path, help="generate and run in this folder and keep it, not a temp dir")
    parser.add_argument(
        "--stage",
        choices=STAGE_NAMES,
        help="run only this stage (`medcurate stage`) on the corpus and data root kept in --keep by an earlier run: "
        "to measure one stage again after a change without the hours of the stages before it",
    )
    args = parser.parse_args()
    if args.stage and not (args.keep and (args.keep / "corpus" / "scale.yaml").is_file()):
        parser.error("--stage needs --keep naming the folder of an earlier run (its corpus/scale.yaml and data/)")
    rows, summary = run(args.docs, args.notes_fraction, args.keep, args.stage)
    text = table(rows, summary)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"summary": summary, "stages": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
