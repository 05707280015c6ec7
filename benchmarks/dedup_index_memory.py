"""What a curate run holds of the earlier runs' dedup index when it keeps all of it (issue 14).

A second run over new documents compares them with every document earlier runs published: exact and near
dedup record the index's entries (exact key, MinHash, word hashes: ~1.4 KB each) in their stores, and the
save writes them back with the run's own.  This builds an index of N synthetic entries (random word hashes of
abstract length), then, each in a fresh process so each has its own peak, times and measures:

* ``streamed``: what curate does (``PublishedIndex`` read a row group at a time by each step and by the
  save);
* ``held`` (the baseline, what curate did before): every entry materialized at once, as the old
  ``PublishedIndex.entries`` held them, before the same steps run.

    nice -n 10 .venv/bin/python benchmarks/dedup_index_memory.py 200000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup import ExactDedup, NearDedup
from pipelines.quality.dedup_index import PublishedEntry, PublishedIndex, save_index

WORDS_PER_ENTRY = 180  # a generated abstract's word count, about


def build_index(governance: Path, n: int) -> None:
    rng = np.random.default_rng(14)
    config = DedupConfig()

    def entries():
        for i in range(n):
            yield PublishedEntry(
                doc_id=f"earlier-{i:08d}",
                source="pubmed",
                run_id="run-0",
                exact_key=rng.bytes(32).hex(),
                minhash=rng.integers(0, 2**32, config.num_perm, dtype=np.uint64),
                words=rng.integers(0, 2**32, WORDS_PER_ENTRY, dtype=np.uint32),
            )

    save_index(governance, config, PublishedIndex(), entries())


def measure(governance: Path, variant: str) -> dict[str, float]:
    config = DedupConfig()
    started = time.perf_counter()
    previous = PublishedIndex.load(governance, config, pa.array([], pa.string()))
    held = list(previous.slices()) if variant == "held" else None  # the baseline: every entry at once
    exact = ExactDedup(previous, lambda d: (0, d["doc_id"]), governance)
    near = NearDedup(config, previous, lambda d: (0, d["doc_id"]), directory=governance)
    exact.decide()
    near.decide(skip=exact.twins.doc_ids())
    rows = save_index(governance, config, previous, [])
    del held
    return {
        "entries": rows,
        "seconds": time.perf_counter() - started,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="dedup-index-") as tmp:
        governance = Path(tmp)
        build_index(governance, n)
        print(f"index of {n} entries: {(governance / 'dedup' / 'published.parquet').stat().st_size / 2**20:.0f} MiB")
        print("\n| variant | entries | s | peak RSS MiB |\n|---|---:|---:|---:|")
        for variant in ("held", "streamed"):
            out = subprocess.run(
                [sys.executable, __file__, "--measure", variant, str(governance)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            print(f"| {variant} | {result['entries']} | {result['seconds']:.1f} | {result['peak_mib']:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=200_000, help="entries in the earlier runs' index")
    parser.add_argument("--measure", nargs=2, metavar=("VARIANT", "GOVERNANCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[1]), args.measure[0])))
    else:
        main(args.n)
