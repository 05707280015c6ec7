"""Tokens/s and peak memory of the shard stage, against the tokenizer's own ceiling and datatrove.

Generates a synthetic curated zone (clinical notes: lines of the sample generator's notes recombined, so no
two documents are equal) of ``--mb`` MB of text, and a half-size one made of its first half of files.  A
byte-level BPE (``--vocab``) is trained once on a slice and given to every run, so all rows tokenize the same
text with the same tokenizer.  Rows, each in its own process:

* ``encode_batch_fast, 1 process``: the ceiling: Parquet batches straight into the tokenizer, nothing else
  (``encode_batch_fast`` is the call the stage's Ray workers make; ``encode_batch`` also computes offsets);
* ``shard stage, N worker(s)``: ``pipelines.shard.stage.run`` (mode ``documents``) in the project's own
  local Ray session (``medcurate.core.ray_runtime.ray_session``) with ``num_cpus = N``, as in ``medcurate run``
  on an N-CPU machine: N tokenizer actors, or for N = 1 the driver alone (no actor); Ray start not counted;
* ``datatrove DocumentTokenizer, N workers``: ``ParquetReader`` -> ``DocumentTokenizer`` (no shuffle) with
  ``LocalPipelineExecutor``, N tasks on N workers;
* the stage on the half-size corpus, to compare peak memory: the stage streams, so it should not grow with
  the corpus.

Every process runs with ``TOKENIZERS_PARALLELISM=false``: one tokenizer thread per worker, so "N workers"
means N cores of tokenization.  Time: wall seconds of the measured part, and the CPU seconds its whole
process tree spent in it (driver, Ray workers and services, datatrove's worker processes; see
``tree_memory.PeakTreeRSS``).  On a machine others share, wall time also measures the neighbours:
compare ``tokens/CPU s`` there, and wall ratios only between rows of one run.  Memory: the driver's peak RSS
(``ru_maxrss``) and the peak of the summed RSS of its whole process tree (sampled every 100 ms; Ray workers
and object store pages included, shared pages counted once per process, so an upper bound).

    .venv/bin/python benchmarks/bench_shard.py [--mb 200] [--vocab 32768] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tree_memory import PeakTreeRSS

from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, METADATA_TYPE, make_doc_id
from medcurate.core.zones import write_parquet

SOURCE = "bench_notes"
PART_BYTES = 20 * 1024 * 1024
RUN_ID = "bench-shard"


# ---- corpus --------------------------------------------------------------------------------------------


def _note_lines(n_notes: int, seed: int) -> list[str]:
    """Lines of rendered sample notes (all styles), the material documents are recombined from."""
    from datetime import datetime, timedelta

    from medcurate.sample.notes import STYLES, make_note
    from medcurate.sample.people import make_cohort

    rng = random.Random(seed)
    cohort = make_cohort(50, seed)
    lines = []
    for i in range(n_notes):
        when = datetime(2024, 1, 1) + timedelta(hours=rng.randint(0, 20000))
        text, _ = make_note(rng.choice(list(STYLES)), cohort[i % len(cohort)], when, rng)
        lines.extend(line for line in text.splitlines() if line.strip())
    return lines


def write_corpus(curated: Path, total_mb: int, seed: int = 11) -> int:
    """Curated Parquet parts of about ``PART_BYTES`` text each; returns the number of documents."""
    lines = _note_lines(600, seed)
    rng = random.Random(seed)
    target = total_mb * 1024 * 1024
    written = n_docs = part = 0
    while written < target:
        texts: list[str] = []
        part_bytes = 0
        while part_bytes < PART_BYTES and written + part_bytes < target:
            text = "\n".join(rng.choices(lines, k=rng.randint(4, 60))) + f"\nvisit {rng.randint(1, 10**6)}."
            texts.append(text)
            part_bytes += len(text.encode())
        ids = range(n_docs, n_docs + len(texts))
        n = len(texts)
        table = pa.table(
            {
                "doc_id": [make_doc_id(SOURCE, str(i)) for i in ids],
                "source": [SOURCE] * n,
                "source_kind": ["notes_csv"] * n,
                "source_file": ["src-00000000000000aa"] * n,
                "source_sha256": ["0" * 64] * n,
                "position": [f"line {i}" for i in ids],
                "record_index": pa.array(list(ids), pa.int64()),
                "doc_type": ["note"] * n,
                "text": pa.array(texts, pa.large_string()),
                "metadata": pa.nulls(n, METADATA_TYPE),
                "license": ["synthetic"] * n,
                "legal_basis": ["waiver"] * n,
                "run_id": ["bench"] * n,
                "patient_pseudonym": [f"P{i // 4:020d}" for i in ids],
            },
            schema=DEID_DOCUMENT_SCHEMA,
        )
        write_parquet(table, curated / SOURCE / f"part-{part:05d}.parquet")
        written += part_bytes
        n_docs += n
        part += 1
    return n_docs


def half_corpus(full: Path, half: Path) -> None:
    """The first half of the full corpus's files, hard-linked (same bytes, no copy)."""
    parts = sorted((full / SOURCE).glob("*.parquet"))
    (half / SOURCE).mkdir(parents=True, exist_ok=True)
    for part in parts[: max(1, len(parts) // 2)]:
        os.link(part, half / SOURCE / part.name)


def text_bytes(curated: Path) -> int:
    total = 0
    for part in sorted(curated.rglob("*.parquet")):
        for batch in pq.ParquetFile(part).iter_batches(columns=["text"]):
            total += sum(len(t.encode()) for t in batch.column("text").to_pylist())
    return total


# ---- measured children ---------------------------------------------------------------------------------


class Timed:
    """Wall seconds and the CPU seconds of this process's whole tree, for the ``with`` block."""

    def __enter__(self) -> Timed:
        self._tree = PeakTreeRSS(os.getpid()).__enter__()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self._started
        self._tree.__exit__(*exc)
        self.result = {"seconds": seconds, "cpu_seconds": self._tree.cpu_seconds}


def child_ceiling(curated: Path, tokenizer: Path) -> dict[str, Any]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    with Timed() as timed:
        tokens = 0
        for part in sorted(curated.rglob("*.parquet")):
            for batch in pq.ParquetFile(part).iter_batches(batch_size=256, columns=["text"]):
                tokens += sum(len(e.ids) for e in tok.encode_batch_fast(batch.column("text").to_pylist()))
    return timed.result | {"tokens": tokens}


def child_stage(data_root: Path, tokenizer: Path, workers: int) -> dict[str, Any]:
    from medcurate.core.context import RunContext
    from medcurate.core.ray_runtime import ray_session
    from medcurate.core.spec import parse_spec
    from medcurate.core.zones import Zones
    from pipelines.shard.stage import run

    spec = parse_spec(
        {
            "sources": [
                {"name": SOURCE, "kind": "notes_csv", "paths": ["x"], "license": "synthetic", "legal_basis": "waiver"}
            ],
            "tokenizer": {"path": str(tokenizer)},
        },
        data_root,
    )
    ctx = RunContext(spec=spec, zones=Zones(data_root).ensure(), run_id=RUN_ID, secret_key=b"b" * 32)
    with ray_session(num_cpus=workers), Timed() as timed:
        report = run(ctx)
    return timed.result | {"tokens": report.details["total_tokens"], "shards": report.details["shard_count"]}


def child_datatrove(curated: Path, tokenizer: Path, out: Path, workers: int) -> dict[str, Any]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    executor = LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(curated), glob_pattern="**/*.parquet", text_key="text", id_key="doc_id"),
            DocumentTokenizer(
                str(out / "tokens"),
                tokenizer_name_or_path=str(tokenizer),
                eos_token="<|eos|>",
                shuffle_documents=False,
            ),
        ],
        tasks=workers,
        workers=workers,
        logging_dir=str(out / "logs"),
    )
    with Timed() as timed:
        executor.run()
    tokens = sum(p.stat().st_size for p in (out / "tokens").glob("*.ds")) // 2  # uint16 tokens
    return timed.result | {"tokens": tokens}


def child_main(args: list[str]) -> None:
    kind, *rest = args
    if kind == "ceiling":
        result = child_ceiling(Path(rest[0]), Path(rest[1]))
    elif kind == "stage":
        result = child_stage(Path(rest[0]), Path(rest[1]), int(rest[2]))
    else:
        result = child_datatrove(Path(rest[0]), Path(rest[1]), Path(rest[2]), int(rest[3]))
    result["driver_peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(result))


def measure(args: list[str], log_dir: Path) -> dict[str, Any]:
    """Run one child (its stderr to ``log_dir``), sampling its process tree's memory; returns the child's
    result plus the tree peak."""
    env = os.environ | {"TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    with (log_dir / f"{args[0]}.log").open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
    with PeakTreeRSS(proc.pid) as memory:
        out, _ = proc.communicate()
    peak = memory.peak
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {args[0]} failed ({proc.returncode}); see {log_dir}/{args[0]}.log")
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    return result | {"tree_peak_rss": peak}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200, help="text size of the full corpus")
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(options.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        full, half = work / "full", work / "half"
        started = time.perf_counter()
        n_docs = write_corpus(full / "curated", options.mb)
        half_corpus(full / "curated", half / "curated")
        sizes = {name: text_bytes(root / "curated") for name, root in (("full", full), ("half", half))}
        print(f"corpus: {n_docs} documents, {sizes['full'] / 1e6:.0f} MB text ({time.perf_counter() - started:.0f}s)")

        from pipelines.shard.tokenizer import iter_training_texts, train_bpe

        tokenizer = work / "tokenizer.json"
        first_part = sorted((full / "curated").rglob("*.parquet"))[:1]
        train_bpe(iter_training_texts(first_part, {"train": 1.0}), options.vocab).save(str(tokenizer))

        full_curated = str(full / "curated")
        rows = [
            ("encode_batch_fast, 1 process (ceiling)", "full", measure(["ceiling", full_curated, str(tokenizer)], work))
        ]
        for corpus, workers in (("full", 1), ("full", 2), ("half", 1)):
            root = work / f"stage-{corpus}-{workers}"
            root.mkdir(exist_ok=True)
            if not (root / "curated").exists():
                (root / "curated").symlink_to(work / corpus / "curated")
            result = measure(["stage", str(root), str(tokenizer), str(workers)], work)
            rows.append((f"shard stage, {workers} worker(s)", corpus, result))
        for workers in (1, 2):
            out = str(work / f"datatrove-{workers}")
            result = measure(["datatrove", full_curated, str(tokenizer), out, str(workers)], work)
            rows.append((f"datatrove DocumentTokenizer, {workers} worker(s)", "full", result))
        _print_table(rows, sizes)


def _print_table(rows: list[tuple[str, str, dict[str, Any]]], sizes: dict[str, int]) -> None:
    ceiling = rows[0][2]["tokens"] / rows[0][2]["seconds"]
    ceiling_per_cpu = rows[0][2]["tokens"] / rows[0][2]["cpu_seconds"]
    header = (
        "run",
        "corpus",
        "MB text",
        "tokens",
        "seconds",
        "tokens/s",
        "MB/s",
        "vs ceiling",
        "CPU s",
        "tokens/CPU s",
        "vs ceiling (CPU)",
        "driver peak MB",
        "tree peak MB",
    )
    table = [
        (
            name,
            corpus,
            f"{sizes[corpus] / 1e6:.0f}",
            f"{r['tokens']:,}",
            f"{r['seconds']:.1f}",
            f"{r['tokens'] / r['seconds']:,.0f}",
            f"{sizes[corpus] / 1e6 / r['seconds']:.2f}",
            f"{r['tokens'] / r['seconds'] / ceiling:.2f}x",
            f"{r['cpu_seconds']:.1f}",
            f"{r['tokens'] / r['cpu_seconds']:,.0f}",
            f"{r['tokens'] / r['cpu_seconds'] / ceiling_per_cpu:.2f}x",
            f"{r['driver_peak_rss'] / 2**20:.0f}",
            f"{r['tree_peak_rss'] / 2**20:.0f}",
        )
        for name, corpus, r in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *table, strict=True)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in table:
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
