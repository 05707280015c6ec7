"""Documents/s and peak memory of `medcurate run` on the generated sample corpus.

Runs the real command line in a subprocess on a freshly generated sample (``--patients`` scales it), samples
the resident memory of the whole process tree (driver, Ray raylet and workers) every 100 ms, and prints one
table row per stage from the run's own stage reports.  The baseline in the same run is the ingest stage
alone: parsing is the cheapest pass over the data, so it shows how much each later stage costs on top.

    .venv/bin/python benchmarks/bench_run.py [--patients 12]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tree_memory import measured_run

from medcurate.core.names import STAGE_NAMES
from medcurate.sample import generate_sample


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = generate_sample(Path(tmp) / "sample", n_patients=args.patients)
        data_root = Path(tmp) / "data"
        memory, wall = measured_run(spec, data_root)
        peak = memory.peak
        stage_dir = data_root / "governance" / "stages"
        stages = {name: json.loads((stage_dir / f"{name}.json").read_text()) for name in STAGE_NAMES}
    docs = sum(s["input"] for s in stages["ingest"]["sources"].values())
    print(f"sample: {args.patients} patients, {docs} documents parsed; peak RSS of process tree {peak / 2**20:.0f} MiB")
    print("baseline: the ingest stage (parse only); 'x ingest' = how many times slower per document")
    print(f"{'stage':<16}{'docs in':>9}{'seconds':>9}{'docs/s':>10}{'x ingest':>10}")
    ingest_rate = None
    for name, rep in stages.items():
        n = sum(s["input"] for s in rep["sources"].values())
        if not n:  # the report stage reads no documents
            continue
        sec = rep["details"].get("seconds", 0.0)
        rate = n / sec if sec else float("inf")
        if name == "ingest":
            ingest_rate = rate
        ratio = f"{ingest_rate / rate:.1f}" if ingest_rate and rate else "-"
        print(f"{name:<16}{n:>9}{sec:>9.2f}{rate:>10.1f}{ratio:>10}")
    print(f"{'medcurate run':<16}{docs:>9}{wall:>9.2f}{docs / wall:>10.1f}   (whole command, incl. start-up)")


if __name__ == "__main__":
    main()
