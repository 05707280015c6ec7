"""Quality filters: repairs that change a document, and filters that drop it with a reason.

Every filter reads its thresholds for the document's source kind (``FilterThresholds``, defaults in
filters.yaml, overrides in the corpus spec), because clinical notes and journal articles fail in different
ways.  Repairs come first so the filters judge the repaired text:

1. ``MojibakeRepair``       ftfy fixes encoding damage ("Ã©" -> "é"); counted as ``mojibake_repaired``
2. ``BoilerplateStripper``  removes signature blocks, auto-text, notices (boilerplate.yaml); ``boilerplate_lines``
3. ``NearEmptyFilter``      ``near_empty_after_deid``: mostly [TAG] placeholders, or too few letters left
4. ``LengthFilter``         ``too_short`` / ``too_long``
5. ``CharacterRatioFilter`` ``symbol_ratio`` / ``digit_ratio`` / ``non_letter_ratio`` (of non-space characters)
6. ``RepeatedLinesFilter``  ``repeated_lines``: a document that is mostly the same lines over and over
7. ``LanguageFilter``       ``language_not_allowed``: py3langid (model shipped in the wheel, no download)
"""

from __future__ import annotations

import re
from typing import Any

import ftfy
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from pipelines.quality.curation_config import FilterThresholds, boilerplate_patterns
from pipelines.quality.steps import Doc, Ledger, Step

# What de-identification writes instead of PHI it could not replace with a surrogate: "[NAME]", "[PHONE]".
PLACEHOLDER = re.compile(r"\[[A-Z][A-Z_]*\]")
# Encoding repairs only: no HTML unescaping, quote uncurling or width folding, which would alter valid text.
FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    normalization=None,
    explain=False,
)


class _ByKind(Step):
    """A filter configured per source kind."""

    def __init__(self, thresholds: dict[str, FilterThresholds]) -> None:
        super().__init__()
        self.thresholds = thresholds

    def for_doc(self, doc: Doc) -> FilterThresholds:
        return self.thresholds[doc["source_kind"]]


class _Filter(_ByKind):
    """A filter: ``reason`` returns (code, detail) for a document to drop, None to keep it."""

    def reason(self, doc: Doc, limits: FilterThresholds) -> tuple[str, str] | None:
        raise NotImplementedError

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        kept = []
        for doc in docs:
            verdict = self.reason(doc, self.for_doc(doc))
            if verdict is None:
                kept.append(doc)
            else:
                ledger.drop(doc, self.name, *verdict)
        return kept


class MojibakeRepair(_ByKind):
    name = "mojibake_repair"

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        for doc in docs:
            if not self.for_doc(doc).repair_mojibake:
                continue
            fixed = ftfy.fix_text(doc["text"], FTFY_CONFIG)
            if fixed != doc["text"]:
                doc["text"] = fixed
                ledger.modify(doc, self.name, "mojibake_repaired")
        return docs


class BoilerplateStripper(_ByKind):
    name = "boilerplate"

    def __init__(self, thresholds: dict[str, FilterThresholds]) -> None:
        super().__init__(thresholds)
        self.pattern = re.compile("|".join(f"(?:{p})" for p in boilerplate_patterns()), re.IGNORECASE)

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        for doc in docs:
            if not self.for_doc(doc).strip_boilerplate:
                continue
            lines = doc["text"].splitlines()
            kept = [line for line in lines if not self.pattern.fullmatch(line.strip())]
            if len(kept) < len(lines):
                doc["text"] = "\n".join(kept).strip()
                self.facts["lines_removed"] += len(lines) - len(kept)
                ledger.modify(doc, self.name, "boilerplate_stripped")
        return docs

    def summary(self) -> dict[str, Any]:
        return {"lines_removed": self.facts["lines_removed"]}


class NearEmptyFilter(_Filter):
    name = "near_empty"

    def reason(self, doc: Doc, limits: FilterThresholds) -> tuple[str, str] | None:
        text = doc["text"]
        tagged = sum(len(m) for m in PLACEHOLDER.findall(text))
        letters = sum(map(str.isalpha, PLACEHOLDER.sub("", text)))
        if letters < limits.min_content_chars:
            return "near_empty_after_deid", f"{letters} letters outside placeholders"
        if text and tagged / len(text) > limits.max_placeholder_fraction:
            return "near_empty_after_deid", f"placeholders cover {tagged / len(text):.0%} of the text"
        return None


class LengthFilter(_Filter):
    name = "length"

    def reason(self, doc: Doc, limits: FilterThresholds) -> tuple[str, str] | None:
        n = len(doc["text"])
        if n < limits.min_chars:
            return "too_short", f"{n} chars < {limits.min_chars}"
        if n > limits.max_chars:
            return "too_long", f"{n} chars > {limits.max_chars}"
        return None


class CharacterRatioFilter(_Filter):
    name = "character_ratios"

    def reason(self, doc: Doc, limits: FilterThresholds) -> tuple[str, str] | None:
        # Counted with map over the text (each pass in C, not a Python loop per character); letters, digits and
        # alphanumerics are never whitespace, so their counts over the text are their counts over its non-space
        # characters.
        text = doc["text"]
        n = len(text) - sum(map(str.isspace, text))
        if not n:
            return None  # nothing to measure; the length filter decides
        ratios = (
            ("symbol_ratio", (n - sum(map(str.isalnum, text))) / n, limits.max_symbol_ratio),
            ("digit_ratio", sum(map(str.isdigit, text)) / n, limits.max_digit_ratio),
            ("non_letter_ratio", (n - sum(map(str.isalpha, text))) / n, limits.max_non_letter_ratio),
        )
        for code, value, limit in ratios:
            if value > limit:
                return code, f"{value:.2f} > {limit}"
        return None


class RepeatedLinesFilter(_Filter):
    name = "repeated_lines"

    def reason(self, doc: Doc, limits: FilterThresholds) -> tuple[str, str] | None:
        lines = [line.strip() for line in doc["text"].splitlines() if line.strip()]
        if len(lines) < 2:
            return None
        repeated = 1 - len(set(lines)) / len(lines)
        if repeated > limits.max_duplicate_line_fraction:
            return "repeated_lines", f"{repeated:.0%} of lines repeat"
        return None


class LanguageFilter(_Filter):
    """Drops a document only on a confident verdict for a language not allowed for its kind.

    The text is lower-cased first: ALL-CAPS nursing notes otherwise read as another language to the model.
    """

    name = "language"

    def __init__(self, thresholds: dict[str, FilterThresholds]) -> None:
        super().__init__(thresholds)
        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def reason(self, doc: Doc, limits: FilterThresholds) -> tuple[str, str] | None:
        text = doc["text"]
        if not limits.languages or len(text) < limits.min_language_chars:
            return None
        language, probability = self.identifier.classify(text.lower())
        if language not in limits.languages and probability >= limits.min_language_confidence:
            return "language_not_allowed", f"detected {language} ({probability:.2f})"
        return None


def filter_steps(thresholds: dict[str, FilterThresholds]) -> list[Step]:
    return [
        MojibakeRepair(thresholds),
        BoilerplateStripper(thresholds),
        NearEmptyFilter(thresholds),
        LengthFilter(thresholds),
        CharacterRatioFilter(thresholds),
        RepeatedLinesFilter(thresholds),
        LanguageFilter(thresholds),
    ]
