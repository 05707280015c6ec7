"""What a token is, for the name rules: an ordinary word, a clinical or drug word, a gazetteer name, ambiguous.

Every rule family asks the same questions of a token, so they are answered once here, from the word lists the
engine loads (names.yaml, the name gazetteers, the English and clinical vocabularies, the place gazetteer).
``NameDoc`` is the per-document state the rules share: the tokens, which lines are ALL CAPS (where
capitalization says nothing about names), and the evidence level found so far for each token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import regex
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.tokens import Doc, Token

from pipelines.deid.config import NameRules

# Letters of any script: names in notes are often not English ("Šárka Ottová", "Nyström").
WORD = regex.compile(r"^\p{L}[\p{L}'’\-]*\p{L}$|^\p{Lu}$")
INITIAL = regex.compile(r"^\p{Lu}\.?$|^(?:\p{Lu}\.){2,3}$")
# Evidence levels, strongest first: a title or credential, a context phrase, a gazetteer pattern, spaCy NER.
STRONG, CONTEXT, GAZETTEER, NER = 4, 3, 2, 1
ENGLISH_SUFFIXES = ("s", "es", "ed", "d", "ing", "ly", "er")
# Stem endings an inflection needs: "-es" follows a sibilant or "o" ("boxes", "heroes"), "-d" follows an "e"
# ("used"); without this "Torres" would be "torr" + "es" and "Todd" would be "tod" + "d".
SUFFIX_STEM_ENDINGS = {"es": ("s", "x", "z", "ch", "sh", "o"), "d": ("e",)}
POSSESSIVE = frozenset({"'s", "’s"})


@dataclass
class NameDoc:
    """One document under analysis: its tokens, ALL-CAPS line flags and the evidence level of every token."""

    text: str  # the analyzed text: ``doc.text`` would join the tokens again (a tenth of the rules' time)
    doc: Doc
    artifacts: NlpArtifacts
    toks: list[Token]
    caps_line: list[bool]
    evidence: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, text: str, artifacts: NlpArtifacts) -> NameDoc:
        toks = list(artifacts.tokens)
        return cls(text, artifacts.tokens, artifacts, toks, caps_lines(toks), [0] * len(toks))

    def mark(self, i: int, level: int) -> None:
        self.evidence[i] = max(self.evidence[i], level)


def caps_lines(toks: list[Token]) -> list[bool]:
    """Per token: is its line written in capitals (where capitalization says nothing about names)?"""
    flags = [False] * len(toks)
    line: list[int] = []

    def close() -> None:
        words = [toks[j] for j in line if toks[j].text.isalpha() and len(toks[j].text) > 1]
        upper = sum(1 for w in words if w.text.isupper())
        caps = len(words) >= 3 and upper / len(words) >= 0.7
        for j in line:
            flags[j] = caps

    for i, tok in enumerate(toks):
        line.append(i)
        if "\n" in tok.text or "\n" in tok.whitespace_:
            close()
            line = []
    close()
    return flags


class NameVocabulary:
    """The word lists behind the name rules and the token questions they answer."""

    def __init__(
        self,
        rules: NameRules,
        english_words: frozenset[str],
        noun_only: frozenset[str],
        clinical: frozenset[str],
        places: frozenset[str] = frozenset(),
        misspelled: Callable[[str], bool] = lambda word: False,
    ) -> None:
        self.rules = rules
        self.misspelled = misspelled
        self.english = english_words
        self.noun_only = noun_only
        self.clinical = clinical
        self.places = places
        # Context phrases by first word (longest first), so a token is compared only with phrases it can start.
        self.context: dict[str, list[tuple[str, ...]]] = {}
        for phrase in rules.context_before:
            words = tuple(phrase.split())
            self.context.setdefault(words[0], []).append(words)
        self.title_words = frozenset(t.lower().rstrip(".") for t in rules.titles)
        self.strong_credentials = frozenset(
            c for c in rules.credentials if len(c.replace(".", "")) >= 3 or c in {"MD", "RN", "NP", "M.D."}
        )
        self.strong_credentials_lower = frozenset(c.lower() for c in self.strong_credentials)

    def is_word(self, tok: Token) -> bool:
        return bool(WORD.match(tok.text)) or bool(INITIAL.match(tok.text))

    def candidate(self, tok: Token, strong: bool = False) -> bool:
        low = tok.text.lower()
        return (
            self.is_word(tok)
            and low not in self.rules.stop_words
            and (strong or low not in self.rules.never_names)
            and not self.drug(low)
            and tok.text not in self.rules.titles
            and (strong or low not in self.clinical)
        )

    def drug(self, low: str) -> bool:
        """A generic drug name by its USAN stem ("tamsulosin", "apixaban"), unless it is a gazetteer name."""
        return len(low) >= 6 and low.endswith(self.rules.drug_stems) and not self.in_gazetteer(low)

    def is_english(self, word: str) -> bool:
        """An ordinary word, also in inflected form ("visited", "brings") that the lemma index lacks."""
        low = word.lower()
        return low in self.english or any(stem in self.english for stem in english_stems(low))

    def run_together(self, word: str) -> bool:
        """Two ordinary words of four letters or more written as one ("Lungsounds", "Fingerstick", "Careview"):
        notes drop the space, and the model takes the unknown word for a surname."""
        low = word.lower()
        return any(low[:k] in self.english and self.is_english(low[k:]) for k in range(4, len(low) - 3))

    def is_common(self, word: str) -> bool:
        """An ordinary word that is not only a noun: WordNet's noun-only words include surnames ("yamamoto")."""
        low = word.lower()

        def common(w: str) -> bool:
            return w in self.english and w not in self.noun_only

        return common(low) or any(common(stem) for stem in english_stems(low))

    def name_like(self, tok: Token) -> bool:
        """A word that can be a name without any gazetteer: no ordinary English, clinical or place word, nor, in
        capitals or lower case, a slip of one ("ERYTHEMATUS"; a Title-case "Leverett" is a name, not "leveret")."""
        low = tok.text.lower()
        return (
            self.candidate(tok)
            and len(low) >= 2
            and low not in self.places
            and (self.in_gazetteer(low) and not self.ambiguous(low) or not self.is_english(low))
            and (self.title(tok) or not self.misspelled(low))
        )

    @staticmethod
    def title(tok: Token) -> bool:
        """Written Title-case ("Miklós", "McAllister"), not ALL CAPS."""
        return tok.text[:1].isupper() and not tok.text.isupper()

    def surname_after_given(self, word: str) -> bool:
        """A word of the surname gazetteer right after a marked given name: the family name, even when it is also
        an ordinary word ("Ines Burns", "dr nadia walker"); clinical words and function words stay out."""
        low = word.lower()
        return low in self.rules.last_names and low not in self.clinical and low not in self.rules.stop_words

    def in_gazetteer(self, text: str) -> bool:
        low = text.lower()
        return low in self.rules.first_names or low in self.rules.last_names

    def ambiguous(self, text: str) -> bool:
        return text.lower() in self.rules.ambiguous_names or self.is_english(text)

    @staticmethod
    def capitalized(tok: Token) -> bool:
        return tok.text[:1].isupper()

    def run_after(self, toks: list[Token], i: int, limit: int, need_capital: bool, strong: bool = False) -> list[int]:
        """Name-like tokens starting at ``i`` (stopping at a line break or non-name token)."""
        out: list[int] = []
        j = i
        while j < len(toks) and len(out) < limit:
            tok = toks[j]
            if tok.is_space or "\n" in tok.text:
                break
            if tok.text in {".", "-"} and out and INITIAL.match(toks[j - 1].text + tok.text):
                j += 1
                continue
            if not self.candidate(tok, strong) or (need_capital and not self.capitalized(tok)):
                break
            if tok.text in self.rules.credentials:
                break
            out.append(j)
            if "\n" in tok.whitespace_:
                break
            j += 1
        return out

    def eponym(self, toks: list[Token], i: int) -> bool:
        """Followed by an eponym noun, also from inside a hyphenated eponym ("Charcot-Marie-Tooth disease")."""
        j = i + 1
        while j + 1 < len(toks) and toks[j].text == "-" and not toks[j - 1].whitespace_ and not toks[j].whitespace_:
            j += 2
        if j < len(toks) and toks[j].text.lower() in {"'s", "'", "’s"}:
            j += 1
        return j < len(toks) and toks[j].text.lower() in self.rules.eponym_nouns


def english_stems(low: str) -> list[str]:
    """Stems of ``low`` under the English inflection suffixes (see ``SUFFIX_STEM_ENDINGS``); "-ed" and "-ing"
    also undo a doubled consonant or a dropped "e" ("submitting", "making")."""
    out = [low[:-3] + "y"] if low.endswith("ies") else []  # "technologies", "studies"
    for suffix in ENGLISH_SUFFIXES:
        stem = low[: -len(suffix)]
        if low.endswith(suffix) and stem and stem.endswith(SUFFIX_STEM_ENDINGS.get(suffix, ("",))):
            out.append(stem)
            if suffix in ("ed", "ing") and len(stem) > 2:
                out.append(stem + "e")
                if stem[-1] == stem[-2]:
                    out.append(stem[:-1])
    return out
