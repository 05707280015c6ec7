"""Names by their role in a sentence: the subject of a reporting verb ("yuki chen c/o ..."), the owner of a
relation ("Asya's kid"), the subject of a person verb ("Trivo lives on"), a speaker in a transcript.
"""

from __future__ import annotations

import bisect

import regex
from spacy.tokens import Token

from pipelines.deid.names.vocabulary import CONTEXT, GAZETTEER, POSSESSIVE, NameDoc, NameVocabulary

# Verbs whose subject in a note is a person ("yuki chen c/o ...", "Mr Adeyemi reports ...").
REPORT_VERB = regex.compile(
    r"(?i)(?<=\S[ \t]+)(?:c/o|complains|reports|states|denies|endorses|presents|presented|admits)\b"
)
# A word after which a clause starts ("and frank called"); any punctuation does too ("social: ron visited").
CLAUSE_OPENERS = frozenset({"and", "And", "AND"})
QUOTES = frozenset("\"“”„«'")


def report_subjects(v: NameVocabulary, d: NameDoc) -> None:
    """The one or two words before "c/o", "reports", "denies" ... are the person reporting: a name when
    they look like one ("S: yuki chen c/o abd pain"), whatever their case."""
    toks, mark = d.toks, d.mark
    ends = None
    for m in REPORT_VERB.finditer(d.text):
        if ends is None:
            ends = [t.idx + len(t.text) for t in toks]
        # The last two tokens that end before the verb (a bisect: walking the prefix is quadratic).
        last = bisect.bisect_right(ends, m.start())
        run = list(range(max(0, last - 2), last))
        while run and not v.candidate(toks[run[0]]):
            run = run[1:]
        if not run or any(not v.candidate(toks[k]) or "\n" in toks[k].whitespace_ for k in run[:-1]):
            continue
        words = [toks[k].text for k in run]
        if any(not v.in_gazetteer(w) and (v.is_common(w) or len(w) < 3) for w in words):
            continue
        known = any(v.in_gazetteer(w) and not v.ambiguous(w) for w in words)
        unknown_pair = len(words) == 2 and not any(v.in_gazetteer(w) or v.is_english(w) for w in words)
        if known or unknown_pair or _census_pair(v, [toks[k] for k in run]):
            for k in run:
                mark(k, GAZETTEER)


def _census_pair(v: NameVocabulary, pair: list[Token]) -> bool:
    """Before a reporting verb, a given name and a surname, one of them from the census lists and the other
    listed too or no ordinary word (nouns allowed: WordNet lists "wei"), are a person even when they are also
    words ("virginia ivanova", "randy lee", "dmitri hicks"); not when both are listed ambiguous names ("will
    rush", "mark page")."""
    if len(pair) != 2 or not all(v.candidate(t) for t in pair):
        return False
    first, last = (t.text.lower() for t in pair)
    given = first in v.rules.first_names
    surname = last in v.rules.last_names
    if not (given or surname) or first in v.rules.ambiguous_names and last in v.rules.ambiguous_names:
        return False
    return (given or not v.is_common(first)) and (surname or not v.is_common(last))


def possessive_kin(v: NameVocabulary, d: NameDoc) -> None:
    """ "Asya's kid", "roberto's daughter": the owner of a relation is a person."""
    toks, mark = d.toks, d.mark
    for i in range(len(toks) - 2):
        if toks[i + 1].text.lower() not in POSSESSIVE:
            continue
        kin = toks[i + 2].text.lower()
        if (kin in v.rules.relations or kin in v.rules.kin_after_possessive) and v.name_like(toks[i]):
            mark(i, CONTEXT)


def family_names(v: NameVocabulary, d: NameDoc) -> None:
    """ "the Okafor family", "KEEP WIELGOSZ FAMILY AWARE": a listed surname right before "family" that is no
    ordinary, clinical or place word names the family."""
    toks, mark = d.toks, d.mark
    for i in range(1, len(toks)):
        if toks[i].text.lower() != "family":
            continue
        prev = toks[i - 1]
        if prev.text.lower() in v.rules.last_names and v.name_like(prev) and not v.is_english(prev.text):
            mark(i - 1, CONTEXT)


def bracketed_relation(v: NameVocabulary, d: NameDoc) -> None:
    """ "Ines Okafor (daughter) cell ...", "TOM (SON) CALLED": one or two words right before a relation word in
    brackets name that relative, when they are capitalized, no ordinary word and no clinical word."""
    toks, mark = d.toks, d.mark
    for i in range(1, len(toks) - 2):
        if toks[i].text != "(" or toks[i + 1].text.lower() not in v.rules.relations or toks[i + 2].text != ")":
            continue
        j = i - 1
        while j >= 0 and i - j <= 2 and toks[j].text.strip() and v.capitalized(toks[j]) and v.candidate(toks[j]):
            if v.is_common(toks[j].text) and not v.in_gazetteer(toks[j].text):
                break
            mark(j, CONTEXT)
            if "\n" in toks[j - 1].whitespace_ if j else True:
                break
            j -= 1


def person_verbs(v: NameVocabulary, d: NameDoc) -> None:
    """The Title-case name-like words right before a person verb ("Trivo lives on", "Tomomi Nishiyama lives
    at"), or right after "said" ("said Erle"), are a person."""
    toks, mark = d.toks, d.mark
    for i, tok in enumerate(toks):
        if tok.text.lower() not in v.rules.person_verbs:
            continue
        j = i - 1
        while j >= 0 and i - j <= 2 and v.title(toks[j]) and v.name_like(toks[j]):
            if "\n" in toks[j].whitespace_ or len(toks[j].text) < 3:
                break
            mark(j, CONTEXT)
            j -= 1
        nxt = i + 1
        if tok.text.lower() == "said" and nxt < len(toks) and v.title(toks[nxt]) and v.name_like(toks[nxt]):
            mark(nxt, CONTEXT)


def speakers(v: NameVocabulary, d: NameDoc) -> None:
    """Transcripts and messages: a line that opens with a name-like word and a colon before a quotation
    ("Koppány: \"Who are you?\""); two or more lines opening "Word:" where one word is a given name
    ("Ella: ...", "Leverett: ..."); a line that opens with a name-like word, a comma and a request
    ("Danial, can I ...")."""
    toks, mark = d.toks, d.mark
    speakers: list[int] = []
    for i in range(len(toks) - 2):
        line_start = i == 0 or "\n" in toks[i - 1].whitespace_ or "\n" in toks[i - 1].text
        if not line_start or not v.title(toks[i]) and not toks[i].text.islower():
            continue
        nxt = toks[i + 1].text
        if nxt == "," and toks[i + 2].text.lower() in v.rules.vocative_next and v.name_like(toks[i]):
            mark(i, CONTEXT)
        if nxt != ":" or not (v.name_like(toks[i]) or toks[i].text.lower() in v.rules.first_names):
            continue
        speakers.append(i)
        k = i + 2
        while k < len(toks) and toks[k].is_space and "\n" not in toks[k].text:
            k += 1
        if k < len(toks) and toks[k].text[:1] in QUOTES and v.name_like(toks[i]):
            mark(i, CONTEXT)
    given = [i for i in speakers if v.in_gazetteer(toks[i].text) and not v.ambiguous(toks[i].text)]
    if len(speakers) >= 2 and given:
        for i in speakers:
            mark(i, CONTEXT)


def contact_subjects(v: NameVocabulary, d: NameDoc) -> None:
    """A known given name right before a verb of contact, at the start of a clause ("tom called twice", "and
    frank called", "Social: RON VISITED"), is the person who called, in any case and even when it is also a
    word: nothing else in a note calls or visits under a given name."""
    toks, mark = d.toks, d.mark
    for i in range(1, len(toks)):
        if toks[i].text.lower() not in v.rules.contact_verbs:
            continue
        first = i - 1
        if first >= 1 and v.name_like(toks[first]) and toks[first - 1].text.lower() in v.rules.first_names:
            first -= 1  # "MAEVE ODUYA CALLED": given name and surname
        name = toks[first]
        if name.text.lower() not in v.rules.first_names or not all(v.candidate(t) for t in toks[first:i]):
            continue
        before = toks[first - 1] if first >= 1 else None
        if before is None or not before.is_alpha or before.text in CLAUSE_OPENERS or "\n" in before.whitespace_:
            for k in range(first, i):
                mark(k, CONTEXT)


def signature(v: NameVocabulary, d: NameDoc) -> None:
    """The last one to three words of a note, on a line of their own or after a sentence end, the first a known
    given name ("Susan", "... 1400U/HR. JANE R"): a nurse's signature."""
    toks, mark = d.toks, d.mark
    end = len(toks)
    while end > 0 and (toks[end - 1].is_space or not toks[end - 1].text.strip("|.-_ ")):
        end -= 1
    start = end
    while start > 0 and "\n" not in toks[start - 1].whitespace_ and not toks[start - 1].is_space:
        if toks[start - 1].text == "." and end - start <= 3:
            break
        start -= 1
    words = toks[start:end]
    if not 1 <= len(words) <= 3 or not all(v.is_word(t) for t in words):
        return
    first = words[0].text.lower()
    if first in v.rules.first_names and v.candidate(words[0]) and first not in v.rules.ambiguous_names:
        for k in range(start, end):
            if v.candidate(toks[k]) and toks[k].text not in v.rules.credentials:
                mark(k, CONTEXT)
