"""What the record cap costs when reading a notes CSV: ``csv.reader`` over the text stream (the baseline, what
ingest did before the caps) vs ``csv.reader`` over ``_RecordLines`` (each physical line counted and its quotes
tallied so an endless record can be cut off), and the whole ``NotesCsvParser`` for scale.

The CSV is generated: multi-line quoted notes, as in MIMIC-IV-Note exports.  Best of ``--repeat`` runs.

    .venv/bin/python benchmarks/bench_ingest_csv.py [--notes 40000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.ingest.files import open_text
from pipelines.ingest.limits import default_limits
from pipelines.ingest.notes_csv import NotesCsvParser, _RecordLines


def write_notes(path: Path, notes: int) -> None:
    rnd = random.Random(20261206)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["note_id", "subject_id", "text"])
        for i in range(notes):
            lines = ("Pt seen, stable. " * rnd.randint(1, 8) for _ in range(rnd.randint(3, 12)))
            writer.writerow([f"n{i}", f"p{i % 500}", "\n".join(lines)])


def rows_plain(path: Path) -> int:
    with open_text(path, default_limits()) as f:
        return sum(1 for _ in csv.reader(f, strict=True))


def rows_capped(path: Path) -> int:
    limits = default_limits()
    with open_text(path, limits) as f:
        lines = _RecordLines(f, limits.max_record_bytes)
        count = 0
        for _ in csv.reader(lines, strict=True):
            lines.record_done()
            count += 1
        return count


def documents(path: Path) -> int:
    return sum(1 for _ in NotesCsvParser().parse_file(path))


def best_seconds(fn: Callable[[Path], int], path: Path, repeat: int) -> tuple[int, float]:
    times, result = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn(path)
        times.append(time.perf_counter() - started)
    return result, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=40000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "notes.csv"
        write_notes(path, args.notes)
        megabytes = path.stat().st_size / 1e6
        print(f"{args.notes} notes, {megabytes:.1f} MB, best of {args.repeat}\n")
        print("| reader | records | seconds | MB/s |")
        print("|---|---|---|---|")
        for name, fn in [
            ("baseline: csv.reader over the text stream", rows_plain),
            ("csv.reader over _RecordLines (record cap)", rows_capped),
            ("NotesCsvParser.parse_file (whole parser)", documents),
        ]:
            records, seconds = best_seconds(fn, path, args.repeat)
            print(f"| {name} | {records} | {seconds:.2f} | {megabytes / seconds:.1f} |")


if __name__ == "__main__":
    main()
