"""Names after a context phrase: a field label, a signature, a relation word, a verb of contact ("Attending:
lee", "wife Ann", "spoke with Raj", "d/w dr jones", "PT YAMAMOTO, KAREN  MRN ...").

Weak phrases ("with", "to", "per") precede devices and places as often as people, so after them the words must
look like names on their own; a colon after the phrase makes it a form field, where any word is the value.
"""

from __future__ import annotations

from spacy.tokens import Token

from pipelines.deid.names.vocabulary import CONTEXT, INITIAL, NameDoc, NameVocabulary


def context_labels(v: NameVocabulary, d: NameDoc) -> None:
    toks, caps_line, mark = d.toks, d.caps_line, d.mark
    lows = [t.text.lower() for t in toks]
    for i in range(len(toks)):
        for phrase in v.context.get(lows[i], ()):
            k = len(phrase)
            if tuple(lows[i : i + k]) != phrase:
                continue
            if i > 0 and toks[i - 1].text.lower() in {"no", "denies"}:
                break
            j = i + k
            key = " ".join(phrase)
            relation = key in v.rules.relations
            if relation and j < len(toks) and toks[j].text == ",":
                j += 1  # "son, dale, called": the relation's name set off by commas
                if _apposition(v, toks, j, caps_line):
                    mark(j, CONTEXT)
                    break
            colon = j < len(toks) and toks[j].text in {":", "-", "=", "#"}
            dash = colon and toks[j].text == "-"
            if colon:
                j += 1
                while j < len(toks) and toks[j].is_space and "\n" not in toks[j].text:
                    j += 1  # "Name:    hyuuma t. maida": aligned form fields
            if colon and key in v.title_words:
                break  # "MS: STAYS SEDATED": a title with a colon is a section header (mental status)
            weak = key in v.rules.weak_context and not colon
            any_case = key in v.rules.any_case_context
            # After a relation word a lower-case word counts too when it is a known given name ("son mike").
            run = v.run_after(toks, j, 4, need_capital=weak and not relation and not any_case)
            if relation and weak:
                run = _relation_run(v, toks, run)
            # "LAST, FIRST" after a label ("PT YAMAMOTO, KAREN"): both words must look like names.
            end = run[-1] + 1 if run else j
            if run and end + 1 < len(toks) and toks[end].text == ",":
                tail = v.run_after(toks, end + 1, 2, need_capital=weak)
                if tail and (
                    colon
                    or _id_label_follows(v, toks, tail[-1] + 1)
                    or _surname_first(v, toks[run[-1]].text, toks[tail[0]].text)
                ):
                    for idx in run + tail:
                        mark(idx, CONTEXT)
                    break
            if weak and not colon and not run and _lone_lower_case_name(v, toks, j):
                mark(j, CONTEXT)
                break
            if key in v.rules.preposition_context and not colon and _lone_ordinary_word(v, toks, run):
                break
            for idx in run:
                word = toks[idx].text
                if dash and v.is_english(word) and not v.in_gazetteer(word):
                    break  # "DAUGHTER-DISCUSSED PLAN", "NP- DROPPING": a dash is a pause, not a form field
                if relation and idx > run[0] and d.evidence[idx - 1] and v.surname_after_given(word):
                    mark(idx, CONTEXT)  # "DAUGHTER INES BURNS VISITED": a known surname after the relative's name
                    continue
                if any_case and not v.capitalized(toks[idx]):
                    if not v.name_like(toks[idx]):
                        break
                    mark(idx, CONTEXT)
                    continue
                if weak and relation and not v.is_common(word) and word.lower() not in v.clinical:
                    mark(idx, CONTEXT)
                    continue
                if weak and relation and idx == run[0] and _titled_after_relation(v, toks, idx, caps_line):
                    mark(idx, CONTEXT)
                    continue
                given = word.lower() in v.rules.first_names and word.lower() not in v.rules.ambiguous_names
                if weak and caps_line[idx] and word.isupper() and v.is_common(word) and not given:
                    break  # "PT HAPPY", "PER HOUR": in capitals an ordinary word is no name, listed or not
                if weak and (v.ambiguous(word) or caps_line[idx]) and not v.in_gazetteer(word):
                    if not (caps_line[idx] and v.name_like(toks[idx]) and _contact_follows(v, toks, idx + 1)):
                        break  # but "NP TARKOV MADE AWARE": a name-like word before a verb of contact
                if weak and not v.in_gazetteer(word) and v.is_english(word):
                    break
                if not colon and not v.in_gazetteer(word) and v.is_common(word):
                    break  # "PCP visit": an ordinary word (not only a noun, as surnames are) after a bare label
                if weak and not caps_line[idx] and word[:2].isupper() and not v.in_gazetteer(word):
                    break  # "admitted with SBO", "gram stain with GPCs": an abbreviation in mixed-case text
                if colon and not weak and v.ambiguous(word) and not v.in_gazetteer(word):
                    if not v.capitalized(toks[idx]):
                        break
                mark(idx, CONTEXT)
            break


def _apposition(v: NameVocabulary, toks: list[Token], j: int, caps_line: list[bool]) -> bool:
    """ "Son, Al, was updated": one Title-case word between commas right after a relation word is the
    relative's name even when it is an abbreviation ("Ed") or a given name that is also a word ("Joy"); not
    another relation ("son, daughter, and wife") or an ordinary word ("son, however, ...")."""
    if j + 1 >= len(toks) or toks[j + 1].text != "," or caps_line[j]:
        return False
    word = toks[j]
    low = word.text.lower()
    if not (word.text.isalpha() and v.title(word)) or low in v.rules.relations or low in v.title_words:
        return False
    return low in v.rules.first_names or not v.is_common(low)


def _titled_after_relation(v: NameVocabulary, toks: list[Token], idx: int, caps_line: list[bool]) -> bool:
    """ "has one son Ray who calls daily": in mixed case, a Title-case word right after a relation word in the
    same sentence is the relative's name even when it is also an ordinary word; not another relation, a title,
    a clinical word or an abbreviation."""
    word = toks[idx]
    low = word.text.lower()
    same_sentence = idx > 0 and toks[idx - 1].whitespace_ == " "
    return (
        same_sentence
        and not caps_line[idx]
        and word.text.isalpha()
        and v.title(word)
        and low not in v.rules.relations
        and low not in v.title_words
        and low not in v.clinical
    )


def _lone_lower_case_name(v: NameVocabulary, toks: list[Token], j: int) -> bool:
    """After a weak person context, a lower-case word ("per keisha", "spoke with raj", "records faxed by
    noah"), which the capitalized run skips: notes drop capitals, so it is a name when it is in a name gazetteer
    and no ordinary English, clinical, drug or place word, nor an ambiguous name ("with walker", "by mouth")."""
    if j >= len(toks) or not toks[j].text.islower():
        return False
    low = toks[j].text
    return (
        len(low) >= 3 and v.in_gazetteer(low) and v.candidate(toks[j]) and not v.ambiguous(low) and low not in v.places
    )


def _lone_ordinary_word(v: NameVocabulary, toks: list[Token], run: list[int]) -> bool:
    """After a bare preposition: the run is one ambiguous word ("with Walker", "TO CHAIR") that no initial or
    name follows ("with Walker Smith", "by Brad L Key" are persons)."""
    if not run or not v.ambiguous(toks[run[0]].text):
        return False
    if len(run) == 1:
        return True
    second = toks[run[1]].text
    return not (INITIAL.match(second) or v.in_gazetteer(second) and not v.ambiguous(second))


def _contact_follows(v: NameVocabulary, toks: list[Token], i: int) -> bool:
    """A verb of contact right after (over "made", "was", "is": "MADE AWARE", "WAS NOTIFIED")."""
    while i < len(toks) and toks[i].text.lower() in {"made", "was", "is", "were", "been"}:
        i += 1
    return i < len(toks) and toks[i].text.lower() in v.rules.contact_verbs


def _surname_first(v: NameVocabulary, last: str, first: str) -> bool:
    """ "LAST, FIRST" after a label: both gazetteer names or no ordinary words, at least one a known name,
    not both ambiguous ("STABLE, ALERT" is no name)."""
    words = (last, first)
    if any(w.lower() in v.clinical or (not v.in_gazetteer(w) and v.is_common(w)) for w in words):
        return False
    return any(v.in_gazetteer(w) for w in words) and not all(v.ambiguous(w) for w in words)


def _id_label_follows(v: NameVocabulary, toks: list[Token], i: int) -> bool:
    """An identifier label right after "LAST, FIRST" on the same line ("PT LEE, RANDY  MRN 9196"): a patient
    banner, so the two words are the patient's name even when they are also ordinary words."""
    while i < len(toks) and toks[i].is_space and "\n" not in toks[i].text:
        i += 1
    if i >= len(toks) or "\n" in toks[i - 1].whitespace_ or "\n" in toks[i - 1].text:
        return False
    return toks[i].text.lower().rstrip(":#") in v.rules.id_labels


def _relation_run(v: NameVocabulary, toks: list[Token], run: list[int]) -> list[int]:
    """After a relation word: capitalized words, or a lower-case known given name or word that is no ordinary
    word ("dtr lavinka"); right after the relation word even a given name that is also an ordinary word ("son
    dale", "wife joy"), later ones only if they are none."""
    out = []
    for idx in run:
        word = toks[idx].text
        given = (word in v.rules.first_names or v.name_like(toks[idx])) and (idx == run[0] or not v.ambiguous(word))
        if not v.capitalized(toks[idx]) and not given:
            break
        out.append(idx)
    return out
