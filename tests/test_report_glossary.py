"""Every reason code the code can write into a quarantine row or a stage report has a plain meaning in the
report's glossary (``governance/report_content.yaml``): codes written as literals are found in the source,
codes kept in constants are imported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from governance.report_content import define, glossary
from medcurate.core.listing import DANGLING_SYMLINK, OUTSIDE_SPEC_FOLDER
from pipelines.deid.dicom_handler import BURNED_IN
from pipelines.ingest.limits import FILE_TOO_LARGE, RECORD_TOO_LARGE, TOO_DEEP
from pipelines.ingest.stage import FILE_VANISHED
from pipelines.quality.stage import QUARANTINED_EARLIER
from pipelines.shard.ray_tokenize import EMPTY_AFTER_TOKENIZATION, SAMPLED_OUT

REPO = Path(__file__).resolve().parents[1]
CONSTANTS = {
    DANGLING_SYMLINK,
    OUTSIDE_SPEC_FOLDER,
    BURNED_IN,
    FILE_TOO_LARGE,
    RECORD_TOO_LARGE,
    TOO_DEEP,
    FILE_VANISHED,
    QUARANTINED_EARLIER,
    EMPTY_AFTER_TOKENIZATION,
    SAMPLED_OUT,
}
# How the stages spell a reason code as a literal: a rejected file or record, a filter's verdict, a curate drop,
# a character-ratio check, ingest's own bookkeeping.
LITERAL_PATTERNS = (
    r'(?:BadInput|PayloadError)\(\s*"([a-z_0-9]+)"',
    r'return "([a-z_]+)", f?"',
    r'ledger\.drop\([^)]*?"([a-z_]+)"',
    r'drop_decided\([^)]*?"([a-z_]+)"',
    r'\("([a-z_]+_ratio)",',
    r'reason = "([a-z_]+)"',
    r'remove\("([a-z_]+)"',
    r'else "([a-z_]+)"\)',
    r'ledger\.drop\([^)]*?f"([a-z_]+:)\{',
)


def _literal_codes() -> set[str]:
    codes = set()
    for path in (REPO / "pipelines").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in LITERAL_PATTERNS:
            codes.update(re.findall(pattern, text))
    return codes


def test_the_scan_finds_the_codes_it_should():
    codes = _literal_codes()
    assert {"malformed_xml", "too_short", "exact_duplicate", "digit_ratio", "superseded", "residual_phi:"} <= codes
    assert len(codes) >= 35


@pytest.mark.parametrize("code", sorted(_literal_codes() | CONSTANTS))
def test_every_reason_code_has_a_meaning(code):
    assert define(code), f"{code} is not in governance/report_content.yaml's glossary"


def test_families_and_unknown_codes():
    assert define("decontaminated:medqa") == glossary()["decontaminated:"]
    assert define("expect_table_row_count_to_be_between") == glossary()["expect_"]
    assert define("no_such_code") is None
