"""Places from a gazetteer (places.yaml): countries and major cities, and the postal code written after them;
US towns (places_us_towns.csv) only after a place preposition or right before a state written out, and when
they are no ordinary or clinical word.

spaCy's NER finds places in prose but not in ALL-CAPS notes, address blocks or one-line messages ("I'm
originally from Iceland"), so known place names are matched directly.  Lookup is a dict from the first word
to the phrases it starts, so the cost is one dict probe per capitalized word whatever the gazetteer size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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

    def __init__(
        self,
        places: PlaceRules,
        not_towns: frozenset[str] = frozenset(),
        score: float = 0.7,
        phrase_score: float = 0.9,
    ) -> None:
        super().__init__(supported_entities=["LOCATION", "ZIP"], name="places", supported_language="en")
        # A several-word place ("New York City") outranks a name reading of its words ("York").
        self.score = score
        self.phrase_score = phrase_score
        self.ambiguous = frozenset(p.lower() for p in places.ambiguous)
        self.index = _phrase_index(places.countries | places.cities)
        # Ordinary, clinical and function words that are also towns ("Hope", "Normal", "Mercy"): never a town.
        self.towns = _phrase_index(t for t in places.towns if t not in not_towns)
        # A state written out after a town, in any case: "yakima washington", "Yakima, WASHINGTON".
        states = "(?i:" + "|".join(places.states) + r")\b"
        self.state_after = regex.compile(r"[ \t]*,?[ \t]*" + states)
        self.state_names = tuple(state.lower() for state in places.states)

    def load(self) -> None:
        """Nothing to load: the gazetteer comes with the configuration."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        words = list(WORD.finditer(text))
        lower = text.lower()
        any_state = any(state in lower for state in self.state_names)  # a substring test: cheaper than a regex
        results = []
        i = 0
        while i < len(words):
            previous = words[i - 1].group().lower() if i > 0 else ""
            n = self._match(text, words, i, self.index)
            town = (
                not n
                and (any_state or previous in PLACE_PREPOSITIONS)
                and (n := self._town(text, words, i, previous, any_state)) > 0
            )
            if not n:
                i += 1
                continue
            start, end = words[i].start(), words[i + n - 1].end()
            phrase = text[start:end].lower()
            if town or phrase not in self.ambiguous or previous in PLACE_PREPOSITIONS:
                score = self.phrase_score if n > 1 else self.score
                results.append(RecognizerResult("LOCATION", start, end, score))
                postal = POSTAL_AFTER.match(text, end)
                if postal:
                    results.append(RecognizerResult("ZIP", postal.start(1), postal.end(1), self.score))
            i += n
        return results

    def _town(self, text: str, words: list[regex.Match], i: int, previous: str, any_state: bool) -> int:
        """Number of words of a US town starting at word ``i``: capitalized after a place preposition, or in any
        case right before a state written out (the state is the evidence the capital would have been; most
        texts name no state, so ``any_state`` spares them the lookup)."""
        if previous in PLACE_PREPOSITIONS and (n := self._match(text, words, i, self.towns)):
            return n
        if not any_state:
            return 0
        n = self._match(text, words, i, self.towns, any_case=True)
        return n if n and self.state_after.match(text, words[i + n - 1].end()) else 0

    @staticmethod
    def _match(
        text: str, words: list[regex.Match], i: int, index: dict[str, list[tuple[str, ...]]], any_case: bool = False
    ) -> int:
        """Number of words of the longest place of ``index`` starting at word ``i`` (0 for none); unless
        ``any_case``, only a place written Capitalized or in CAPITALS."""
        first = words[i].group()
        if not any_case and not first[0].isupper():
            return 0
        for phrase in index.get(first.lower(), ()):
            n = len(phrase)
            if i + n > len(words):
                continue
            span = words[i : i + n]
            if tuple(m.group().lower() for m in span) != phrase:
                continue
            gaps_ok = all(text[a.end() : b.start()] in {" ", "-"} for a, b in zip(span, span[1:], strict=False))
            cased = any_case or all(m.group()[0].isupper() or m.group() in CONNECTORS for m in span)
            if gaps_ok and cased:
                return n
        return 0


def _phrase_index(places: Iterable[str]) -> dict[str, list[tuple[str, ...]]]:
    """Places by their first word (lower case), longest first: one dict probe per capitalized word."""
    index: dict[str, set[tuple[str, ...]]] = {}
    for place in places:
        words = tuple(w.lower() for w in WORD.findall(place))
        index.setdefault(words[0], set()).add(words)
    return {k: sorted(v, key=len, reverse=True) for k, v in index.items()}


# A move between care sites: the place named after it is a hospital, a town or a unit ("transferred to SVH",
# "sent from ASHFORD", "lives in hollowell"); also a home or a workplace.  Words after it are looked at one by one
# (see ``PlaceContextRecognizer``).
MOVE_CONTEXT = regex.compile(
    r"(?i)\b(?:(?:transferred|transfered|transfer|trans|tx|txd|sent|admitted|admit|adm|referred|brought|arrived|"
    r"presented|presenting|medflighted|medflight|flown|went|go|going|returned|discharged|followed|came|coming|"
    r"taken|arrival|accepted|screened|seen|evaluated|w/u)[ \t]+"
    r"(?:(?:back|over|here|directly|emergently|urgently|back)[ \t]+)?(?:to|into|from|at|in|by)"
    r"|(?:lives|lived|living|resides|resided|residing|home)(?:[ \t]+(?:alone|nearby|locally))?[ \t]+(?:in|at|near)"
    # An employer: identifies the patient's or a relative's workplace ("works at Rayco", "RETIRED FROM ACME").
    r"|(?:works|worked|working|employed|retired|job)[ \t]+(?:at|for|by|from|with)"
    r"|(?:ceo|president|owner|employee|founder|director|vp)[ \t]+(?:of|at|for)"
    # Clinicians or a crew from another site ("surgeon from Lakeview", "EMS FROM ASHFORD").
    r"|(?:surgeon|surgeons|doctor|doctors|physician|physicians|team|nurse|nurses|fellow|attending|staff|ems|"
    r"ambulance|crew|consultant|cardiologist|oncologist|rep|representative|liaison|coordinator)[ \t]+from"
    # A ward named by a word and its number, right after "transfer", "to" or "from" ("TRANSFER ASHWORTH 4", "from
    # okonjo 5."): the number ends the clause, so a dose or a value ("to coumadin 5 mg", "to 40%") is none.
    r"|(?:transfer|transferred|transfered|tx)(?=[ \t]+\p{L}+[ \t]+\d{1,2}\b)"
    r"|(?:to|from)(?=[ \t]+\p{L}{4,}[ \t]+\d{1,2}"
    r"(?:[ \t]*(?:[.;)](?!\d)|\r?\n|$)|[ \t]+(?:this|today|tonight|tomorrow)\b)))"
    r"[ \t]+(?:the[ \t]+)?"
)
PLACE_WORD = regex.compile(r"\p{L}[\p{L}'’\-]*")
# A hospital by its capitals where no move verb names it: after "at" or an arrow ("seen at BMH", "-> NWH"),
# an acronym that ends as hospital names do (H, HC, MC), after "at" also in lower case ("seen at bmh"); before an
# emergency ward ("to SVH EW", "PMC ER").
HOSPITAL_ACRONYM = regex.compile(
    r"\b(?i:at)[ \t]+\K(?:[A-Z]{1,4}(?:H|HC|MC)|[a-z]{1,3}(?:h|hc|mc))\b(?![ \t]*\d)"
    r"|->[ \t]*\K[A-Z]{1,4}(?:H|HC|MC)\b(?![ \t]*\d)"
    r"|\b[A-Z]{2,5}(?=[ \t]+(?:EW|ER|ED)\b)"
)
# The words a place is spread by: letters only, so "Ashford-Kimble" spreads to "Kimble" alone too.
SPREAD_WORD = regex.compile(r"\p{L}+")


class PlaceContextRecognizer(EntityRecognizer):
    """LOCATION for the place after a move or a home phrase.  In any case, a word that is no ordinary English,
    clinical, unit or function word: an abbreviation ("transferred to SVH"), a unit named after a place ("sent to
    BLAKEMORE 4"), a town ("lives in hollowell").  In mixed-case text, Title-case words that are no clinical
    or function word, ordinary English or not ("transferred from Good Shepherd", "went to Seaview").  Clinical
    units ("to CCU", "from OR", "to cath lab") are in the clinical words.  A hospital acronym needs no move verb
    where its shape or the ward after it says what it is (``HOSPITAL_ACRONYM``)."""

    def __init__(
        self,
        english: frozenset[str],
        clinical: frozenset[str],
        misspelled: Callable[[str], bool],
        score: float = 0.7,
    ) -> None:
        super().__init__(supported_entities=["LOCATION"], name="place-context", supported_language="en")
        self.english = english
        self.clinical = clinical
        self.misspelled = misspelled
        self.score = score

    def load(self) -> None:
        """Nothing to load: the word lists come with the configuration."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for m in MOVE_CONTEXT.finditer(text):
            word = PLACE_WORD.match(text, m.end())
            if word is None or len(word.group()) < 2 or word.group().lower() in self.clinical:
                continue
            if self.misspelled(word.group()):
                continue  # "to ambulence", "from Extremitees": a slip of an ordinary word
            if word.group().lower() not in self.english:
                results.append(RecognizerResult("LOCATION", word.start(), word.end(), self.score))
            elif _title(word.group()):
                end = word.end()
                for _ in range(2):
                    nxt = PLACE_WORD.match(text, end + 1) if text[end : end + 1] == " " else None
                    if nxt is None or not _title(nxt.group()) or nxt.group().lower() in self.clinical:
                        break
                    end = nxt.end()
                results.append(RecognizerResult("LOCATION", word.start(), end, self.score))
        for m in HOSPITAL_ACRONYM.finditer(text):
            if m.group().lower() not in self.clinical and m.group().lower() not in self.english:
                results.append(RecognizerResult("LOCATION", m.start(), m.end(), self.score))
        return results


def _title(word: str) -> bool:
    return word[:1].isupper() and not word.isupper()


def repeat_places(
    text: str, spans: list[tuple[int, int]], never: frozenset[str], english: frozenset[str]
) -> list[tuple[int, int]]:
    """Every other occurrence, in the same text, of a word of a recognized place ("ASHFORD HOSPITAL" makes
    "AT ASHFORD-" a place too): notes name a hospital in full once and then by its first word.  Words in
    ``never`` (clinical, facility and function words) are never spread; an ordinary English word ("Seaview")
    only to its capitalized occurrences; matching ignores case otherwise."""

    def spreads(word: str) -> bool:
        return word[0].isupper() or word.lower() not in english

    words = {
        w.group().lower()
        for start, end in spans
        for w in SPREAD_WORD.finditer(text, start, end)
        if len(w.group()) >= 2 and w.group().lower() not in never and spreads(w.group())
    }
    if not words:
        return []
    covered = set()
    for start, end in spans:
        covered.update(range(start, end))
    return [
        (m.start(), m.end())
        for m in SPREAD_WORD.finditer(text)
        if m.group().lower() in words and m.start() not in covered and spreads(m.group())
    ]
