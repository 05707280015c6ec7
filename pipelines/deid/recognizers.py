"""Presidio recognizers built from deid.yaml: regex patterns with negative context, and the spaCy NER filter.

Presidio's own predefined recognizers are not used: EmailRecognizer/UrlRecognizer call tldextract, which
fetches the public-suffix list over the network, and the generic ones flag clinical abbreviations.  Each
recognizer here is small and testable alone (``recognizer.analyze(text, [label])``).
"""

from __future__ import annotations

from collections.abc import Callable

import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pipelines.deid.config import DeidConfig, PatternRule

# Look-behind/ahead windows for negative context words (characters).
NEGATIVE_BEFORE_CHARS = 25
NEGATIVE_AFTER_CHARS = 15
NEGATIVE_SENTENCE_CHARS = 30
# Where a sentence (or a list item of a note) ends, for ``negative_in_sentence_before``.
SENTENCE_END = regex.compile(r"\.\s|[\n;|]")


def _word_alternation(words: tuple[str, ...]) -> str:
    """Literal words; a trailing ``s?`` (``tabs?``) means an optional plural."""
    parts = [regex.escape(w[:-2]) + "s?" if w.endswith("s?") else regex.escape(w) for w in words]
    return "|".join(sorted(parts, key=len, reverse=True))


class ConfiguredPatternRecognizer(PatternRecognizer):
    """One deid.yaml pattern; drops matches whose surroundings say "this is a vital sign / score / dose"."""

    def __init__(self, rule: PatternRule) -> None:
        super().__init__(
            supported_entity=rule.label,
            name=f"pattern:{rule.name}",
            patterns=[Pattern(name=rule.name, regex=rule.regex, score=rule.score)],
            # Case sensitivity is decided per pattern with an inline (?i); MULTILINE for ^/$ in patterns.
            global_regex_flags=regex.MULTILINE,
        )
        self.rule = rule
        self._negative_before = (
            regex.compile(rf"(?i)(?<![a-z])(?:{_word_alternation(rule.negative_before)})[\s:#=.,(]*$")
            if rule.negative_before
            else None
        )
        # The words anywhere in the preceding ``NEGATIVE_SENTENCE_CHARS`` of the same sentence ("CPAP .4%, 5/10",
        # "PSV increased to 10/5": settings, with numbers between the mode and the fraction).
        self._negative_in_sentence = (
            regex.compile(rf"(?i)(?<![a-z])(?:{_word_alternation(rule.negative_in_sentence_before)})(?![a-z])")
            if rule.negative_in_sentence_before
            else None
        )
        self._negative_after = (
            # A period and a space end the sentence: what follows it says nothing of the match ("due 9/16. +").
            regex.compile(rf"(?i)^(?:[\s:#=,)]|\.(?!\s))*(?:{_word_alternation(rule.negative_after)})(?![a-z])")
            if rule.negative_after
            else None
        )

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex.MULTILINE)
        return [r for r in results if not self._negated(text, r.start, r.end)]

    def _negated(self, text: str, start: int, end: int) -> bool:
        if self._negative_before is not None:
            if self._negative_before.search(text[max(0, start - NEGATIVE_BEFORE_CHARS) : start]):
                return True
        if self._negative_in_sentence is not None:
            before = text[max(0, start - NEGATIVE_SENTENCE_CHARS) : start]
            sentence = SENTENCE_END.split(before)[-1]
            if self._negative_in_sentence.search(sentence):
                return True
        if self._negative_after is not None:
            if self._negative_after.search(text[end : end + NEGATIVE_AFTER_CHARS]):
                return True
        return False


# Punctuation glued to a word of an entity ("CLOSELY-", "(Echo") is not part of the word.
PUNCTUATION = "-.,;:()[]'\"/|"


class NerLocationRecognizer(EntityRecognizer):
    """spaCy GPE/LOC entities (already mapped to LOCATION by the NLP engine), minus clinical vocabulary and typing
    slips of ordinary words ("Contineue to monitor")."""

    def __init__(self, config: DeidConfig, english_words: frozenset[str], misspelled: Callable[[str], bool]) -> None:
        super().__init__(supported_entities=["LOCATION"], name="spacy-location", supported_language="en")
        self.config = config
        self.english = english_words
        self.misspelled = misspelled
        # Clinical words, and drugs and eponyms ("Kussmaul respirations"), are never places.
        self.clinical = config.never_flag | config.names.never_names

    def load(self) -> None:
        """Nothing to load: the NLP engine runs the model."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if nlp_artifacts is None:
            return []
        results = []
        for ent in nlp_artifacts.entities:
            if ent.label_ != "LOCATION":
                continue
            words = ent.text.strip()
            if words.lower() in self.clinical or len(words) < 3 or not words[0].isupper():
                continue
            if words.isupper():
                # In capitals the model has no case to go by, and calls abbreviations, verbs and device words
                # places ("CXR", "CONTINUE TO DIURESE", "NEW LEFT SUBCLAVIAN"); capitalised place names are
                # found by the gazetteer and place-context recognizers instead.
                continue
            bare = [w.strip(PUNCTUATION) for w in words.split() if w.strip(PUNCTUATION)]
            if all(self._no_place_word(w, words.isupper()) for w in bare):
                # Made of ordinary or clinical words, numbers and, in capitals, abbreviations only ("Echo EF",
                # "Plt 360", "MD PGY-3", "LS CLEAR"): not a place name.
                continue
            results.append(RecognizerResult("LOCATION", ent.start_char, ent.end_char, self.config.spacy_score))
        return results

    def _no_place_word(self, word: str, capitals: bool) -> bool:
        low = word.lower()
        abbreviation = capitals and len(word) <= 3
        known = low in self.english or low in self.clinical or self.misspelled(word)
        return known or abbreviation or any(c.isdigit() for c in word)


def pattern_recognizers(config: DeidConfig) -> list[ConfiguredPatternRecognizer]:
    return [ConfiguredPatternRecognizer(rule) for rule in config.patterns]
