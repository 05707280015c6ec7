"""The Clean Descriptors option: free-text descriptors keep their clinical vocabulary and lose the rest.

Study Description, Series Description, Protocol Name and the like are valuable training text ("CT HEAD WO
CONTRAST", "t1_vibe_fs_tra_bh_dyn") but technologists sometimes type a name, an MRN or a date into them.
Recognising PHI by pattern fails open (an unusual name passes); so the cleaner works the other way round: a
word survives only if it is in the allowlist ``dicom_descriptor_words.yaml`` or is harmless by form (a number
of at most three digits or a decimal like ``0.5``, such a number with a unit like ``5mm`` or ``3D``, a short
code like ``T1`` or ``L4``, a single letter). Everything else is deleted, so a descriptor made only of unknown
words ends up empty. Separators (spaces, ``/``, ``_``, ``^``, punctuation) are kept between surviving words
and trimmed at the ends.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml

VOCABULARY_YAML = Path(__file__).with_name("dicom_descriptor_words.yaml")

# Digit groups joined by ``. / : -`` are one word, so a date (2003-04-05, 04/05) or a time goes as a whole.
_WORD = re.compile(r"\d+(?:[./:-]\d+)+|[A-Za-z0-9]+")
_HARMLESS_FORM = re.compile(r"\d{1,3}|(?:0|[1-9]\d{0,2})\.\d+|\d{1,3}[a-z]{1,3}|[a-z]{1,2}\d{1,2}|[a-z]")
_EXTRA_SPACE = re.compile(r"\s{2,}")
_EDGE_SEPARATORS = " \t\r\n^/_-.,;:+&|'\""


@cache
def descriptor_vocabulary(path: Path = VOCABULARY_YAML) -> frozenset[str]:
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))
    words = [word for group in groups.values() for word in group]
    # Unquoted yes/no/on/off load as booleans: a vocabulary of "true" and "false" would be a silent bug.
    if not_text := [word for word in words if not isinstance(word, str)]:
        raise ValueError(f"{path.name}: quote these words, YAML read them as non-strings: {not_text}")
    return frozenset(word.lower() for word in words)


def is_safe_word(word: str) -> bool:
    lowered = word.lower()
    return lowered in descriptor_vocabulary() or _HARMLESS_FORM.fullmatch(lowered) is not None


def clean_descriptor(text: str) -> str:
    kept = _WORD.sub(lambda match: match.group(0) if is_safe_word(match.group(0)) else "", text)
    kept = _EXTRA_SPACE.sub(" ", kept).strip(_EDGE_SEPARATORS)
    # A descriptor with no surviving word is empty, not a residue of separators like "^ /".
    return kept if _WORD.search(kept) else ""
