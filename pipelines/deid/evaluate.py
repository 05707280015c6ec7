"""Score the text de-identification engine against gold PHI spans, and de-identify text from stdin.

Gold format (JSONL, one record per document): ``{"id": ..., "text": ..., "spans": [{"start", "end",
"label"}]}``.  Metrics, chosen for de-identification where a miss is a leak and an extra redaction is only lost
text:

* recall: a gold span is found when at least half of its characters are covered by predicted spans of any
  label (``strict_recall``: all of its characters), overall and per gold label;
* leak rate: the share of gold PHI characters that no predicted span covers, overall and per gold label: what
  would be published;
* precision: a predicted span is correct when at least half of its characters lie inside gold spans, overall
  and per predicted label; ``char_precision``: the share of predicted characters that are gold PHI.

Gold labels in ``NOT_PHI_LABELS`` (bare years, which Safe Harbor lets stay) count in no recall or leak figure,
but a prediction over them is not a false positive either.  ``error_report`` lists missed gold spans and false
positives with some context, for developers looking at labelled development data only.

``convert_presidio_research`` maps the presidio-research synthetic set to this format (PII kinds that are not
HIPAA identifiers, such as organisations, titles and nationalities, are left out; ages only from 90; a bare year
is no identifier under Safe Harbor, so DATE spans that are only a year are left out too).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipelines.deid.engine import DeidEngine, PhiSpan
from pipelines.deid.surrogates import Replacer

PRESIDIO_LABELS = {
    "PERSON": "NAME",
    "STREET_ADDRESS": "ADDRESS",
    "GPE": "LOCATION",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "DATE_TIME": "DATE",
    "CREDIT_CARD": "ID",
    "IBAN_CODE": "ID",
    "US_SSN": "SSN",
    "IP_ADDRESS": "IP",
    "AGE": "AGE",
    "ZIP_CODE": "ZIP",
    "DOMAIN_NAME": "URL",
    "US_DRIVER_LICENSE": "LICENSE",
}
BATCH = 32
BARE_YEAR = re.compile(r"(?:19|20)\d{2}")
NOT_PHI_LABELS = frozenset({"DateYear"})
CONTEXT_CHARS = 30

_engine: DeidEngine | None = None


def shared_engine() -> DeidEngine:
    """One engine per process: loading spaCy and compiling the patterns takes seconds."""
    global _engine
    if _engine is None:
        _engine = DeidEngine()
    return _engine


def read_gold(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _covered(intervals: list[tuple[int, int]], start: int, end: int) -> int:
    return sum(max(0, min(end, e) - max(start, s)) for s, e in intervals)


def score(gold: Iterable[dict[str, Any]], predictions: dict[str, list[PhiSpan]]) -> dict[str, Any]:
    """Metrics for predicted spans (by document id) against gold records."""
    found = Counter()
    strict = Counter()
    total = Counter()
    pred_ok = Counter()
    pred_total = Counter()
    label_chars = Counter()
    label_covered = Counter()
    pred_chars = pred_gold_chars = gold_chars = gold_covered_chars = 0
    for record in gold:
        gold_iv = [(s["start"], s["end"]) for s in record["spans"]]
        preds = predictions.get(record["id"], [])
        pred_iv = _union([(p.start, p.end) for p in preds])
        for span in record["spans"]:
            if span["label"] in NOT_PHI_LABELS:
                continue
            length = span["end"] - span["start"]
            covered = _covered(pred_iv, span["start"], span["end"])
            total[span["label"]] += 1
            found[span["label"]] += covered * 2 >= length
            strict[span["label"]] += covered >= length
            gold_chars += length
            gold_covered_chars += covered
            label_chars[span["label"]] += length
            label_covered[span["label"]] += covered
        gold_union = _union(gold_iv)
        for p in preds:
            inside = _covered(gold_union, p.start, p.end)
            pred_total[p.label] += 1
            pred_ok[p.label] += inside * 2 >= (p.end - p.start)
        pred_chars += sum(e - s for s, e in pred_iv)
        pred_gold_chars += sum(_covered(gold_union, s, e) for s, e in pred_iv)

    def ratio(a: float, b: float) -> float:
        return round(a / b, 4) if b else 1.0

    return {
        "gold_spans": sum(total.values()),
        "predicted_spans": sum(pred_total.values()),
        "recall": ratio(sum(found.values()), sum(total.values())),
        "strict_recall": ratio(sum(strict.values()), sum(total.values())),
        "char_recall": ratio(gold_covered_chars, gold_chars),
        "leak_rate": ratio(gold_chars - gold_covered_chars, gold_chars) if gold_chars else 0.0,
        "leak_rate_by_label": {k: ratio(label_chars[k] - label_covered[k], label_chars[k]) for k in sorted(total)},
        "precision": ratio(sum(pred_ok.values()), sum(pred_total.values())),
        "char_precision": ratio(pred_gold_chars, pred_chars),
        "recall_by_label": {k: ratio(found[k], total[k]) for k in sorted(total)},
        "strict_recall_by_label": {k: ratio(strict[k], total[k]) for k in sorted(total)},
        "gold_by_label": dict(sorted(total.items())),
        "precision_by_label": {k: ratio(pred_ok[k], pred_total[k]) for k in sorted(pred_total)},
    }


def error_report(records: list[dict[str, Any]], predictions: dict[str, list[PhiSpan]], limit: int) -> list[str]:
    """Up to ``limit`` missed gold spans per gold label and false positives per predicted label, each with
    ``CONTEXT_CHARS`` of text either side (newlines shown as "|").  It prints the text of labelled development
    data, so it is a developer's tool: never called from a pipeline run or written to a log."""
    missed: dict[str, list[str]] = {}
    false: dict[str, list[str]] = {}
    for record in records:
        text = record["text"]
        preds = predictions.get(record["id"], [])
        pred_iv = _union([(p.start, p.end) for p in preds])
        gold_union = _union([(s["start"], s["end"]) for s in record["spans"]])
        for span in record["spans"]:
            length = span["end"] - span["start"]
            if span["label"] not in NOT_PHI_LABELS and _covered(pred_iv, span["start"], span["end"]) * 2 < length:
                missed.setdefault(span["label"], []).append(_in_context(text, span["start"], span["end"]))
        for p in preds:
            if _covered(gold_union, p.start, p.end) * 2 < p.end - p.start:
                false.setdefault(p.label, []).append(_in_context(text, p.start, p.end))
    lines: list[str] = []
    for title, found in (("missed", missed), ("false positive", false)):
        for label in sorted(found):
            lines.append(f"== {title} {label}: {len(found[label])}")
            lines.extend(f"  {item}" for item in found[label][:limit])
    return lines


def _in_context(text: str, start: int, end: int) -> str:
    shown = f"{text[max(0, start - CONTEXT_CHARS) : start]}[[{text[start:end]}]]{text[end : end + CONTEXT_CHARS]}"
    return shown.replace("\r", "").replace("\n", "|")


def _union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def predict(records: list[dict[str, Any]], engine: DeidEngine | None = None) -> dict[str, list[PhiSpan]]:
    engine = engine or shared_engine()
    out: dict[str, list[PhiSpan]] = {}
    for i in range(0, len(records), BATCH):
        chunk = records[i : i + BATCH]
        for record, spans in zip(chunk, engine.analyze_batch([r["text"] for r in chunk]), strict=True):
            out[record["id"]] = spans
    return out


def evaluate(
    gold_jsonl_path: str | Path,
    predictions_out: str | Path | None = None,
    engine: DeidEngine | None = None,
    missed: int = 0,
) -> dict[str, Any]:
    """Run the engine over a gold file and score it; optionally write predicted spans (offsets only) as JSONL,
    and with ``missed`` > 0 add ``error_report`` lines (text of the gold file) under "errors"."""
    records = read_gold(Path(gold_jsonl_path))
    predictions = predict(records, engine)
    if predictions_out is not None:
        with Path(predictions_out).open("w", encoding="utf-8") as fh:
            for record in records:
                spans = [{"start": p.start, "end": p.end, "label": p.label} for p in predictions[record["id"]]]
                fh.write(json.dumps({"id": record["id"], "spans": spans}) + "\n")
    metrics = score(records, predictions)
    metrics["documents"] = len(records)
    if missed > 0:
        metrics["errors"] = error_report(records, predictions, missed)
    return metrics


def deidentify_text(text: str, key: bytes | None = None, patient: str = "") -> str:
    """De-identify one text.  Without a key every PHI span becomes a type tag ("[NAME]"); with a key the
    configured operators apply (surrogate names and shifted dates consistent for ``patient``)."""
    engine = shared_engine()
    spans = engine.analyze(text)
    replacer = Replacer(key, engine.config, tags_only=key is None)
    return replacer.apply(text, spans, patient).text


def convert_presidio_research(src: str | Path, dst: str | Path) -> Path:
    """presidio-research ``synth_dataset_v2.json`` -> gold JSONL with our labels (see ``PRESIDIO_LABELS``)."""
    items = json.loads(Path(src).read_text(encoding="utf-8"))
    with Path(dst).open("w", encoding="utf-8") as fh:
        for i, item in enumerate(items):
            spans = []
            for s in item["spans"]:
                label = PRESIDIO_LABELS.get(s["entity_type"])
                if label is None:
                    continue
                if label == "AGE" and not _age_at_least_90(s["entity_value"]):
                    continue
                if label == "DATE" and BARE_YEAR.fullmatch(s["entity_value"].strip()):
                    continue
                spans.append({"start": s["start_position"], "end": s["end_position"], "label": label})
            fh.write(json.dumps({"id": f"presidio-{i}", "text": item["full_text"], "spans": spans}) + "\n")
    return Path(dst)


def _age_at_least_90(value: str) -> bool:
    digits = re.findall(r"\d+", value)
    return bool(digits) and int(digits[0]) >= 90


def print_evaluation(metrics: dict[str, Any]) -> None:
    """The metrics as JSON, then the error report lines (if any) as plain text a developer can read."""
    errors = metrics.pop("errors", [])
    print(json.dumps(metrics, indent=2, sort_keys=True))
    for line in errors:
        print(line)


def main(argv: list[str] | None = None) -> int:
    """Developer entry point: ``python -m pipelines.deid.evaluate {eval,convert-presidio,text}`` (synthetic gold
    sets: ``python -m medcurate.sample.deid_gold``)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.deid.evaluate")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval")
    ev.add_argument("gold")
    ev.add_argument("--predictions")
    ev.add_argument("--missed", type=int, default=0, help="print up to N missed spans and false positives per label")
    cv = sub.add_parser("convert-presidio")
    cv.add_argument("src")
    cv.add_argument("dst")
    sub.add_parser("text")
    args = parser.parse_args(argv)
    if args.command == "eval":
        print_evaluation(evaluate(args.gold, args.predictions, missed=args.missed))
    elif args.command == "convert-presidio":
        print(convert_presidio_research(args.src, args.dst))
    else:
        sys.stdout.write(deidentify_text(sys.stdin.read()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
