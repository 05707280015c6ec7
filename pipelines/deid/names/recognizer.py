"""Person names in clinical text: evidence rules over spaCy tokens, then propagation within the document.

Stock NER misses a third of the names in clinical notes (ALL-CAPS nursing notes, "SMITH, JOHN", signature
lines, lower-case "pt john") and calls drugs and eponyms persons.  So a token becomes a name on explicit
evidence (title, credential, field label, relation word, gazetteer first+last pair, unambiguous gazetteer
name, spaCy PERSON); clinical vocabulary and eponyms ("Murphy's sign") veto; and a word confirmed once is
redacted at its every other occurrence in the same document, because notes repeat names in other forms.

The rule families live one per module; ``EVIDENCE_RULES`` and ``REFINING_RULES`` below are the order in which
they run, in one place.
"""

from __future__ import annotations

from collections.abc import Callable

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.tokens import Token

from pipelines.deid.names import context, gazetteer, sentences, spread, titles
from pipelines.deid.names.vocabulary import INITIAL, NameDoc, NameVocabulary

Rule = Callable[[NameVocabulary, NameDoc], None]

# Rules that find evidence for a token, each raising its level; their order does not change the result.
EVIDENCE_RULES: tuple[Rule, ...] = (
    titles.titles,
    titles.credentials,
    context.context_labels,
    gazetteer.gazetteer,
    gazetteer.ner,
    sentences.report_subjects,
    gazetteer.middle_initials,
    gazetteer.initial_surnames,
    gazetteer.unknown_pairs,
    sentences.possessive_kin,
    sentences.bracketed_relation,
    sentences.family_names,
    sentences.person_verbs,
    sentences.speakers,
    sentences.contact_subjects,
    sentences.signature,
)
# Rules over the evidence found so far, in this order: lists, vetoes, then growth and propagation.
REFINING_RULES: tuple[Rule, ...] = (
    spread.coordinations,
    spread.beside_titled_names,
    spread.eponyms,
    spread.extend_to_unknown_words,
    spread.double_barrelled,
    spread.initials_next_to_names,
    spread.propagate,
)


class NameRecognizer(EntityRecognizer):
    """Presidio recognizer for NAME; needs the spaCy tokens and entities from the NLP artifacts."""

    def __init__(self, vocabulary: NameVocabulary, score: float = 0.85) -> None:
        super().__init__(supported_entities=["NAME"], name="names", supported_language="en")
        self.vocabulary = vocabulary
        self.score = score
        self._initials = regex.compile(vocabulary.rules.initials_regex)

    def load(self) -> None:
        """Nothing to load: gazetteers come with the rules."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if nlp_artifacts is None or nlp_artifacts.tokens is None:
            return []
        doc = NameDoc.of(text, nlp_artifacts)
        for rule in EVIDENCE_RULES + REFINING_RULES:
            rule(self.vocabulary, doc)
        spans = merge(doc.toks, doc.evidence)
        for m in self._initials.finditer(text):
            spans.append((m.start(), m.end()))
        return [RecognizerResult("NAME", s, e, self.score) for s, e in spans]


def merge(toks: list[Token], evidence: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(toks):
        if not evidence[i]:
            i += 1
            continue
        start = toks[i].idx
        end = toks[i].idx + len(toks[i].text)
        j = i + 1
        while j < len(toks):
            gap_ok = toks[j - 1].whitespace_ in {"", " "}
            if evidence[j] and gap_ok:
                end = toks[j].idx + len(toks[j].text)
                j += 1
            elif toks[j].text in {".", "-", "'"} and gap_ok and j + 1 < len(toks) and evidence[j + 1]:
                j += 1
            elif toks[j].text == "." and INITIAL.match(toks[j - 1].text + ".") and evidence[j - 1]:
                end = toks[j].idx + 1
                j += 1
            else:
                break
        spans.append((start, end))
        i = j
    return spans
