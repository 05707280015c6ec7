"""Rules over the evidence found so far: lists of names, eponym vetoes, surnames after a found given name,
initials beside names, and propagation of a confirmed name to its every other occurrence in the document
(notes repeat names in other forms: "Smith" -> every "SMITH").
"""

from __future__ import annotations

from spacy.tokens import Token

from pipelines.deid.names.vocabulary import CONTEXT, GAZETTEER, INITIAL, STRONG, NameDoc, NameVocabulary

CONJUNCTIONS = frozenset({"and", "&", "or"})


def coordinations(v: NameVocabulary, d: NameDoc) -> None:
    """Single words joined by commas and "and"/"or": "Usamov and Bowers", "Morrison, Rogers and Torres",
    "silvana, adam, christopher and caleb".  A Title-case list where one item is a name makes the other
    name-like items names; a lower-case list of three or more is names when most items are given names."""
    toks, evidence = d.toks, d.evidence
    i = 0
    while i < len(toks):
        following = toks[i + 1].text.lower() if i + 1 < len(toks) else ""
        items = _coordination_at(v, toks, i) if following == "," or following in CONJUNCTIONS else []
        if not items:
            i += 1
            continue
        words = [toks[k] for k in items]
        if all(v.title(w) for w in words):
            ok = all(v.in_gazetteer(w.text) or v.name_like(w) for w in words)
            anchor = any(evidence[k] >= CONTEXT or v.in_gazetteer(toks[k].text) for k in items)
            unusual = any(v.name_like(w) for w in words)
            accept = ok and anchor and unusual
        elif all(w.text.isupper() and len(w.text) >= 3 for w in words):
            # In capitals case says nothing, so a list counts only beside a titled name ("DRS KOWALSKI AND
            # OKONJO"), and its other items must be no ordinary or clinical word.
            ok = all(evidence[k] >= STRONG or v.name_like(toks[k]) for k in items)
            accept = ok and any(evidence[k] >= STRONG for k in items)
        elif all(w.text.islower() for w in words) and len(words) >= 3:
            given = sum(1 for w in words if w.text in v.rules.first_names)
            ok = all(w.text in v.rules.first_names or v.name_like(w) for w in words)
            accept = ok and given >= 2 and given * 2 >= len(words)
        else:
            accept = False
        if accept:
            for k in items:
                evidence[k] = max(evidence[k], GAZETTEER)
        i = items[-1] + 1


def beside_titled_names(v: NameVocabulary, d: NameDoc) -> None:
    """A name of one or two words joined by "and" to a titled name ("MARIT OKSUN AND DRS ROE AND BRANDT AWARE", "Kim
    Ode and Dr. Roe"): a list of the people told, so its first item is a person too when its words are name-like
    (no ordinary, clinical or place word); case says nothing here, which is why ALL-CAPS notes need it."""
    toks, evidence = d.toks, d.evidence
    for c, tok in enumerate(toks):
        if tok.text.lower() not in CONJUNCTIONS or c + 2 >= len(toks) or c == 0:
            continue
        title = toks[c + 1]
        named = c + 2 if toks[c + 2].text != "." else c + 3
        if title.text.rstrip(".").lower() not in v.title_words or named >= len(toks) or evidence[named] < STRONG:
            continue
        run = []
        for k in (c - 1, c - 2):
            if k < 0 or evidence[k] or "\n" in toks[k].whitespace_ or not v.capitalized(toks[k]):
                break
            if not (v.name_like(toks[k]) or v.in_gazetteer(toks[k].text) and not v.ambiguous(toks[k].text)):
                break
            run.append(k)
        for k in run:
            evidence[k] = GAZETTEER


def _coordination_at(v: NameVocabulary, toks: list[Token], i: int) -> list[int]:
    """Token indexes of a list of single words starting at ``i`` that ends with a conjunction, else []."""
    if not v.candidate(toks[i]) or len(toks[i].text) < 2:
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
        if not v.candidate(toks[item]) or "\n" in toks[j].whitespace_ or len(toks[item].text) < 2:
            return []
        items.append(item)
        after = toks[item + 1] if item + 1 < len(toks) else None
        if sep in CONJUNCTIONS:
            return [] if after is not None and v.title(after) and v.title(toks[item]) else items
        j = item + 1
    return []


def eponyms(v: NameVocabulary, d: NameDoc) -> None:
    toks, evidence = d.toks, d.evidence
    for i in range(len(toks)):
        if evidence[i] and evidence[i] < STRONG and v.eponym(toks, i):
            evidence[i] = 0


def extend_to_unknown_words(v: NameVocabulary, d: NameDoc) -> None:
    """A capitalized word right after a name that is no ordinary word is its surname ("Kimberly Yamamoto")."""
    toks, caps_line, evidence = d.toks, d.caps_line, d.evidence
    for i in range(len(toks) - 1):
        nxt = toks[i + 1]
        if not evidence[i] or evidence[i + 1] or toks[i].whitespace_ != " ":
            continue
        if not v.candidate(nxt) or not v.capitalized(nxt) or len(nxt.text) < 3:
            continue
        if nxt.text in v.rules.credentials or v.is_english(nxt.text) or v.eponym(toks, i + 1):
            continue
        if not caps_line[i + 1] and nxt.text.isupper():
            continue
        evidence[i + 1] = evidence[i]


def double_barrelled(v: NameVocabulary, d: NameDoc) -> None:
    """The second half of a hyphenated surname ("dr okafor-lindqvist", "OKAFOR-LINDQVIST"): the tokenizer splits
    it at the hyphen in lower case and capitals, so the found first half would leave the second in the text.
    Only a word glued to the hyphen that is no ordinary, clinical or function word."""
    toks, evidence = d.toks, d.evidence
    for i in range(len(toks) - 2):
        hyphen, nxt = toks[i + 1], toks[i + 2]
        if not evidence[i] or evidence[i + 2] or hyphen.text != "-" or toks[i].whitespace_ or hyphen.whitespace_:
            continue
        if len(nxt.text) >= 2 and v.candidate(nxt) and not v.is_common(nxt.text):
            evidence[i + 2] = evidence[i]


def initials_next_to_names(v: NameVocabulary, d: NameDoc) -> None:
    toks, evidence = d.toks, d.evidence
    for i, tok in enumerate(toks):
        if evidence[i] or not INITIAL.match(tok.text) or tok.text in v.rules.credentials:
            continue
        nxt = i + 1
        if nxt < len(toks) and toks[nxt].text == ".":
            nxt += 1
        before = i > 0 and evidence[i - 1] and "\n" not in toks[i - 1].whitespace_
        after = nxt < len(toks) and evidence[nxt] and "\n" not in tok.whitespace_
        if before or after:
            evidence[i] = CONTEXT


def propagate(v: NameVocabulary, d: NameDoc) -> None:
    toks, evidence = d.toks, d.evidence
    confirmed = {toks[i].text.lower() for i, e in enumerate(evidence) if e and len(toks[i].text) >= 3}
    confirmed -= v.rules.stop_words
    for i, tok in enumerate(toks):
        low = tok.text.lower()
        if evidence[i] or low not in confirmed or not v.is_word(tok):
            continue
        if not v.capitalized(tok) and (v.ambiguous(tok.text) or low in v.english):
            continue
        if d.caps_line[i] and v.is_common(tok.text) and not v.in_gazetteer(tok.text):
            continue  # in capitals an ordinary word says nothing: "STABLE" is no copy of a name "Stable"
        if low in v.rules.never_names or v.eponym(toks, i):
            continue
        evidence[i] = GAZETTEER
