"""Names recognised by what they are, without a context phrase: gazetteer first+last pairs, an unambiguous
gazetteer name, "First M. Last" around an initial, two unknown Title-case words, spaCy PERSON entities.
"""

from __future__ import annotations

from spacy.tokens import Doc, Token

from pipelines.deid.names.vocabulary import CONTEXT, GAZETTEER, NER, NameDoc, NameVocabulary


def gazetteer(v: NameVocabulary, d: NameDoc) -> None:
    toks, caps_line, mark = d.toks, d.caps_line, d.mark
    for i, tok in enumerate(toks):
        if not v.candidate(tok) or not v.capitalized(tok) or not v.in_gazetteer(tok.text):
            continue
        nxt = i + 1
        while nxt < len(toks) and toks[nxt].text == "," and "\n" not in toks[nxt].whitespace_:
            nxt += 1
        pair = (
            nxt < len(toks)
            and "\n" not in tok.whitespace_
            and v.candidate(toks[nxt])
            and v.capitalized(toks[nxt])
            and v.in_gazetteer(toks[nxt].text)
        )
        if pair:
            first_amb = v.ambiguous(tok.text)
            second_amb = v.ambiguous(toks[nxt].text)
            if caps_line[i] and (first_amb or second_amb):
                continue
            if first_amb and second_amb:
                continue
            mark(i, GAZETTEER)
            mark(nxt, GAZETTEER)
        elif not caps_line[i] and not v.ambiguous(tok.text) and not tok.text.isupper() and len(tok.text) >= 3:
            mark(i, GAZETTEER)
    _lower_case_pairs(v, toks, mark)


def _lower_case_pairs(v: NameVocabulary, toks: list[Token], mark) -> None:
    """ "john smith" in lower case: a given name then a surname, where the surname is a gazetteer name or
    no ordinary word ("karen yamamoto"), and not both are ordinary words ("will page")."""
    for i in range(len(toks) - 1):
        a, b = toks[i], toks[i + 1]
        if not (a.text.islower() and b.text.islower() and a.whitespace_ == " "):
            continue
        if not (v.candidate(a) and v.candidate(b)) or a.text not in v.rules.first_names:
            continue
        if v.eponym(toks, i):
            continue  # "wilson disease"
        if b.text in v.rules.first_names or b.text in v.rules.last_names:
            accept = not (v.ambiguous(a.text) and v.ambiguous(b.text))
        else:
            accept = not v.ambiguous(a.text) and len(b.text) >= 3 and not v.is_common(b.text)
        if accept:
            mark(i, GAZETTEER)
            mark(i + 1, GAZETTEER)


def middle_initials(v: NameVocabulary, d: NameDoc) -> None:
    """First, middle initial, last: "Sari J. Paavolainen", "leidy t muris".  The initial between two name-like
    words in the same case is the evidence; ordinary words around it ("Vitamin D Deficiency") veto."""
    toks, caps_line, mark = d.toks, d.caps_line, d.mark
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
        title = v.title(first) and v.title(last) and letter.isupper()
        lower = first.text.islower() and last.text.islower() and letter.islower() and letter not in "aiqx"
        if (title or lower) and v.name_like(first) and v.name_like(last):
            for idx in range(i, k + 1):
                mark(idx, CONTEXT)


def unknown_pairs(v: NameVocabulary, d: NameDoc) -> None:
    """Two Title-case words side by side that are neither ordinary, clinical nor place words ("Miklós Hajdu",
    "Cleopatra Mordvinova"): a given name and surname.  Drug and organism names are kept out by the
    never-name list."""
    toks, caps_line, mark = d.toks, d.caps_line, d.mark
    for i in range(len(toks) - 1):
        a, b = toks[i], toks[i + 1]
        if a.whitespace_ != " " or caps_line[i] or not (v.title(a) and v.title(b)):
            continue
        if len(a.text) < 3 or len(b.text) < 3 or not (v.name_like(a) and v.name_like(b)):
            continue
        mark(i, GAZETTEER)
        mark(i + 1, GAZETTEER)


def ner(v: NameVocabulary, d: NameDoc) -> None:
    doc, caps_line, mark = d.doc, d.caps_line, d.mark
    for ent in d.artifacts.entities:
        if ent.label_ != "NAME":
            continue
        if any(t.text.lower() in v.rules.never_names for t in doc[ent.start : ent.end]):
            continue  # "Proteus Difficile", "Charcot-Marie-Tooth": a pathogen or an eponym, with its other words
        idxs = [t.i for t in doc[ent.start : ent.end] if v.candidate(t) and v.capitalized(t)]
        idxs = _could_be_named(v, doc, idxs, caps_line)
        if not idxs:
            continue
        if any(caps_line[i] for i in idxs) and not any(v.in_gazetteer(doc[i].text) for i in idxs):
            continue
        known = [i for i in idxs if v.in_gazetteer(doc[i].text) and not v.ambiguous(doc[i].text)]
        unknown = [
            i
            for i in idxs
            if not v.in_gazetteer(doc[i].text)
            and not v.is_english(doc[i].text)
            and not v.misspelled(doc[i].text)
            and not v.run_together(doc[i].text)
        ]
        header = ent.end < len(doc) and doc[ent.end].text == ":"
        if header or not (known or (unknown and len(doc[unknown[0]].text) >= 3)):
            continue
        for i in known + unknown:
            mark(i, NER)


def _could_be_named(v: NameVocabulary, doc: Doc, idxs: list[int], caps_line: list[bool]) -> list[int]:
    """Drop what the model calls a person but no name looks like: a word without a vowel ("Bld", "Dsgs":
    shorthand), and, alone in a mixed-case line, a word in capitals or dotted initials that is no listed name
    ("XRAYS", "UOP", "C.O." for cardiac output).  Two words in capitals ("ANNA KOWALSKI") stay."""
    idxs = [i for i in idxs if any(c in "aeiouyAEIOUY" for c in doc[i].text)]
    if len(idxs) == 1:
        tok = doc[idxs[0]]
        capitals = len(tok.text) >= 2 and tok.text.replace(".", "").isupper()
        if capitals and not caps_line[tok.i] and not v.in_gazetteer(tok.text):
            return []
    return idxs


def initial_surnames(v: NameVocabulary, d: NameDoc) -> None:
    """An initial with its period, then a word that is no ordinary English, clinical or drug word, in any case
    ("K. VANTERPOOL AWARE", "nsg (r. okafor and ...)"): a clinician's short signature.  Before a credential that
    ends the line the word may be ordinary English too ("m. baker rrt").  Species after a genus
    initial ("S. aureus") are in the never-name list."""
    toks, mark = d.toks, d.mark
    for i in range(len(toks) - 1):
        initial, word = toks[i], toks[i + 1]
        dotted = initial.text.endswith(".") and len(initial.text) == 2 and initial.text[0].isalpha()
        if not dotted or initial.whitespace_ != " " or (i > 0 and toks[i - 1].like_num):
            continue
        if i > 0 and not toks[i - 1].whitespace_ and toks[i - 1].text.endswith(("/", ">")):
            continue  # the end of a glued abbreviation ("b/p. PIV", "u/o. maintenance", "2mg/h. Arousable")
        if initial.text[0].isupper() and word.text.islower():
            continue  # "close to R. mainstem": a side or a section letter before a lower-case word
        if initial.text[0] in "SOAPsoap" and (i == 0 or "\n" in toks[i - 1].text or "\n" in toks[i - 1].whitespace_):
            continue  # "P. ANTIBX AS ORDERED": a SOAP section letter at the start of a line
        signed = _credential_ends_line(v, toks, i + 2) and v.candidate(word, strong=True)
        if len(word.text) >= 3 and (signed or v.name_like(word)) and not v.eponym(toks, i + 1):
            mark(i, CONTEXT)
            mark(i + 1, CONTEXT)


def _credential_ends_line(v: NameVocabulary, toks: list[Token], i: int) -> bool:
    """A strong credential, in any case, as the last word of its line ("m. baker rrt" signing a note): after an
    initial it makes the word between a surname even when the word is also ordinary English."""
    if i >= len(toks) or toks[i].text.lower() not in v.strong_credentials_lower:
        return False
    return i + 1 == len(toks) or "\n" in toks[i].whitespace_ or toks[i + 1].is_space and "\n" in toks[i + 1].text
