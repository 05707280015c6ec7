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
from pipelines.deid.names import english_stems

# "20789 Allika 46", "3482 Via Franscini 71", "808 Kálmán Imre u. 12": a house number (a building number may
# come first), one to three street words, a number; not a dose or a duration ("10 POUNDS FOR 4 WEEKS"), nor
# a lab value ("BUN 41 CREAT 2.7": a house number has no decimals).
NUMBER_STREET_NUMBER = regex.compile(
    r"(?<![\w.,/\-])(?P<street>\d{1,6}[ \t]+(?:\d{1,6}[ \t]+)?"
    r"(?P<words>\p{Lu}[\p{L}'’\-]+(?:[ \t]+(?:\p{L}[\p{L}'’\-]+|\p{Ll}{1,3}\.)){0,2})"
    r"[ \t]+\d{1,5}[a-zA-Z]?\b\.?)(?![.,]?\d)"
    r"(?![ \t]*(?i:mg|mcg|g|ml|units?|%|/|mmhg|cm|mm|kg|lbs?|l|x|times|doses?|tabs?|puffs?|drops?|"
    r"minutes?|min|hours?|hrs?|h|days?|d|weeks?|wks?|months?|mos?|years?|yrs?)\b)"
)
# One line below a street line: optional ", " / "> ", up to four words, an optional region code and postal
# code ("SAVONLINNA", ", SV", " Norway 34796", "Aalborg NO 9100", "Cyprus (Greek) 13429").
PLACE_LINE = regex.compile(
    r"[ \t>?*•·|]*,?[ \t]*(?P<body>(?P<words>(?:\(?\p{L}[\p{L}'’.\-]*\)?(?:[ \t]+|(?=,)|$)){0,4})"
    r"(?:,?[ \t]*[A-Z]{2}\b)?[ \t]*(?:\d{3,6}(?:[ \-]\d{2,4})?|[A-Z0-9]{2,4} [A-Z0-9]{3})?)[ \t.?]*$"
)
LINE_WORD = regex.compile(r"\p{L}[\p{L}'’.\-]*")
# The town after a street on the same line: ", Goiânia", ", Turkovice u Prelouce", ", SEINÄJOKI".
TOWN_AFTER_STREET = regex.compile(
    r",[ \t]*(?P<town>\p{Lu}[\p{L}'’\-]*(?:[ \t]+(?:\p{Lu}[\p{L}'’\-]*|[a-z]{1,3}|\(\p{Lu}\p{L}+\))){0,3})"
    r"(?=[ \t]*(?:[,.;!?)]|$))",
    regex.MULTILINE,
)
# A line that is only a country, with an optional postal code ("Austria", " New Zealand 15896").
COUNTRY_LINE = regex.compile(
    r"^[ \t>?*•·|]*(?P<country>\p{Lu}[\p{L}.'’\-]*(?:[ \t]+\p{Lu}[\p{L}.'’\-]*){0,3})(?:[ \t]+\d{3,6})?[ \t]*$",
    regex.MULTILINE,
)
# A town written in capitals after a place preposition, in mixed-case text ("in ÅLESUND, which").
CAPS_TOWN = regex.compile(r"(?<=\b(?:in|from|near|to|of)[ \t]+)\p{Lu}{4,}(?:[ \-]\p{Lu}{3,})?\b(?![ \t]*\p{Lu}{2})")
# A town and its postal code after a preposition ("in Acquapendente 1021", "in ÖVERTURINGEN 840 24").
TOWN_POSTAL = regex.compile(
    r"(?<=\b(?i:in|at|to|from|near)[ \t]+)(?P<town>\p{L}[\p{L}'’\-]*(?:[ \t]+\p{L}[\p{L}'’\-]*){0,3})"
    r"[ \t]+(?P<code>\d{4,5}(?:-\d{3,4})?|\d{3} \d{2})(?![\w\-/:.,]\d|[\w\-/:])"
)
MAX_BLOCK_LINES = 4


class AddressBlockRecognizer(EntityRecognizer):
    """ADDRESS for street lines and the place lines under them."""

    def __init__(self, config: DeidConfig, english: frozenset[str], score: float = 0.8) -> None:
        super().__init__(supported_entities=["ADDRESS"], name="address-blocks", supported_language="en")
        self.score = score
        self.street_patterns = [
            regex.compile(r.regex, regex.MULTILINE) for r in config.patterns if r.label == "ADDRESS"
        ]
        # Function words ("88 TO 92", "30 WITH PH") are in no lemma index: the name rules' stop words hold them.
        self.not_place = english | config.never_flag | config.names.never_names | config.names.stop_words
        self.clinical = config.never_flag | config.names.never_names
        self.places = {p.lower() for p in config.places.countries | config.places.cities}
        self.countries = {p.lower() for p in config.places.countries}

    def load(self) -> None:
        """Nothing to load: patterns come with the configuration."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        streets = [m.span("street") for m in NUMBER_STREET_NUMBER.finditer(text) if self._street_words(m["words"])]
        seeds = streets + [(m.start(), m.end()) for p in self.street_patterns for m in p.finditer(text)]
        results = [RecognizerResult("ADDRESS", s, e, self.score) for s, e in streets]
        results.extend(self._towns_with_postal_codes(text))
        results.extend(self._towns_in_capitals(text))
        results.extend(self._towns_above_countries(text))
        done: set[int] = set()
        for _, end in sorted(seeds):
            town = TOWN_AFTER_STREET.match(text, end)
            if town and self._place_words(town["town"]):
                results.append(RecognizerResult("LOCATION", town.start("town"), town.end("town"), self.score))
                end = town.end()
            line_end = text.find("\n", end)
            if line_end < 0 or line_end in done or text[end:line_end].strip(" \t,.?"):
                continue
            done.add(line_end)
            results.extend(self._block_lines(text, line_end))
        return results

    def _towns_with_postal_codes(self, text: str) -> list[RecognizerResult]:
        """ "in Acquapendente 1021", "in barra de carrasco 15000": a town and the postal code after it, where the
        town's words are known places or no ordinary English or clinical word (short connectors allowed)."""
        out = []
        for m in TOWN_POSTAL.finditer(text, overlapped=True):
            words = [w.lower() for w in LINE_WORD.findall(m["town"])]
            named = [w for w in words if w in self.places or (w not in self.not_place and len(w) > 3)]
            if named and all(w in self.places or w not in self.not_place or len(w) <= 3 for w in words):
                out.append(RecognizerResult("LOCATION", m.start("town"), m.end("town"), self.score))
                out.append(RecognizerResult("ZIP", m.start("code"), m.end("code"), self.score))
        return out

    def _towns_above_countries(self, text: str) -> list[RecognizerResult]:
        """The line above a country line ("EBEN\\nAustria", "Seatoun\\nNew Zealand 15896") is the town of an
        address block, also when no street line was recognized above it."""
        out = []
        for m in COUNTRY_LINE.finditer(text):
            if m["country"].lower() not in self.countries or m.start() == 0:
                continue
            above_end = m.start() - 1
            above_start = text.rfind("\n", 0, above_end) + 1
            line = PLACE_LINE.fullmatch(text, above_start, above_end)
            if line and line["body"].strip() and self._town_words(line["words"]):
                out.append(RecognizerResult("ADDRESS", line.start("body"), line.end("body"), self.score))
        return out

    def _towns_in_capitals(self, text: str) -> list[RecognizerResult]:
        """ "in ÅLESUND", "based in GUÉRET": a word in capitals after a place preposition that is no ordinary
        English or clinical word (ALL-CAPS clinical units and abbreviations are in the never-flag list)."""
        out = []
        for m in CAPS_TOWN.finditer(text):
            words = [w.lower() for w in m.group().replace("-", " ").split()]
            if all(w in self.places or w not in self.not_place for w in words):
                out.append(RecognizerResult("LOCATION", m.start(), m.end(), self.score))
        return out

    def _street_words(self, words: str) -> bool:
        """Street words are no clinical term and start with a word that is no ordinary English word."""
        parts = [w.lower() for w in words.split()]
        return not self._ordinary(parts[0]) and not any(self._ordinary(w) and len(w) > 3 for w in parts[1:])

    def _ordinary(self, word: str) -> bool:
        """An English or clinical word, also inflected ("POUNDS", "days")."""
        return word in self.not_place or any(stem in self.not_place for stem in english_stems(word))

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

    def _town_words(self, words: str) -> bool:
        """Above a country line a capitalized line that holds no clinical word is the town, even when the
        lemma index knows the name (WordNet lists "Charleroi")."""
        found = LINE_WORD.findall(words)
        return bool(found) and all(w[0].isupper() and w.lower() not in self.clinical for w in found if len(w) > 2)

    def _place_words(self, words: str) -> bool:
        """Place-name words: no clinical word, and a known place, a word that is no ordinary English word, or
        a line in capitals ("Port Whangarei", "DOLE")."""
        found = LINE_WORD.findall(words)
        parts = [w.strip("().").lower() for w in found]
        # Only a capitalized word can be a clinical term here: lower-case ones are connectors ("Ostrov nad Ohrí").
        if any(
            p in self.clinical and p not in self.places for p, w in zip(parts, found, strict=True) if w[0].isupper()
        ):
            return False
        long_parts = [w for w in parts if len(w) > 2]
        if not long_parts:
            return True
        caps = all(w.isupper() for w in found if len(w) > 2)
        return caps or any(w in self.places or w not in self.not_place for w in long_parts)
