"""Names announced by a title before them ("Dr. Lee", "Mrs. ann ito") or a credential after them ("Roe, RN").

The strongest evidence: a title or a credential of three letters or more is a name whatever the word is.
"""

from __future__ import annotations

from spacy.tokens import Token

from pipelines.deid.names.vocabulary import INITIAL, STRONG, NameDoc, NameVocabulary


def titles(v: NameVocabulary, d: NameDoc) -> None:
    toks, caps_line, mark = d.toks, d.caps_line, d.mark
    for i, tok in enumerate(toks):
        if tok.text not in v.rules.titles and tok.text + "." not in v.rules.titles:
            continue
        j = i + 1
        dotted = tok.text in v.rules.titles or j < len(toks) and toks[j].text == "."
        if j < len(toks) and toks[j].text == ".":
            j += 1
        j = _name_on_next_line(v, toks, j)
        run = v.run_after(toks, j, 3, need_capital=False, strong=True) or _particle_run(v, toks, j)
        first = toks[run[0]].text if run else ""
        particle = len(run) > 1 and first.lower() in v.rules.surname_particles
        ordinary = first.lower() in v.rules.ambiguous_names or v.is_common(first)
        if run and not v.capitalized(toks[run[0]]) and ordinary and not v.in_gazetteer(first) and not particle:
            continue  # "dr. aware" is none; "dr. white" (a listed name), "dr. darwin" (a noun only) are
        # A doubtful title announces a name only when the word is a name on its own: one listed only with its
        # period, written without ("MS" is mental status or morphine); a clinical abbreviation in capitals, dot
        # or not ("changes in MS. Aspiration"); a title that is also a word ("IV NURSE UNSUCCESSFUL", but
        # "Nurse Ratched", "Sister Ines").
        clinical = tok.text in v.rules.clinical_titles or dotted and tok.text + "." in v.rules.clinical_titles
        doubtful = not dotted or clinical or len(tok.text) >= 5 and v.is_english(tok.text)
        if run and doubtful and not _name_on_its_own(v, toks[run[0]]):
            continue
        for k, idx in enumerate(run):
            later = k > 0
            if k == 1 and particle:
                mark(idx, STRONG)  # "Dr. o donnell": the surname after its particle, in any case
                continue
            if k == 1 and first.lower() in v.rules.first_names and v.surname_after_given(toks[idx].text):
                mark(idx, STRONG)  # "Dr. Nadia Gray", "dr ines walker": a listed surname after a given name
                continue
            if k == 1 and _surname_by_case(v, toks, run[0], idx, caps_line):
                mark(idx, STRONG)
                continue
            if later and (not v.capitalized(toks[idx]) or v.ambiguous(toks[idx].text)):
                break
            if later and caps_line[idx] and not v.in_gazetteer(toks[idx].text):
                break
            mark(idx, STRONG)


def _surname_by_case(v: NameVocabulary, toks: list[Token], given: int, idx: int, caps_line: list[bool]) -> bool:
    """In mixed case, a Title-case word right after a titled, Title-case given name is the family name even when
    it is an ordinary word or missing from the gazetteer ("Dr. Jo Brook", "Dr Ann Greenfinch"): mid-sentence,
    only the name explains the capital.  The first word may be a listed given name or an ordinary word used as
    one ("Dr. Hope Abara"); an unknown word after the title is already the surname ("Dr. Okonjo Cardiology"
    names a service next).  Clinical and function words stay out."""
    first, tok = toks[given], toks[idx]
    return (
        not caps_line[idx]
        and v.title(first)
        and (first.text.lower() in v.rules.first_names or v.is_english(first.text))
        and v.title(tok)
        and v.candidate(tok)
    )


def _surname_before_credential(v: NameVocabulary, toks: list[Token], j: int, weak: bool) -> bool:
    """Before a strong credential, a clinical or device word right after a listed given name is the surname
    ("Ann Holter RRT", "Tom Hickman CRT"): the word's other sense cannot sit between a given name and a degree."""
    before = toks[j - 1] if j > 0 else None
    return (
        not weak
        and before is not None
        and before.whitespace_ == " "
        and v.title(before)
        and before.text.lower() in v.rules.first_names
        and v.candidate(toks[j], strong=True)
    )


def _particle_run(v: NameVocabulary, toks: list[Token], j: int) -> list[int]:
    """A surname particle that is no word on its own (a lower-case "o") and the surname after it."""
    if j + 1 >= len(toks) or toks[j].text.lower() not in v.rules.surname_particles or toks[j].whitespace_ != " ":
        return []
    rest = v.run_after(toks, j + 1, 2, need_capital=False, strong=True)
    return [j, *rest] if rest else []


def _name_on_its_own(v: NameVocabulary, tok: Token) -> bool:
    """A word that is a name without a title's help: a listed, unambiguous name or a word that is no ordinary,
    clinical or misspelled word ("MS CLEARS" is no title before a name; "MS OKONJO" is)."""
    return v.in_gazetteer(tok.text) and not v.ambiguous(tok.text) or v.name_like(tok)


def _name_on_next_line(v: NameVocabulary, toks: list[Token], j: int) -> int:
    """Where the name after a title starts when the line wraps right after the title ("Cardiology (Dr.\\nScott)"):
    the first word of the next line if it is capitalized, no clinical word and no header ("Dr.\\nPLAN:")."""
    if j >= len(toks) or not (toks[j].is_space and "\n" in toks[j].text):
        return j
    k = j + 1
    header = k + 1 < len(toks) and toks[k + 1].text == ":"
    if k < len(toks) and v.capitalized(toks[k]) and v.candidate(toks[k]) and not header:
        return k
    return j


def credentials(v: NameVocabulary, d: NameDoc) -> None:
    toks, mark = d.toks, d.mark
    for i, tok in enumerate(toks):
        if tok.text not in v.rules.credentials:
            continue
        j = i - 1
        comma = j >= 0 and toks[j].text == ","
        if comma:
            j -= 1
        weak = tok.text not in v.strong_credentials
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
            if prev.text == "-" and not prev.whitespace_ and j > 0 and not toks[j - 1].whitespace_:
                j -= 1  # a double-barrelled surname ("Ellis-Baker MD")
                continue
            if not v.capitalized(prev) or not (v.candidate(prev) or _surname_before_credential(v, toks, j, weak)):
                break
            if prev.text in v.rules.credentials:
                break
            if weak and not v.in_gazetteer(prev.text) and v.is_english(prev.text):
                break  # "SKIN: INTACT, IV SITE": a two-letter credential is often a clinical abbreviation
            initial_before = j > 0 and INITIAL.match(toks[j - 1].text)
            ordinary = v.is_common(prev.text) or v.is_english(prev.text) and not v.in_gazetteer(prev.text)
            if prev.text.isupper() and ordinary and not initial_before:
                break  # "U/O 15CC LAST HOUR MD AWARE": in capitals an ordinary word before MD is none ("J. TANNER" is)
            if j > 0 and toks[j - 1].like_num and len(prev.text) == 1:
                break  # "2 L NP": a unit after a number (litres by nasal prongs), not an initial
            mark(j, STRONG)
            taken += 1
            j -= 1
