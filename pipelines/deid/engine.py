"""The text de-identification analyzer: Presidio configured offline with our recognizers and spaCy model.

``DeidEngine`` is built once per process (Ray worker) and then finds PHI spans in batches of texts with
spaCy's ``nlp.pipe``.  It never touches the network: the spaCy model is loaded by package name (Presidio's
auto-download is bypassed), and no predefined Presidio recognizer (tldextract) is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import spacy
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from spacy.tokens import Doc, Span

from pipelines.deid.addresses import AddressBlockRecognizer
from pipelines.deid.config import DeidConfig, default_config
from pipelines.deid.names import NameRecognizer, NameVocabulary
from pipelines.deid.places import PlaceContextRecognizer, PlaceRecognizer, repeat_places
from pipelines.deid.recognizers import PUNCTUATION, NerLocationRecognizer, pattern_recognizers
from pipelines.deid.spelling import Misspellings

# spaCy labels we never use; listing them keeps Presidio from warning about unmapped labels.
IGNORED_SPACY_LABELS = (
    "ORG NORP FAC PRODUCT EVENT WORK_OF_ART LAW LANGUAGE DATE TIME PERCENT MONEY QUANTITY ORDINAL CARDINAL"
).split()
# Labels whose words are spread to their other occurrences in the same text (see ``repeat_places``).
PLACE_LABELS = frozenset({"HOSPITAL", "LOCATION"})
TRIM_CHARS = " \t\r\n.,;:()[]{}\"'"
SENTENCE_ENDS = frozenset({".", "!", "?"})
# Share of capital letters from which a note counts as written in capitals (as ``caps_lines`` counts a line).
CAPS_NOTE = 0.7
# Parts of speech whose lemma index lists ordinary English words (nouns are left out: they include names).
ENGLISH_POS = ("adj", "adv", "verb")


@dataclass(frozen=True, order=True)
class PhiSpan:
    """A PHI span in the original text (character offsets), with our label and the winning score."""

    start: int
    end: int
    label: str
    score: float = 1.0


class OfflineSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine, but loading only the installed package and running only NER."""

    def __init__(self, model: str, disable: Sequence[str], ner_config: NerModelConfiguration) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": model}], ner_model_configuration=ner_config)
        self._disable = list(disable)

    def load(self) -> None:
        name = self.models[0]["model_name"]
        # Disabled (not excluded) so the lemmatizer's word lists stay available for english_words().
        nlp = spacy.load(name, disable=self._disable)
        _split_note_glue(nlp)
        self.nlp = {"en": nlp}

    def process_notes(
        self, texts: Sequence[str], batch_size: int, may_name: Callable[[str], bool]
    ) -> Iterator[tuple[str, NlpArtifacts]]:
        """(text, artifacts) in input order; the model's NER reads only the sentences whose entities could count.

        Every text is tokenized.  NER, two thirds of the engine's time, then runs on:
        * no note written in capitals: there the model has no case to go by, and what it calls persons and
          places are abbreviations, device words and typing slips far more often than names ("PICC LINE",
          "HEME NEG LIQ"); the names it would find have context or gazetteer evidence of their own;
        * only the sentences holding a capitalized word for which ``may_name`` is true, each with the sentence
          before and after it (``sentences_to_read``): the name and place rules drop every entity made only
          of ordinary and clinical words, so the model's verdict on the other sentences is never used.
        """
        nlp = self.nlp["en"]
        ner = nlp.get_pipe("ner")
        for i in range(0, len(texts), batch_size):
            chunk = texts[i : i + batch_size]
            docs = [nlp.make_doc(text) for text in chunk]
            pieces = [
                (doc, start, doc[start:end].as_doc())
                for text, doc in zip(chunk, docs, strict=True)
                if not written_in_capitals(text)
                for start, end in sentences_to_read(doc, may_name)
            ]
            found: dict[int, list[Span]] = {}
            for (doc, start, _), read in zip(pieces, ner.pipe(p[2] for p in pieces), strict=True):
                found.setdefault(id(doc), []).extend(
                    Span(doc, start + ent.start, start + ent.end, label=ent.label) for ent in read.ents
                )
            for text, doc in zip(chunk, docs, strict=True):
                doc.ents = found.get(id(doc), [])
                yield text, self._doc_to_nlp_artifact(doc, "en")

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        """Entities and the Doc only: lemmas, token offsets and keywords feed Presidio's context enhancer,
        which ``ContextFreeAnalyzerEngine`` skips (and the lemmatizer is off); building them per token cost
        about a tenth of the analysis time."""
        entities, scores = self._get_updated_entities(self._get_entities(doc), self._get_scores_for_entities(doc))
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=[],
            lemmas=[],
            nlp_engine=self,
            language=language,
            scores=scores,
        )


def sentences_to_read(doc: Doc, may_name: Callable[[str], bool]) -> list[tuple[int, int]]:
    """Token ranges of the runs of sentences (ended by . ! ? or a line break) holding a capitalized word for
    which ``may_name`` is true, each with the sentence before and after it as the model's context."""
    bounds: list[tuple[int, int, bool]] = []
    start, wanted = 0, False
    for tok in doc:
        wanted = wanted or (tok.text[:1].isupper() and may_name(tok.text))
        if tok.text in SENTENCE_ENDS or "\n" in tok.text or "\n" in tok.whitespace_ or tok.i == len(doc) - 1:
            bounds.append((start, tok.i + 1, wanted))
            start, wanted = tok.i + 1, False
    ranges: list[tuple[int, int]] = []
    for k, (_, _, wanted) in enumerate(bounds):
        if not wanted:
            continue
        first, last = bounds[max(0, k - 1)][0], bounds[min(len(bounds) - 1, k + 1)][1]
        if ranges and ranges[-1][1] >= first:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], last))
        else:
            ranges.append((first, last))
    return ranges


def written_in_capitals(text: str) -> bool:
    """At least ``CAPS_NOTE`` of the cased letters are capitals (an ALL-CAPS nursing note)."""
    upper = sum(map(str.isupper, text))
    lower = sum(map(str.islower, text))
    return upper > 0 and upper >= CAPS_NOTE * (upper + lower)


# Notes glue a dash to the word before it where prose has a space ("per dr. Kendrick- pt", "DAUGHTER-INES---555
# 0100"): spaCy's English tokenizer keeps "Kendrick-" and "INES---555" whole, so no word rule sees the name.  A
# dash ending a word, and a run of dashes between a word and a number, become tokens of their own.
NOTE_SUFFIXES = (r"(?<=[^\W\d_]{2})-",)
NOTE_INFIXES = (
    r"(?<=[^\W\d_]{2})-{2,}(?=\d)",
    # A period with no space after it between words ("seen.dr okafor", "Dr.Lee", "kowalski.l arm"): spaCy splits
    # only before a capital, so the title or name inside stays glued; initials ("p.o.", "e.g.") keep theirs.
    r"(?<=[^\W\d_]{2})\.(?=[^\W\d_]{2})",
    r"(?<=[^\W\d_]{3})\.(?=[^\W\d_])",
)


def _split_note_glue(nlp: spacy.language.Language) -> None:
    nlp.tokenizer.suffix_search = spacy.util.compile_suffix_regex([*nlp.Defaults.suffixes, *NOTE_SUFFIXES]).search
    nlp.tokenizer.infix_finditer = spacy.util.compile_infix_regex([*nlp.Defaults.infixes, *NOTE_INFIXES]).finditer


def _lemma_lookups(nlp: spacy.language.Language) -> Any | None:
    """The lemmatizer's lookup tables when the model ships a word index (the English word lists come from it)."""
    if "lemmatizer" not in nlp.component_names:
        return None
    lookups = nlp.get_pipe("lemmatizer").lookups
    return lookups if lookups.has_table("lemma_index") else None


def english_words(nlp: spacy.language.Language, names: frozenset[str]) -> frozenset[str]:
    """Ordinary English words from the model's lemmatizer tables and stop words, lower-case.

    Adjectives, adverbs and verbs as they are, with their irregular forms ("came", "brought", "been": the
    lemmatizer's exception tables); nouns, with their irregular plurals ("feet"), only when they are not also in
    the name gazetteers (the noun index holds "john" and "smith"); spaCy's stop words for the function words no
    index lists ("into", "during").
    """
    lookups = _lemma_lookups(nlp)
    if lookups is None:
        return frozenset()
    index = lookups.get_table("lemma_index")
    words: set[str] = {w for w in nlp.Defaults.stop_words if w.isalpha()}
    for pos in ENGLISH_POS:
        words.update(w.lower() for w in index.get(pos, ()) if w.isalpha())
        if lookups.has_table("lemma_exc"):
            words.update(w.lower() for w in lookups.get_table("lemma_exc").get(pos, {}) if w.isalpha())
    nouns = list(index.get("noun", ()))
    if lookups.has_table("lemma_exc"):
        nouns += lookups.get_table("lemma_exc").get("noun", {})  # irregular plurals: "feet", "teeth", "women"
    words.update(w.lower() for w in nouns if w.isalpha() and w.lower() not in names)
    return frozenset(words)


def noun_only_words(nlp: spacy.language.Language) -> frozenset[str]:
    """Words the lemmatizer knows only as nouns, lower-case.

    The noun index is WordNet's and holds proper nouns ("yamamoto", "waugh"), so a noun-only word is weak
    evidence against a name: name rules with strong positional evidence accept it as a surname.
    """
    lookups = _lemma_lookups(nlp)
    if lookups is None:
        return frozenset()
    index = lookups.get_table("lemma_index")
    other = {w.lower() for pos in ENGLISH_POS for w in index.get(pos, ())}
    if lookups.has_table("lemma_exc"):
        for table in lookups.get_table("lemma_exc").values():
            other.update(w.lower() for w in table)
            other.update(lemma.lower() for lemmas in table.values() for lemma in lemmas)
    return frozenset(w.lower() for w in index.get("noun", ()) if w.isalpha() and w.lower() not in other)


def place_words(config: DeidConfig) -> frozenset[str]:
    """One-word gazetteer places that are no given name too, lower-case: such a word alone is no name."""
    ambiguous = {p.lower() for p in config.places.ambiguous}
    return frozenset(p.lower() for p in config.places.countries | config.places.cities if " " not in p) - ambiguous


class ContextFreeAnalyzerEngine(AnalyzerEngine):
    """Presidio's analyzer without its context-word score boost.

    Our patterns carry their context in look-behinds and negative windows (deid.yaml), and the name rules
    read the tokens themselves; Presidio's per-recognizer, per-result context pass changes no score of ours
    and costs about a tenth of the analysis time.
    """

    def _enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
        return raw_results


class DeidEngine:
    """Find PHI spans.  ``analyze_batch`` is the fast path (nlp.pipe); ``analyze`` is for one text."""

    def __init__(self, config: DeidConfig | None = None) -> None:
        self.config = config or default_config()
        ner_config = NerModelConfiguration(
            model_to_presidio_entity_mapping=dict(self.config.entity_map),
            labels_to_ignore=IGNORED_SPACY_LABELS,
            default_score=self.config.spacy_score,
        )
        self.nlp_engine = OfflineSpacyNlpEngine(self.config.spacy_model, self.config.spacy_disable, ner_config)
        self.nlp_engine.load()
        names = self.config.names
        nlp = self.nlp_engine.get_nlp("en")
        english = english_words(nlp, names.first_names | names.last_names)
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in pattern_recognizers(self.config):
            registry.add_recognizer(recognizer)
        # Words that never name a place on their own: clinical, function and facility words.
        self.english = english
        self.clinical_words = (
            self.config.never_flag
            | names.never_names
            | names.stop_words
            | self.config.generic_facility_words
            | {w.lower().rstrip(".") for w in names.titles | self.config.strip_leading_words}
        )
        registry.add_recognizer(PlaceRecognizer(self.config.places, english | self.clinical_words))
        # Clinical shorthand, drugs and eponyms: a place match made only of these is none, whichever rule made it.
        self.never_place = self.config.never_flag | names.never_names
        gazetteer = names.first_names | names.last_names
        misspelled = Misspellings(english | self.config.never_flag | names.never_names, gazetteer)
        registry.add_recognizer(NerLocationRecognizer(self.config, english, misspelled))
        registry.add_recognizer(PlaceContextRecognizer(english, self.clinical_words, misspelled))
        noun_only = noun_only_words(nlp)
        registry.add_recognizer(AddressBlockRecognizer(self.config, english))
        registry.add_recognizer(
            NameRecognizer(
                NameVocabulary(names, english, noun_only, self.config.never_flag, place_words(self.config), misspelled)
            )
        )
        self.analyzer = ContextFreeAnalyzerEngine(
            registry=registry, nlp_engine=self.nlp_engine, supported_languages=["en"]
        )
        # Words the model's entities are dropped for when made only of them (see ``process_notes``).
        self._ordinary = english | self.config.never_flag | names.never_names
        self._gazetteer = gazetteer

    def may_name(self, word: str) -> bool:
        """Could this capitalized word make a model entity count: a listed name, or no ordinary or clinical word."""
        low = word.lower()
        return low not in self._ordinary or low in self._gazetteer

    def analyze(self, text: str) -> list[PhiSpan]:
        return self.analyze_batch([text])[0]

    def analyze_batch(self, texts: Sequence[str]) -> list[list[PhiSpan]]:
        """The spans of each text.  spaCy adds every new word it meets to its vocabulary and never forgets it: a
        long run of notes full of names, numbers and ids grew an actor by ~4 MB a thousand notes.  The memory
        zone forgets the words this batch added once the batch is done (only plain spans leave it), so an
        actor stays the same size however many notes it analyzes; the spans are the same."""
        out = []
        with self.nlp_engine.get_nlp("en").memory_zone():
            artifacts = self.nlp_engine.process_notes(texts, self.config.batch_size, self.may_name)
            for text, nlp_artifacts in artifacts:
                results = self.analyzer.analyze(
                    text=text,
                    language="en",
                    nlp_artifacts=nlp_artifacts,
                    score_threshold=self.config.score_threshold,
                )
                out.append(self._postprocess(text, results))
        return out

    # ---- post-processing: clean edges, drop generic matches, resolve overlaps ----
    def _postprocess(self, text: str, results: list[RecognizerResult]) -> list[PhiSpan]:
        spans = []
        for r in results:
            span = self._clean(text, PhiSpan(r.start, r.end, r.entity_type, r.score))
            if span is not None:
                spans.append(span)
        places = [(s.start, s.end) for s in spans if s.label in PLACE_LABELS]
        for start, end in repeat_places(text, places, self.clinical_words, self.english):
            spans.append(PhiSpan(start, end, "LOCATION", self.config.spacy_score))
        return merge_overlaps(spans)

    def _clean(self, text: str, span: PhiSpan) -> PhiSpan | None:
        start, end = span.start, span.end
        while start < end and text[start] in TRIM_CHARS and not (text[start] == "(" and ")" in text[start:end]):
            start += 1
        while end > start and text[end - 1] in TRIM_CHARS and not _keeps_final_period(text, start, end, span):
            end -= 1
        if span.label in {"HOSPITAL", "LOCATION"}:
            words = text[start:end].split(" ")
            while len(words) > 1 and words[0] in self.config.strip_leading_words:
                start += len(words[0]) + 1
                words = words[1:]
            if span.label == "HOSPITAL" and all(
                w.lower().strip(".,") in self.config.generic_facility_words for w in words
            ):
                return None
            while len(words) > 1 and words[-1].lower().strip(".,") in FACILITY_NOUNS:
                end = start + len(" ".join(words[:-1]))  # "Ormsby Hospital" -> "Ormsby": the noun is no PHI
                words = words[:-1]
            bare = [w.strip(PUNCTUATION).lower() for w in words if w.strip(PUNCTUATION)]
            if bare and all(w in self.never_place and len(w) > 2 for w in bare):
                # "RETURNED TO IMV", "transferred from OSH": clinical shorthand after a move word.  Two letters
                # are kept: a state code after a town ("Jackson, MI") is also a clinical abbreviation.
                return None
        if end <= start:
            return None
        return PhiSpan(start, end, span.label, span.score)


# The facility noun at the end of a hospital's name stays readable: only the name identifies.
FACILITY_NOUNS = frozenset({"hospital", "hosp", "clinic", "infirmary"})


def _keeps_final_period(text: str, start: int, end: int, span: PhiSpan) -> bool:
    """Keep the period of an abbreviation inside the span ("Dr." is not in a span, but "J." or "St." is)."""
    if text[end - 1] != ".":
        return False
    word = text[start : end - 1].split()[-1] if text[start : end - 1].split() else ""
    return span.label in {"NAME", "ADDRESS", "HOSPITAL"} and len(word) <= 3 and word[:1].isupper()


def merge_overlaps(spans: list[PhiSpan]) -> list[PhiSpan]:
    """Union overlapping spans; the merged span takes the label of its highest-scoring part.

    Coverage wins over label purity: dropping the weaker of two overlapping matches could leave PHI characters
    unredacted, while a slightly wrong label only changes a tag.
    """
    merged: list[PhiSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            best = last if last.score >= span.score else span
            merged[-1] = PhiSpan(last.start, max(last.end, span.end), best.label, max(last.score, span.score))
        else:
            merged.append(span)
    return merged
