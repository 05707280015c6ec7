"""Shift a date written in free text by a number of days, keeping the way it was written.

"07/22/2019" stays zero-padded month/day/year, "Jan 3rd" stays an abbreviated month with an ordinal and no
year, "22-JUL-19" stays upper case with a two-digit year.  Keeping the format keeps the training text
natural; shifting every date of a patient by the same offset keeps the intervals between events.  A text
that is not a calendar date ("Christmas", "Monday", "March") returns None: the caller then uses a tag.
"""

from __future__ import annotations

from datetime import date, timedelta

import regex

MONTHS = "january february march april may june july august september october november december".split()
_MONTH = (
    r"(?P<mon>(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?))\.?"
)
_DAY = r"(?P<d>\d{1,2})(?!\d)(?P<ord>(?i:st|nd|rd|th))?"
_YEAR = r"(?P<y>\d{4}|\d{2})"

# Reference year for dates written without one: a leap year, so "Feb 29" survives.
NO_YEAR = 2000

FORMS = [
    regex.compile(r"^(?P<y>\d{4})(?P<s>[-/.])(?P<m>\d{1,2})(?P=s)(?P<d>\d{1,2})(?P<rest>(?:[T ].*)?)$"),
    # Compact dates, and HL7 TS values whose time of day and zone ride along unchanged ("20190722143000-0500").
    regex.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?P<rest>(?:\d{2}){0,3}(?:\.\d{1,4})?(?:[+-]\d{4})?)$"),
    # FHIR partial dates ("2019-07"): shifted from the middle of the month, written back as year-month.
    regex.compile(r"^(?P<y>\d{4})-(?P<m>0[1-9]|1[0-2])$"),
    regex.compile(r"^(?P<m>\d{1,2})(?P<s>[-/.])(?P<d>\d{1,2})(?P=s)" + _YEAR + "$"),
    regex.compile(r"^(?P<m>\d{1,2})/(?P<d>\d{1,2})$"),
    regex.compile(r"^" + _MONTH + r"[ \t,/-]*'?" + _YEAR + "$"),
    regex.compile(r"^" + _MONTH + r"[ \t]*-?[ \t]*" + _DAY + r"(?:,?[ \t]*'?" + _YEAR + ")?$"),
    regex.compile(r"^" + _DAY + r"(?:[ \t]+of)?[ \t-]*" + _MONTH + r"(?:,?[ \t-]*'?" + _YEAR + ")?$"),
]


def _full_year(text: str) -> int:
    if len(text) == 4:
        return int(text)
    value = int(text)
    return 2000 + value if value <= 40 else 1900 + value


def _num(original: str, value: int) -> str:
    return f"{value:02d}" if len(original) == 2 else str(value)


def _month_word(original: str, month: int) -> str:
    full = MONTHS[month - 1]
    word = full if len(original) > 4 or original.lower() in {"june", "july"} else full[:3]
    if original.lower() == "sept" and month == 9:
        word = "sept"
    if original.isupper():
        return word.upper()
    if original.islower():
        return word
    return word.capitalize()


def _ordinal(original: str, day: int) -> str:
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return suffix.upper() if original.isupper() else suffix


def written_year(text: str) -> int | None:
    """The year a date text states (two-digit years expanded), or None when it states none or is no date."""
    for form in FORMS:
        m = form.match(text)
        if m is not None:
            return _full_year(m.group("y")) if m.groupdict().get("y") else None
    return None


def shift_date_text(text: str, days: int) -> str | None:
    """``text`` moved ``days`` days (negative: back), or None when it is not a parsable calendar date."""
    for form in FORMS:
        m = form.match(text)
        if m is None:
            continue
        groups = m.groupdict()
        month = MONTHS.index(_month_name(groups["mon"])) + 1 if groups.get("mon") else int(groups["m"])
        day = int(groups["d"]) if groups.get("d") else 15
        has_year = bool(groups.get("y"))
        year = _full_year(groups["y"]) if has_year else NO_YEAR
        if groups.get("m") and month > 12 and day <= 12:  # day-first numeric date (22/07/2019)
            month, day = day, month
            m_key, d_key = "d", "m"
        else:
            m_key, d_key = "m", "d"
        try:
            shifted = date(year, month, day) + timedelta(days=days)
        except ValueError:
            return None
        values = _renderers(shifted, m_key, d_key)
        if not groups.get("d"):
            values.pop("d", None)
        return _rebuild(text, m, values)
    return None


def _renderers(shifted: date, m_key: str, d_key: str) -> dict:
    """Per matched group: how to write the shifted value in the style of the original text."""
    return {
        m_key: lambda o: _num(o, shifted.month),
        d_key: lambda o: _num(o, shifted.day),
        "mon": lambda o: _month_word(o, shifted.month),
        "ord": lambda o: _ordinal(o, shifted.day),
        "y": lambda o: f"{shifted.year % 100:02d}" if len(o) == 2 else str(shifted.year),
    }


def _month_name(word: str) -> str:
    low = word.lower()
    return next(name for name in MONTHS if name.startswith(low[:3]))


def _rebuild(text: str, m: regex.Match, values: dict) -> str:
    parts = []
    pos = 0
    spans = sorted((m.span(g), g) for g in values if m.groupdict().get(g) is not None)
    for (start, end), group in spans:
        parts.append(text[pos:start])
        parts.append(values[group](text[start:end]))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
