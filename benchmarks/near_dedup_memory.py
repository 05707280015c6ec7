"""How much memory curate's ``NearDedup`` takes per document, alone (issue 14: what makes curate's driver grow).

``bench_scale.py`` shows the curate driver growing ~36 KB per document; this measures the near-duplicate
step's share of it with tracemalloc, on N generated PubMed abstracts (the same generator): the peak while it
runs (its LSH index, the candidates' arrays) and what it still holds afterwards (each document's words and
MinHash, kept for the cross-run dedup index).  Candidate pairs verified are printed too: on this templated
text they grew with N squared until LSH buckets were capped (``dedup.BUCKET_CAP``); ``--bucket-cap`` sets another
cap (0: none, the old behaviour) to compare.

    nice -n 10 .venv/bin/python benchmarks/near_dedup_memory.py 4000 [--bucket-cap 0]
"""

from __future__ import annotations

import argparse
import gc
import random
import tracemalloc

from medcurate.sample import literature
from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup import BUCKET_CAP, NearDedup
from pipelines.quality.dedup_index import PublishedIndex


class _NoLedger:
    def drop(self, *args: object, **kwargs: object) -> None:
        pass


def main(n: int, bucket_cap: int) -> None:
    rng = random.Random(14)
    docs = []
    for i in range(n):
        article = literature._pubmed_article(literature.FIRST_PMID + i, rng)
        text = " ".join(e.text or "" for e in article.iter("AbstractText"))
        docs.append({"doc_id": f"d{i:07d}", "source": "pubmed", "text": text})
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    step = NearDedup(DedupConfig(), PublishedIndex(), lambda d: (0, d["doc_id"]), bucket_cap=bucket_cap or n)
    kept = step.run(docs, _NoLedger())
    gc.collect()
    peak = tracemalloc.get_traced_memory()[1]
    held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    cap = bucket_cap or "none"
    print(f"N={n}, bucket cap {cap}: kept {len(kept)}, candidate pairs verified {step.candidates_checked}")
    print(f"peak while running {peak / 2**20:.1f} MiB ({peak / n / 1024:.1f} KiB/doc); ", end="")
    print(f"held afterwards {held / 2**20:.1f} MiB ({held / n / 1024:.1f} KiB/doc)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=4000, help="abstracts to generate")
    parser.add_argument("--bucket-cap", type=int, default=BUCKET_CAP, help="documents per LSH bucket; 0: no cap")
    args = parser.parse_args()
    main(args.n, args.bucket_cap)
