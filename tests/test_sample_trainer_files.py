"""The trainer's files of the bundled sample run: figures from the real stage reports, no planted identifier."""

from __future__ import annotations

import html
import json
import re

import mlcroissant

TRAINER_FILES = ("README.md", "croissant.json", "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json")


def test_card_lists_the_removals_and_phi_counts_of_the_stage_reports(sample_run):
    card = (sample_run.zones.shards / "README.md").read_text()
    reports = {r.stage: r for r in sample_run.reports}
    for stage in ("deid", "curate"):
        for reason, count in reports[stage].removed_by_reason.items():
            assert f"| {stage} | {reason} | {count} |" in card
    for phi_type, count in reports["deid"].details["phi_by_type"].items():
        assert f"| {phi_type} | {count} |" in card


def test_split_warnings_match_the_cards_clinical_counts(sample_run):
    card = (sample_run.zones.shards / "README.md").read_text()
    shard = next(r for r in sample_run.reports if r.stage == "shard")
    without_patients = re.findall(r"^\| (\w+) \| \d+ \| \d+ \| 0 \| \d+ \|$", card, flags=re.MULTILINE)
    assert [w.split("'")[1] for w in shard.details["warnings"]] == without_patients
    for warning in shard.details["warnings"]:
        assert f"- {warning}" in card
    report = html.unescape((sample_run.zones.governance / "report.html").read_text())
    assert all(warning in report for warning in shard.details["warnings"])


def test_no_planted_identifier_in_the_trainer_files(sample_run):
    planted = json.loads((sample_run.sample_dir / "gold" / "phi_strings.json").read_text())
    names = [p for p in planted if len(p) > 4 and not re.fullmatch(r"[\d/ -]+", p)]
    for name in TRAINER_FILES:
        text = (sample_run.zones.shards / name).read_text()
        assert not [p for p in names if p in text], name


def test_sample_croissant_validates(sample_run):
    dataset = mlcroissant.Dataset(jsonld=str(sample_run.zones.shards / "croissant.json"))
    assert not dataset.metadata.ctx.issues.errors and not dataset.metadata.ctx.issues.warnings
