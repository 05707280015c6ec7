"""Person names in clinical text: evidence rules over spaCy tokens, then propagation within the document.

Stock NER misses a third of the names in clinical notes (ALL-CAPS nursing notes, "SMITH, JOHN", signature
lines, lower-case "pt john") and calls drugs and eponyms persons.  So a token becomes a name on explicit
evidence (title, credential, field label, relation word, gazetteer first+last pair, unambiguous gazetteer
name, spaCy PERSON); clinical vocabulary and eponyms ("Murphy's sign") veto; and a word confirmed once is
redacted at its every other occurrence in the same document, because notes repeat names in other forms.
"""

from __future__ import annotations

import bisect

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.tokens import Doc, Token

from pipelines.deid.config import NameRules

# Letters of any script: names in notes are often not English ("Šárka Ottová", "Nyström").
WORD = regex.compile(r"^\p{L}[\p{L}'’\-]*\p{L}$|^\p{Lu}$")
INITIAL = regex.compile(r"^\p{Lu}\.?$|^(?:\p{Lu}\.){2,3}$")
# A following noun that makes the name an eponym ("Murphy's sign", "Foley catheter", "Wells score").
EPONYM_NOUNS = frozenset(
    "sign signs disease syndrome fracture cyst palsy test maneuver manoeuvre criteria score scale "
    "classification catheter drain tube procedure operation esophagus ulcer node phenomenon triad reflex "
    "lymphoma sarcoma tumor tumour law rule formula position solution stain stockings bag valve mask "
    "ring repair incision approach protocol method equation's equation grade stage type shunt".split()
)

STRONG, CONTEXT, GAZETTEER, NER = 4, 3, 2, 1
RELATIONS = frozenset(
    "wife husband spouse partner son daughter mother father mom dad sister brother aunt uncle niece nephew "
    "cousin grandson granddaughter grandmother grandfather friend neighbor caregiver fiance fiancee kid".split()
)
ENGLISH_SUFFIXES = ("s", "es", "ed", "d", "ing", "ly", "er")
# Stem endings an inflection needs: "-es" follows a sibilant or "o" ("boxes", "heroes"), "-d" follows an "e"
# ("used"); without this "Torres" would be "torr" + "es" and "Todd" would be "tod" + "d".
SUFFIX_STEM_ENDINGS = {"es": ("s", "x", "z", "ch", "sh", "o"), "d": ("e",)}
# Words after "X's" that make X a person ("Asya's kid", "roberto's daughter").
KIN_AFTER_POSSESSIVE = frozenset("kid kids child children baby family boyfriend girlfriend".split())
POSSESSIVE = frozenset({"'s", "’s"})
CONJUNCTIONS = frozenset({"and", "&", "or"})
# Words after "Name," at the start of a line that make it an address to that person ("Danial, can I ...").
VOCATIVE_NEXT = frozenset("can could would will please i you we are do did have is thank thanks".split())
QUOTES = frozenset("\"“”„«'")
# Labels that open an identifier field in a patient banner line.
ID_LABELS = frozenset("mrn mr mr# dob d.o.b. acct account fin csn id ssn".split())
# Verbs whose subject in a note is a person ("yuki chen c/o ...", "Mr Adeyemi reports ...").
REPORT_VERB = regex.compile(
    r"(?i)(?<=\S[ \t]+)(?:c/o|complains|reports|states|denies|endorses|presents|presented|admits)\b"
)


class NameRecognizer(EntityRecognizer):
    """Presidio recognizer for NAME; needs the spaCy tokens and entities from the NLP artifacts."""

    def __init__(
        self,
        rules: NameRules,
        english_words: frozenset[str],
        noun_only: frozenset[str],
        clinical: frozenset[str],
        places: frozenset[str] = frozenset(),
        score: float = 0.85,
    ) -> None:
        super().__init__(supported_entities=["NAME"], name="names", supported_language="en")
        self.rules = rules
        self.english = english_words
        self.noun_only = noun_only
        self.clinical = clinical
        self.score = score
        self._initials = regex.compile(rules.initials_regex)
        # Context phrases by first word (longest first), so a token is compared only with phrases it can start.
        self._context: dict[str, list[tuple[str, ...]]] = {}
        for phrase in rules.context_before:
            words = tuple(phrase.split())
            self._context.setdefault(words[0], []).append(words)
        self.places = places
        self._strong_credentials = frozenset(
            c for c in rules.credentials if len(c.replace(".", "")) >= 3 or c in {"MD", "RN", "NP", "M.D."}
        )

    def load(self) -> None:
        """Nothing to load: gazetteers come with the rules."""

    # ---- token classification ----
    def _is_word(self, tok: Token) -> bool:
        return bool(WORD.match(tok.text)) or bool(INITIAL.match(tok.text))

    def _candidate(self, tok: Token, strong: bool = False) -> bool:
        low = tok.text.lower()
        return (
            self._is_word(tok)
            and low not in self.rules.stop_words
            and low not in self.rules.never_names
            and not self._drug(low)
            and tok.text not in self.rules.titles
            and (strong or low not in self.clinical)
        )

    def _drug(self, low: str) -> bool:
        """A generic drug name by its USAN stem ("tamsulosin", "apixaban"), unless it is a gazetteer name."""
        return len(low) >= 6 and low.endswith(self.rules.drug_stems) and not self._in_gazetteer(low)

    def _is_english(self, word: str) -> bool:
        """An ordinary word, also in inflected form ("visited", "brings") that the lemma index lacks."""
        low = word.lower()
        return low in self.english or any(stem in self.english for stem in english_stems(low))

    def _is_common(self, word: str) -> bool:
        """An ordinary word that is not only a noun: WordNet's noun-only words include surnames ("yamamoto")."""
        low = word.lower()

        def common(w: str) -> bool:
            return w in self.english and w not in self.noun_only

        return common(low) or any(common(stem) for stem in english_stems(low))

    def _name_like(self, tok: Token) -> bool:
        """A word that can be a name without any gazetteer: no ordinary English, clinical or place word."""
        low = tok.text.lower()
        return (
            self._candidate(tok)
            and len(low) >= 2
            and low not in self.places
            and (self._in_gazetteer(low) and not self._ambiguous(low) or not self._is_english(low))
        )

    @staticmethod
    def _title(tok: Token) -> bool:
        """Written Title-case ("Miklós", "McAllister"), not ALL CAPS."""
        return tok.text[:1].isupper() and not tok.text.isupper()

    def _in_gazetteer(self, text: str) -> bool:
        low = text.lower()
        return low in self.rules.first_names or low in self.rules.last_names

    def _ambiguous(self, text: str) -> bool:
        return text.lower() in self.rules.ambiguous_names or self._is_english(text)

    @staticmethod
    def _capitalized(tok: Token) -> bool:
        return tok.text[:1].isupper()

    # ---- main ----
    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if nlp_artifacts is None or nlp_artifacts.tokens is None:
            return []
        doc: Doc = nlp_artifacts.tokens
        toks = list(doc)
        n = len(toks)
        evidence = [0] * n
        caps_line = self._caps_lines(toks)

        def mark(i: int, level: int) -> None:
            evidence[i] = max(evidence[i], level)

        self._titles(toks, caps_line, mark)
        self._credentials(toks, mark)
        self._context_labels(toks, caps_line, mark)
        self._gazetteer(toks, caps_line, mark)
        self._ner(nlp_artifacts, doc, caps_line, mark)
        self._report_subjects(doc, toks, mark)
        self._middle_initials(toks, caps_line, mark)
        self._unknown_pairs(toks, caps_line, mark)
        self._possessive_kin(toks, mark)
        self._person_verbs(toks, mark)
        self._speakers(toks, mark)
        self._coordinations(toks, evidence)
        self._eponyms(toks, evidence)
        self._extend_to_unknown_words(toks, caps_line, evidence)
        self._initials_next_to_names(toks, evidence)
        self._propagate(toks, evidence)
        spans = self._merge(toks, evidence)
        for m in self._initials.finditer(text):
            spans.append((m.start(), m.end()))
        return [RecognizerResult("NAME", s, e, self.score) for s, e in spans]

    def _caps_lines(self, toks: list[Token]) -> list[bool]:
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
            if "\n" in tok.text or "\n" in tok.whitespace_:
                line.append(i)
                close()
                line = []
            else:
                line.append(i)
        close()
        return flags

    def _run_after(self, toks: list[Token], i: int, limit: int, need_capital: bool, strong: bool = False) -> list[int]:
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
            if not self._candidate(tok, strong) or (need_capital and not self._capitalized(tok)):
                break
            if tok.text in self.rules.credentials:
                break
            out.append(j)
            if "\n" in tok.whitespace_:
                break
            j += 1
        return out

    def _titles(self, toks: list[Token], caps_line: list[bool], mark) -> None:
        for i, tok in enumerate(toks):
            if tok.text not in self.rules.titles and tok.text + "." not in self.rules.titles:
                continue
            j = i + 1
            if j < len(toks) and toks[j].text == ".":
                j += 1
            j = self._name_on_next_line(toks, j)
            run = self._run_after(toks, j, 3, need_capital=False, strong=True)
            if run and not self._capitalized(toks[run[0]]) and self._ambiguous(toks[run[0]].text):
                continue
            for k, idx in enumerate(run):
                later = k > 0
                if later and (not self._capitalized(toks[idx]) or self._ambiguous(toks[idx].text)):
                    break
                if later and caps_line[idx] and not self._in_gazetteer(toks[idx].text):
                    break
                mark(idx, STRONG)

    def _name_on_next_line(self, toks: list[Token], j: int) -> int:
        """Where the name after a title starts when the line wraps right after the title ("Cardiology (Dr.\\nScott)"):
        the first word of the next line if it is capitalized, no clinical word and no header ("Dr.\\nPLAN:")."""
        if j >= len(toks) or not (toks[j].is_space and "\n" in toks[j].text):
            return j
        k = j + 1
        header = k + 1 < len(toks) and toks[k + 1].text == ":"
        if k < len(toks) and self._capitalized(toks[k]) and self._candidate(toks[k]) and not header:
            return k
        return j

    def _credentials(self, toks: list[Token], mark) -> None:
        for i, tok in enumerate(toks):
            if tok.text not in self.rules.credentials:
                continue
            j = i - 1
            comma = j >= 0 and toks[j].text == ","
            if comma:
                j -= 1
            weak = tok.text not in self._strong_credentials
            if not comma and weak:
                continue
            taken = 0
            while j >= 0 and taken < 4:
                prev = toks[j]
                if "\n" in prev.whitespace_ or prev.is_space:
                    break
                if prev.text == "." and j > 0 and INITIAL.match(toks[j - 1].text + "."):
                    j -= 1
                    continue
                if not self._candidate(prev) or not self._capitalized(prev):
                    break
                if prev.text in self.rules.credentials:
                    break
                if weak and not self._in_gazetteer(prev.text) and self._is_english(prev.text):
                    break  # "SKIN: INTACT, IV SITE": a two-letter credential is often a clinical abbreviation
                mark(j, STRONG)
                taken += 1
                j -= 1

    def _context_labels(self, toks: list[Token], caps_line: list[bool], mark) -> None:
        lows = [t.text.lower() for t in toks]
        for i in range(len(toks)):
            for phrase in self._context.get(lows[i], ()):
                k = len(phrase)
                if tuple(lows[i : i + k]) != phrase:
                    continue
                if i > 0 and toks[i - 1].text.lower() in {"no", "denies"}:
                    break
                j = i + k
                colon = j < len(toks) and toks[j].text in {":", "-", "=", "#"}
                if colon:
                    j += 1
                    while j < len(toks) and toks[j].is_space and "\n" not in toks[j].text:
                        j += 1  # "Name:    hyuuma t. maida": aligned form fields
                key = " ".join(phrase)
                weak = key in self.rules.weak_context and not colon
                relation = key in RELATIONS
                any_case = key in self.rules.any_case_context
                # After a relation word a lower-case word counts too when it is a known given name ("son mike").
                run = self._run_after(toks, j, 4, need_capital=weak and not relation and not any_case)
                if relation and weak:
                    run = self._relation_run(toks, run)
                # "LAST, FIRST" after a label ("PT YAMAMOTO, KAREN"): both words must look like names.
                end = run[-1] + 1 if run else j
                if run and end + 1 < len(toks) and toks[end].text == ",":
                    tail = self._run_after(toks, end + 1, 2, need_capital=weak)
                    if tail and (
                        colon
                        or self._id_label_follows(toks, tail[-1] + 1)
                        or self._surname_first(toks[run[-1]].text, toks[tail[0]].text)
                    ):
                        for idx in run + tail:
                            mark(idx, CONTEXT)
                        break
                if weak and not colon and not run and self._lone_lower_case_name(toks, j):
                    mark(j, CONTEXT)
                    break
                if key in self.rules.preposition_context and not colon and self._lone_ordinary_word(toks, run):
                    break
                for idx in run:
                    word = toks[idx].text
                    if any_case and not self._capitalized(toks[idx]):
                        if not self._name_like(toks[idx]):
                            break
                        mark(idx, CONTEXT)
                        continue
                    if weak and relation and not self._is_common(word) and word.lower() not in self.clinical:
                        mark(idx, CONTEXT)
                        continue
                    if weak and (self._ambiguous(word) or caps_line[idx]) and not self._in_gazetteer(word):
                        break
                    if weak and not self._in_gazetteer(word) and self._is_english(word):
                        break
                    if not colon and not self._in_gazetteer(word) and self._is_common(word):
                        break  # "PCP visit": an ordinary word (not only a noun, as surnames are) after a bare label
                    if weak and not caps_line[idx] and word[:2].isupper() and not self._in_gazetteer(word):
                        break  # "admitted with SBO", "gram stain with GPCs": an abbreviation in mixed-case text
                    if colon and not weak and self._ambiguous(word) and not self._in_gazetteer(word):
                        if not self._capitalized(toks[idx]):
                            break
                    mark(idx, CONTEXT)
                break

    def _lone_lower_case_name(self, toks: list[Token], j: int) -> bool:
        """After a weak person context, a lower-case word ("per keisha", "spoke with raj", "records faxed by
        noah"), which the capitalized run skips: notes drop capitals, so it is a name when it is in a name gazetteer
        and no ordinary English, clinical, drug or place word, nor an ambiguous name ("with walker", "by mouth")."""
        if j >= len(toks) or not toks[j].text.islower():
            return False
        low = toks[j].text
        return (
            len(low) >= 3
            and self._in_gazetteer(low)
            and self._candidate(toks[j])
            and not self._ambiguous(low)
            and low not in self.places
        )

    def _lone_ordinary_word(self, toks: list[Token], run: list[int]) -> bool:
        """After a bare preposition: the run is one ambiguous word ("with Walker", "TO CHAIR") that no initial or
        name follows ("with Walker Smith", "by Brad L Key" are persons)."""
        if not run or not self._ambiguous(toks[run[0]].text):
            return False
        if len(run) == 1:
            return True
        second = toks[run[1]].text
        return not (INITIAL.match(second) or self._in_gazetteer(second) and not self._ambiguous(second))

    def _gazetteer(self, toks: list[Token], caps_line: list[bool], mark) -> None:
        for i, tok in enumerate(toks):
            if not self._candidate(tok) or not self._capitalized(tok) or not self._in_gazetteer(tok.text):
                continue
            nxt = i + 1
            while nxt < len(toks) and toks[nxt].text == "," and "\n" not in toks[nxt].whitespace_:
                nxt += 1
            pair = (
                nxt < len(toks)
                and "\n" not in tok.whitespace_
                and self._candidate(toks[nxt])
                and self._capitalized(toks[nxt])
                and self._in_gazetteer(toks[nxt].text)
            )
            if pair:
                first_amb = self._ambiguous(tok.text)
                second_amb = self._ambiguous(toks[nxt].text)
                if caps_line[i] and (first_amb or second_amb):
                    continue
                if first_amb and second_amb:
                    continue
                mark(i, GAZETTEER)
                mark(nxt, GAZETTEER)
            elif not caps_line[i] and not self._ambiguous(tok.text) and not tok.text.isupper() and len(tok.text) >= 3:
                mark(i, GAZETTEER)
        self._lower_case_pairs(toks, mark)

    def _lower_case_pairs(self, toks: list[Token], mark) -> None:
        """ "john smith" in lower case: a given name then a surname, where the surname is a gazetteer name or
        no ordinary word ("karen yamamoto"), and not both are ordinary words ("will page")."""
        for i in range(len(toks) - 1):
            a, b = toks[i], toks[i + 1]
            if not (a.text.islower() and b.text.islower() and a.whitespace_ == " "):
                continue
            if not (self._candidate(a) and self._candidate(b)) or a.text not in self.rules.first_names:
                continue
            if self._eponym(toks, i):
                continue  # "wilson disease"
            if b.text in self.rules.first_names or b.text in self.rules.last_names:
                accept = not (self._ambiguous(a.text) and self._ambiguous(b.text))
            else:
                accept = not self._ambiguous(a.text) and len(b.text) >= 3 and not self._is_common(b.text)
            if accept:
                mark(i, GAZETTEER)
                mark(i + 1, GAZETTEER)

    def _report_subjects(self, doc: Doc, toks: list[Token], mark) -> None:
        """The one or two words before "c/o", "reports", "denies" ... are the person reporting: a name when
        they look like one ("S: yuki chen c/o abd pain"), whatever their case."""
        ends = None
        for m in REPORT_VERB.finditer(doc.text):
            if ends is None:
                ends = [t.idx + len(t.text) for t in toks]
            # The last two tokens that end before the verb (a bisect: walking the prefix is quadratic).
            last = bisect.bisect_right(ends, m.start())
            run = list(range(max(0, last - 2), last))
            while run and not self._candidate(toks[run[0]]):
                run = run[1:]
            if not run or any(not self._candidate(toks[k]) or "\n" in toks[k].whitespace_ for k in run[:-1]):
                continue
            words = [toks[k].text for k in run]
            if any(not self._in_gazetteer(w) and (self._is_common(w) or len(w) < 3) for w in words):
                continue
            known = any(self._in_gazetteer(w) and not self._ambiguous(w) for w in words)
            unknown_pair = len(words) == 2 and not any(self._in_gazetteer(w) or self._is_english(w) for w in words)
            if known or unknown_pair or self._census_pair([toks[k] for k in run]):
                for k in run:
                    mark(k, GAZETTEER)

    def _census_pair(self, pair: list[Token]) -> bool:
        """Before a reporting verb, a given name and a surname, one of them from the census lists and the other
        listed too or no ordinary word (nouns allowed: WordNet lists "wei"), are a person even when they are also
        words ("virginia ivanova", "randy lee", "dmitri hicks"); not when both are listed ambiguous names ("will
        rush", "mark page")."""
        if len(pair) != 2 or not all(self._candidate(t) for t in pair):
            return False
        first, last = (t.text.lower() for t in pair)
        given = first in self.rules.first_names
        surname = last in self.rules.last_names
        if not (given or surname) or first in self.rules.ambiguous_names and last in self.rules.ambiguous_names:
            return False
        return (given or not self._is_common(first)) and (surname or not self._is_common(last))

    def _middle_initials(self, toks: list[Token], caps_line: list[bool], mark) -> None:
        """First, middle initial, last: "Sari J. Paavolainen", "leidy t muris".  The initial between two name-like
        words in the same case is the evidence; ordinary words around it ("Vitamin D Deficiency") veto."""
        for i in range(len(toks) - 2):
            first, initial = toks[i], toks[i + 1]
            k = i + 2
            if toks[k].text == "." and toks[i + 1].whitespace_ == "":
                k += 1
            if k >= len(toks) or first.whitespace_ != " " or toks[k - 1].whitespace_ != " ":
                continue
            last = toks[k]
            letter = initial.text.rstrip(".")
            if len(letter) != 1 or not letter.isalpha() or caps_line[i]:
                continue
            title = self._title(first) and self._title(last) and letter.isupper()
            lower = first.text.islower() and last.text.islower() and letter.islower() and letter not in "aiqx"
            if (title or lower) and self._name_like(first) and self._name_like(last):
                for idx in range(i, k + 1):
                    mark(idx, CONTEXT)

    def _unknown_pairs(self, toks: list[Token], caps_line: list[bool], mark) -> None:
        """Two Title-case words side by side that are neither ordinary, clinical nor place words ("Miklós Hajdu",
        "Cleopatra Mordvinova"): a given name and surname.  Drug and organism names are kept out by the
        never-name list."""
        for i in range(len(toks) - 1):
            a, b = toks[i], toks[i + 1]
            if a.whitespace_ != " " or caps_line[i] or not (self._title(a) and self._title(b)):
                continue
            if len(a.text) < 3 or len(b.text) < 3 or not (self._name_like(a) and self._name_like(b)):
                continue
            mark(i, GAZETTEER)
            mark(i + 1, GAZETTEER)

    def _possessive_kin(self, toks: list[Token], mark) -> None:
        """ "Asya's kid", "roberto's daughter": the owner of a relation is a person."""
        for i in range(len(toks) - 2):
            if toks[i + 1].text.lower() not in POSSESSIVE:
                continue
            kin = toks[i + 2].text.lower()
            if (kin in RELATIONS or kin in KIN_AFTER_POSSESSIVE) and self._name_like(toks[i]):
                mark(i, CONTEXT)

    def _person_verbs(self, toks: list[Token], mark) -> None:
        """The Title-case name-like words right before a person verb ("Trivo lives on", "Tomomi Nishiyama lives
        at"), or right after "said" ("said Erle"), are a person."""
        for i, tok in enumerate(toks):
            if tok.text.lower() not in self.rules.person_verbs:
                continue
            j = i - 1
            while j >= 0 and i - j <= 2 and self._title(toks[j]) and self._name_like(toks[j]):
                if "\n" in toks[j].whitespace_ or len(toks[j].text) < 3:
                    break
                mark(j, CONTEXT)
                j -= 1
            nxt = i + 1
            if tok.text.lower() == "said" and nxt < len(toks) and self._title(toks[nxt]) and self._name_like(toks[nxt]):
                mark(nxt, CONTEXT)

    def _speakers(self, toks: list[Token], mark) -> None:
        """Transcripts and messages: a line that opens with a name-like word and a colon before a quotation
        ("Koppány: \"Who are you?\""); two or more lines opening "Word:" where one word is a given name
        ("Ella: ...", "Leverett: ..."); a line that opens with a name-like word, a comma and a request
        ("Danial, can I ...")."""
        speakers: list[int] = []
        for i in range(len(toks) - 2):
            line_start = i == 0 or "\n" in toks[i - 1].whitespace_ or "\n" in toks[i - 1].text
            if not line_start or not self._title(toks[i]) and not toks[i].text.islower():
                continue
            nxt = toks[i + 1].text
            if nxt == "," and toks[i + 2].text.lower() in VOCATIVE_NEXT and self._name_like(toks[i]):
                mark(i, CONTEXT)
            if nxt != ":" or not (self._name_like(toks[i]) or toks[i].text.lower() in self.rules.first_names):
                continue
            speakers.append(i)
            k = i + 2
            while k < len(toks) and toks[k].is_space and "\n" not in toks[k].text:
                k += 1
            if k < len(toks) and toks[k].text[:1] in QUOTES and self._name_like(toks[i]):
                mark(i, CONTEXT)
        given = [i for i in speakers if self._in_gazetteer(toks[i].text) and not self._ambiguous(toks[i].text)]
        if len(speakers) >= 2 and given:
            for i in speakers:
                mark(i, CONTEXT)

    def _coordinations(self, toks: list[Token], evidence: list[int]) -> None:
        """Single words joined by commas and "and"/"or": "Usamov and Bowers", "Morrison, Rogers and Torres",
        "silvana, adam, christopher and caleb".  A Title-case list where one item is a name makes the other
        name-like items names; a lower-case list of three or more is names when most items are given names."""
        i = 0
        while i < len(toks):
            following = toks[i + 1].text.lower() if i + 1 < len(toks) else ""
            items = self._coordination_at(toks, i) if following == "," or following in CONJUNCTIONS else []
            if not items:
                i += 1
                continue
            words = [toks[k] for k in items]
            if all(self._title(w) for w in words):
                ok = all(self._in_gazetteer(w.text) or self._name_like(w) for w in words)
                anchor = any(evidence[k] >= CONTEXT or self._in_gazetteer(toks[k].text) for k in items)
                unusual = any(self._name_like(w) for w in words)
                accept = ok and anchor and unusual
            elif all(w.text.islower() for w in words) and len(words) >= 3:
                given = sum(1 for w in words if w.text in self.rules.first_names)
                ok = all(w.text in self.rules.first_names or self._name_like(w) for w in words)
                accept = ok and given >= 2 and given * 2 >= len(words)
            else:
                accept = False
            if accept:
                for k in items:
                    evidence[k] = max(evidence[k], GAZETTEER)
            i = items[-1] + 1

    def _coordination_at(self, toks: list[Token], i: int) -> list[int]:
        """Token indexes of a list of single words starting at ``i`` that ends with a conjunction, else []."""
        if not self._candidate(toks[i]) or len(toks[i].text) < 2:
            return []
        items = [i]
        j = i + 1
        while j + 1 < len(toks):
            sep = toks[j].text.lower()
            if sep == "," and toks[j + 1].text.lower() in CONJUNCTIONS:
                j += 1
                sep = toks[j].text.lower()
            if sep not in CONJUNCTIONS and sep != ",":
                return []
            item = j + 1
            if not self._candidate(toks[item]) or "\n" in toks[j].whitespace_ or len(toks[item].text) < 2:
                return []
            items.append(item)
            after = toks[item + 1] if item + 1 < len(toks) else None
            if sep in CONJUNCTIONS:
                return [] if after is not None and self._title(after) and self._title(toks[item]) else items
            j = item + 1
        return []

    def _surname_first(self, last: str, first: str) -> bool:
        """ "LAST, FIRST" after a label: both gazetteer names or no ordinary words, at least one a known name,
        not both ambiguous ("STABLE, ALERT" is no name)."""
        words = (last, first)
        if any(w.lower() in self.clinical or (not self._in_gazetteer(w) and self._is_common(w)) for w in words):
            return False
        return any(self._in_gazetteer(w) for w in words) and not all(self._ambiguous(w) for w in words)

    @staticmethod
    def _id_label_follows(toks: list[Token], i: int) -> bool:
        """An identifier label right after "LAST, FIRST" on the same line ("PT LEE, RANDY  MRN 9196"): a patient
        banner, so the two words are the patient's name even when they are also ordinary words."""
        while i < len(toks) and toks[i].is_space and "\n" not in toks[i].text:
            i += 1
        if i >= len(toks) or "\n" in toks[i - 1].whitespace_ or "\n" in toks[i - 1].text:
            return False
        return toks[i].text.lower().rstrip(":#") in ID_LABELS

    def _relation_run(self, toks: list[Token], run: list[int]) -> list[int]:
        """After a relation word: capitalized words, or a lower-case known given name that is no ordinary word."""
        out = []
        for idx in run:
            word = toks[idx].text
            if not self._capitalized(toks[idx]) and (word not in self.rules.first_names or self._ambiguous(word)):
                break
            out.append(idx)
        return out

    def _ner(self, nlp_artifacts: NlpArtifacts, doc: Doc, caps_line: list[bool], mark) -> None:
        for ent in nlp_artifacts.entities:
            if ent.label_ != "NAME":
                continue
            if any(t.text.lower() in self.rules.never_names for t in doc[ent.start : ent.end]):
                continue  # "Proteus Difficile", "Charcot-Marie-Tooth": a pathogen or an eponym, with its other words
            idxs = [t.i for t in doc[ent.start : ent.end] if self._candidate(t) and self._capitalized(t)]
            if not idxs:
                continue
            if any(caps_line[i] for i in idxs) and not any(self._in_gazetteer(doc[i].text) for i in idxs):
                continue
            known = [i for i in idxs if self._in_gazetteer(doc[i].text) and not self._ambiguous(doc[i].text)]
            unknown = [i for i in idxs if not self._in_gazetteer(doc[i].text) and not self._is_english(doc[i].text)]
            header = ent.end < len(doc) and doc[ent.end].text == ":"
            if header or not (known or (unknown and len(doc[unknown[0]].text) >= 3)):
                continue
            for i in known + unknown:
                mark(i, NER)

    def _eponyms(self, toks: list[Token], evidence: list[int]) -> None:
        for i in range(len(toks)):
            if evidence[i] and evidence[i] < STRONG and self._eponym(toks, i):
                evidence[i] = 0

    @staticmethod
    def _eponym(toks: list[Token], i: int) -> bool:
        """Followed by an eponym noun, also from inside a hyphenated eponym ("Charcot-Marie-Tooth disease")."""
        j = i + 1
        while j + 1 < len(toks) and toks[j].text == "-" and not toks[j - 1].whitespace_ and not toks[j].whitespace_:
            j += 2
        if j < len(toks) and toks[j].text.lower() in {"'s", "'", "’s"}:
            j += 1
        return j < len(toks) and toks[j].text.lower() in EPONYM_NOUNS

    def _extend_to_unknown_words(self, toks: list[Token], caps_line: list[bool], evidence: list[int]) -> None:
        """A capitalized word right after a name that is no ordinary word is its surname ("Kimberly Yamamoto")."""
        for i in range(len(toks) - 1):
            nxt = toks[i + 1]
            if not evidence[i] or evidence[i + 1] or toks[i].whitespace_ != " ":
                continue
            if not self._candidate(nxt) or not self._capitalized(nxt) or len(nxt.text) < 3:
                continue
            if nxt.text in self.rules.credentials or self._is_english(nxt.text) or self._eponym(toks, i + 1):
                continue
            if not caps_line[i + 1] and nxt.text.isupper():
                continue
            evidence[i + 1] = evidence[i]

    def _initials_next_to_names(self, toks: list[Token], evidence: list[int]) -> None:
        for i, tok in enumerate(toks):
            if evidence[i] or not INITIAL.match(tok.text) or tok.text in self.rules.credentials:
                continue
            nxt = i + 1
            if nxt < len(toks) and toks[nxt].text == ".":
                nxt += 1
            before = i > 0 and evidence[i - 1] and "\n" not in toks[i - 1].whitespace_
            after = nxt < len(toks) and evidence[nxt] and "\n" not in tok.whitespace_
            if before or after:
                evidence[i] = CONTEXT

    def _propagate(self, toks: list[Token], evidence: list[int]) -> None:
        confirmed = {toks[i].text.lower() for i, e in enumerate(evidence) if e and len(toks[i].text) >= 3}
        confirmed -= self.rules.stop_words
        for i, tok in enumerate(toks):
            low = tok.text.lower()
            if evidence[i] or low not in confirmed or not self._is_word(tok):
                continue
            if not self._capitalized(tok) and (self._ambiguous(tok.text) or low in self.english):
                continue
            if low in self.rules.never_names or self._eponym(toks, i):
                continue
            evidence[i] = GAZETTEER

    @staticmethod
    def _merge(toks: list[Token], evidence: list[int]) -> list[tuple[int, int]]:
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
