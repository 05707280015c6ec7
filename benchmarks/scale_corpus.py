"""A generated corpus of any size for ``bench_scale.py``: mostly PubMed citations, plus clinical notes.

The mix is what the users of issue 14 curate: literature dominates by count (a PubMed baseline is tens of
millions of citations), clinical notes are fewer but cost most (only they go through Presidio).  The
documents come from the sample generators in ``medcurate/sample/`` so their sizes and shapes are those the
tests know: a citation is ~1.5 KB of abstract, a note ~1-2 KB.  Files are written as they are generated,
``ARTICLES_PER_FILE`` citations per baseline file (a real baseline file holds ~30,000), so generating a
large corpus never holds it in memory.
"""

from __future__ import annotations

import csv
import gzip
import random
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

from medcurate.sample import literature, notes
from medcurate.sample.people import make_cohort

ARTICLES_PER_FILE = 5_000
NOTES_PER_FILE = 2_000
NOTES_PER_PATIENT = 4
NOTE_COLUMNS = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]

SPEC = """\
# bench_scale.py's generated corpus: every value is synthetic.
name: medcurate-scale-bench
data_root: data
sources:
  - name: notes
    kind: notes_csv
    paths: ["incoming/notes/*.csv.gz"]
    license: synthetic
    legal_basis: waiver
  - name: pubmed
    kind: pubmed
    paths: ["incoming/pubmed/*.xml.gz"]
    license: public-domain
    legal_basis: public-domain
tokenizer:
  vocab_size: 4096
seq_len: 512
"""


def _write_pubmed(out: Path, count: int, rng: random.Random) -> int:
    written = 0
    for file_no in range(0, count, ARTICLES_PER_FILE):
        articles = ET.Element("PubmedArticleSet")
        for i in range(file_no, min(count, file_no + ARTICLES_PER_FILE)):
            articles.append(literature._pubmed_article(literature.FIRST_PMID + i, rng))
        text = literature._xml_text(articles, literature.PUBMED_DOCTYPE)
        path = out / f"pubmed26n{file_no // ARTICLES_PER_FILE + 1:04d}.xml.gz"
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
        written += path.stat().st_size
    return written


def _note_rows(count: int, rng: random.Random):
    styles = list(notes.STYLES)
    cohort = make_cohort(max(1, -(-count // NOTES_PER_PATIENT)), seed=rng.randint(0, 2**31))
    made = 0
    for patient in cohort:
        base = datetime(2019, 1, 1, 8, 0) + timedelta(days=rng.randint(0, 700), minutes=rng.randint(0, 600))
        hadm_id = str(20_000_000 + rng.randint(0, 9_999_999))
        for seq in range(1, NOTES_PER_PATIENT + 1):
            if made == count:
                return
            style = styles[(made + seq) % len(styles)]
            charttime = base + timedelta(hours=12 * seq)
            text, _ = notes.make_note(style, patient, charttime, rng)
            made += 1
            yield notes.note_row(patient, hadm_id, style, seq, charttime, text)


def _write_notes(out: Path, count: int, rng: random.Random) -> None:
    handle = writer = None
    for index, row in enumerate(_note_rows(count, rng)):
        if index % NOTES_PER_FILE == 0:
            if handle:
                handle.close()
            path = out / f"notes_{index // NOTES_PER_FILE + 1:04d}.csv.gz"
            handle = gzip.open(path, "wt", encoding="utf-8", newline="")
            writer = csv.DictWriter(handle, fieldnames=NOTE_COLUMNS)
            writer.writeheader()
        writer.writerow(row)
    if handle:
        handle.close()


def generate(out_dir: Path, docs: int, notes_fraction: float = 0.1, seed: int = 14) -> Path:
    """Write ``docs`` documents (``notes_fraction`` of them notes) under ``out_dir``; return the spec's path."""
    rng = random.Random(seed)
    n_notes = max(1, round(docs * notes_fraction))
    (out_dir / "incoming" / "pubmed").mkdir(parents=True, exist_ok=True)
    (out_dir / "incoming" / "notes").mkdir(parents=True, exist_ok=True)
    _write_pubmed(out_dir / "incoming" / "pubmed", docs - n_notes, rng)
    _write_notes(out_dir / "incoming" / "notes", n_notes, rng)
    spec = out_dir / "scale.yaml"
    spec.write_text(SPEC)
    return spec
