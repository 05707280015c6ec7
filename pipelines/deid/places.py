"""Places from a gazetteer (places.yaml): countries and major cities, and the postal code written after them.

spaCy's NER finds places in prose but not in ALL-CAPS notes, address blocks or one-line messages ("I'm
originally from Iceland"), so known place names are matched directly.  Lookup is a dict from the first word
to the phrases it starts, so the cost is one dict probe per capitalized word whatever the gazetteer size.
"""

from __future__ import annotations

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pipelines.deid.config import PlaceRules

WORD = regex.compile(r"\p{L}[\p{L}'’.\-]*\p{L}|\p{L}")
# Lower-case words allowed inside a place name ("Rio de Janeiro", "United States of America").
CONNECTORS = frozenset("de du des la le of the es do da del di and au".split())
# Words after which an ambiguous place name ("Jordan", "Mobile") is a place.
PLACE_PREPOSITIONS = frozenset("in from to near of at visiting outside around born lives".split())
# A postal code right after a place ("Finland 38524", "ARENDAL 4844", "ÖVERTURINGEN 840 24").
POSTAL_AFTER = regex.compile(r"[ \t]*,?[ \t]*(\d{3} \d{2}|\d{4,5}(?:-\d{3,4})?)(?![\w\-/.])")


class PlaceRecognizer(EntityRecognizer):
    """LOCATION for gazetteer places written Capitalized or in CAPITALS; ZIP for a postal code after one."""

    def __init__(self, places: PlaceRules, score: float = 0.7, phrase_score: float = 0.9) -> None:
        super().__init__(supported_entities=["LOCATION", "ZIP"], name="places", supported_language="en")
        # A several-word place ("New York City") outranks a name reading of its words ("York").
        self.score = score
        self.phrase_score = phrase_score
        self.ambiguous = frozenset(p.lower() for p in places.ambiguous)
        index: dict[str, set[tuple[str, ...]]] = {}
        for place in places.countries | places.cities:
            words = tuple(w.lower() for w in WORD.findall(place))
            index.setdefault(words[0], set()).add(words)
        self.index = {k: sorted(v, key=len, reverse=True) for k, v in index.items()}

    def load(self) -> None:
        """Nothing to load: the gazetteer comes with the configuration."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        words = list(WORD.finditer(text))
        results = []
        i = 0
        while i < len(words):
            n = self._match(text, words, i)
            if not n:
                i += 1
                continue
            start, end = words[i].start(), words[i + n - 1].end()
            phrase = text[start:end].lower()
            previous = words[i - 1].group().lower() if i > 0 else ""
            if phrase not in self.ambiguous or previous in PLACE_PREPOSITIONS:
                score = self.phrase_score if n > 1 else self.score
                results.append(RecognizerResult("LOCATION", start, end, score))
                postal = POSTAL_AFTER.match(text, end)
                if postal:
                    results.append(RecognizerResult("ZIP", postal.start(1), postal.end(1), self.score))
            i += n
        return results

    def _match(self, text: str, words: list[regex.Match], i: int) -> int:
        """Number of words of the longest gazetteer place starting at word ``i`` (0 for none)."""
        first = words[i].group()
        if not first[0].isupper():
            return 0
        for phrase in self.index.get(first.lower(), ()):
            n = len(phrase)
            if i + n > len(words):
                continue
            span = words[i : i + n]
            if tuple(m.group().lower() for m in span) != phrase:
                continue
            gaps_ok = all(text[a.end() : b.start()] in {" ", "-"} for a, b in zip(span, span[1:], strict=False))
            cased = all(m.group()[0].isupper() or m.group() in CONNECTORS for m in span)
            if gaps_ok and cased:
                return n
        return 0
