"""Address blocks: a street line, then the unit / city / region / country / postal-code lines under it.

Letters, referrals and messages write addresses as blocks of short lines in many national formats
("583 Magrethevej 298 / Apt. 123 / Qasigiannguit / Greenland 07609").  A street line is a deid.yaml ADDRESS
pattern or a house number, street words and a number; the short capitalized lines right below it that hold
no ordinary English or clinical word are the rest of the address.
"""

from __future__ import annotations

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pipelines.deid.config import DeidConfig

# "20789 Allika 46", "3482 Via Franscini 71": a house number, one to three street words, a number.
NUMBER_STREET_NUMBER = regex.compile(
    r"(?<![\w.,/\-])(?P<street>\d{1,6}[ \t]+(?P<words>\p{Lu}[\p{L}'’\-]+(?:[ \t]+\p{L}[\p{L}'’\-]+){0,2})"
    r"[ \t]+\d{1,5}[a-zA-Z]?\b\.?)(?![ \t]*(?i:mg|mcg|g|ml|units?|%|/|mmhg|cm|mm|kg|l|x)\b)"
)
# One line below a street line: optional ", " / "> ", up to four words, an optional region code and postal
# code ("SAVONLINNA", ", SV", " Norway 34796", "Aalborg NO 9100", "Cyprus (Greek) 13429").
PLACE_LINE = regex.compile(
    r"[ \t>]*,?[ \t]*(?P<body>(?P<words>(?:\(?\p{L}[\p{L}'’.\-]*\)?(?:[ \t]+|(?=,)|$)){0,4})"
    r"(?:,?[ \t]*[A-Z]{2}\b)?[ \t]*(?:\d{3,6}(?:[ \-]\d{2,4})?|[A-Z0-9]{2,4} [A-Z0-9]{3})?)[ \t.?]*$"
)
LINE_WORD = regex.compile(r"\p{L}[\p{L}'’.\-]*")
MAX_BLOCK_LINES = 4


class AddressBlockRecognizer(EntityRecognizer):
    """ADDRESS for street lines and the place lines under them."""

    def __init__(self, config: DeidConfig, english: frozenset[str], score: float = 0.8) -> None:
        super().__init__(supported_entities=["ADDRESS"], name="address-blocks", supported_language="en")
        self.score = score
        self.street_patterns = [
            regex.compile(r.regex, regex.MULTILINE) for r in config.patterns if r.label == "ADDRESS"
        ]
        self.not_place = english | config.never_flag | config.names.never_names
        self.places = {p.lower() for p in config.places.countries | config.places.cities}

    def load(self) -> None:
        """Nothing to load: patterns come with the configuration."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        streets = [m.span("street") for m in NUMBER_STREET_NUMBER.finditer(text) if self._street_words(m["words"])]
        seeds = streets + [(m.start(), m.end()) for p in self.street_patterns for m in p.finditer(text)]
        results = [RecognizerResult("ADDRESS", s, e, self.score) for s, e in streets]
        done: set[int] = set()
        for _, end in sorted(seeds):
            line_end = text.find("\n", end)
            if line_end < 0 or line_end in done or text[end:line_end].strip(" \t,.?"):
                continue
            done.add(line_end)
            results.extend(self._block_lines(text, line_end))
        return results

    def _street_words(self, words: str) -> bool:
        """Street words are no clinical term and start with a word that is no ordinary English word."""
        parts = [w.lower() for w in words.split()]
        return parts[0] not in self.not_place and not any(w in self.not_place and len(w) > 3 for w in parts[1:])

    def _block_lines(self, text: str, newline: int) -> list[RecognizerResult]:
        out = []
        for _ in range(MAX_BLOCK_LINES):
            start = newline + 1
            newline = text.find("\n", start)
            line = text[start : newline if newline >= 0 else len(text)]
            m = PLACE_LINE.fullmatch(line)
            if not m or not m["body"].strip() or not self._place_words(m["words"]):
                break
            out.append(RecognizerResult("ADDRESS", start + m.start("body"), start + m.end("body"), self.score))
            if newline < 0:
                break
        return out

    def _place_words(self, words: str) -> bool:
        parts = [w.strip("().").lower() for w in LINE_WORD.findall(words)]
        return all(w in self.places or w not in self.not_place for w in parts if len(w) > 2)
