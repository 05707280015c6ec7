"""Benchmark decontamination: documents that share a long word n-gram with an evaluation item are removed.

A model trained on a benchmark's questions, answers or passages scores on memory, not skill.  Each evaluation
set named in the spec (``quality.decontamination``: JSONL lines with ``question`` / ``answer`` / ``context``
text, strings or lists of strings such as answer options) is turned into the set of its word n-grams
(default 13 words, lower-cased, punctuation dropped: text_norm.words).  A field shorter than n words is not
used: a short answer ("metformin") would match countless legitimate documents.  A document sharing any n-gram
with a benchmark is dropped as ``decontaminated:<benchmark>`` (the first benchmark in spec order), and counted
per benchmark; the detail names the benchmark line, never the text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.quality.curation_config import Benchmark
from pipelines.quality.steps import Doc, Ledger, Step
from pipelines.quality.text_norm import words

FIELDS = ("question", "answer", "context")


def _field_texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _field_texts(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _field_texts(item)


def _ngrams(tokens: list[str], n: int) -> Iterator[str]:
    for i in range(len(tokens) - n + 1):
        yield " ".join(tokens[i : i + n])


@dataclass
class BenchmarkNgrams:
    """A benchmark's n-grams, each mapped to the first (1-based) line that contains it."""

    name: str
    ngrams: dict[str, int]
    items: int

    @classmethod
    def load(cls, benchmark: Benchmark, n: int) -> BenchmarkNgrams:
        ngrams: dict[str, int] = {}
        items = 0
        with open(benchmark.path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                item = json.loads(line)
                items += 1
                for name in FIELDS:
                    for text in _field_texts(item.get(name)):
                        for gram in _ngrams(words(text), n):
                            ngrams.setdefault(gram, line_no)
        return cls(benchmark.name, ngrams, items)


class Decontaminator(Step):
    name = "decontamination"

    def __init__(self, benchmarks: list[BenchmarkNgrams], n: int) -> None:
        super().__init__()
        self.benchmarks = benchmarks
        self.n = n
        self.removed: Counter[str] = Counter()

    def match(self, text: str) -> tuple[str, int] | None:
        """(benchmark name, benchmark line) of the first benchmark sharing an n-gram with ``text``."""
        grams = set(_ngrams(words(text), self.n))
        for benchmark in self.benchmarks:
            lines = [benchmark.ngrams[g] for g in grams if g in benchmark.ngrams]
            if lines:
                return benchmark.name, min(lines)
        return None

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        if not self.benchmarks:
            return docs
        kept = []
        for doc in docs:
            found = self.match(doc["text"])
            if found is None:
                kept.append(doc)
                continue
            name, line = found
            self.removed[name] += 1
            ledger.drop(doc, self.name, f"decontaminated:{name}", f"shares a {self.n}-gram with {name} line {line}")
        return kept

    def summary(self) -> dict[str, Any]:
        return {
            "ngram_words": self.n,
            "benchmarks": {
                b.name: {"items": b.items, "ngrams": len(b.ngrams), "documents_removed": self.removed[b.name]}
                for b in self.benchmarks
            },
        }
