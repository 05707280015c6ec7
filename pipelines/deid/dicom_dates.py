"""Date and time shifting for the "Retain Longitudinal Temporal Information with Modified Dates" option.

Every date and time of one patient moves back by the same offset, so intervals (days between a baseline and a
follow-up scan, seconds between two series) survive while the calendar dates do not.  The offset is keyed on
the patient: the whole days come from the one formula every modality uses (``medcurate.core.keys.date_shift_days``:
1..``date_shift_max_days`` of deid.yaml), so a CT and the note that discusses it still fall on the same shifted
day; on top come 1..3599 seconds, so times of day change too.  An instant in the first hour after midnight may
thereby land one day before its note's shifted date.  Without the key the offset cannot be recomputed.

DICOM splits many instants into a DA and a TM element (StudyDate + StudyTime); shifting them separately would
lose the day carried over when the time crosses midnight, so a pair is shifted as one instant.  A lone DA is
read as midnight of that day and a lone TM as a time of day on no particular date (shifted modulo 24 hours).
Partial DT values (``YYYY``, ``YYYYMM``) are shifted from the first day of their period and written back at
their own precision.  A value that does not parse cannot be shifted safely: the callers empty it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from medcurate.core.keys import DATE_SHIFT_NAMESPACE, date_shift_days, keyed_hash

MAX_TIME_SHIFT_SECONDS = 3599
SECONDS_PER_DAY = 86400
AGE_CEILING_YEARS = 90

_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?")
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?")
_AGE_YEARS = re.compile(r"(\d{3})Y")


def date_offset(key: bytes, patient_key: str, max_days: int) -> timedelta:
    """The patient's (negative) offset: the text engine's 1..max_days whole days plus 1..3599 seconds."""
    days = date_shift_days(key, patient_key, max_days)
    seconds = 1 + int(keyed_hash(key, DATE_SHIFT_NAMESPACE, patient_key)[12:24], 16) % MAX_TIME_SHIFT_SECONDS
    return -timedelta(days=days, seconds=seconds)


def _parse_date(value: str) -> date | None:
    match = _DA.fullmatch(value.strip())
    if match is None:
        return None
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def _parse_time(value: str) -> tuple[int, str] | None:
    """(seconds since midnight, fractional part as written) of a TM value."""
    match = _TM.fullmatch(value.strip())
    if match is None:
        return None
    hours, minutes, seconds = (int(part or 0) for part in match.groups()[:3])
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    return hours * 3600 + minutes * 60 + min(seconds, 59), match.group(4) or ""


def _format_time(moment: datetime, fraction: str) -> str:
    return moment.strftime("%H%M%S") + fraction


class DateShifter:
    """Shifts DA, TM and DT strings by one patient's offset; each method returns None for bad input."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def shift_date(self, value: str) -> str | None:
        day = _parse_date(value)
        if day is None:
            return None
        return (datetime.combine(day, datetime.min.time()) + self.offset).strftime("%Y%m%d")

    def shift_time(self, value: str) -> str | None:
        parsed = _parse_time(value)
        if parsed is None:
            return None
        seconds, fraction = parsed
        shifted = (seconds + int(self.offset.total_seconds())) % SECONDS_PER_DAY
        return _format_time(datetime(2000, 1, 1) + timedelta(seconds=shifted), fraction)

    def shift_date_time(self, date_value: str, time_value: str) -> tuple[str, str] | None:
        """A DA + TM pair shifted as one instant, so a midnight crossing moves the date too."""
        day, parsed = _parse_date(date_value), _parse_time(time_value)
        if day is None or parsed is None:
            return None
        seconds, fraction = parsed
        moment = datetime.combine(day, datetime.min.time()) + timedelta(seconds=seconds) + self.offset
        return moment.strftime("%Y%m%d"), _format_time(moment, fraction)

    def shift_datetime(self, value: str) -> str | None:
        match = _DT.fullmatch(value.strip())
        if match is None:
            return None
        year, month, day, hour, minute, second, fraction, zone = match.groups()
        try:
            moment = datetime(
                int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0)
            )
        except ValueError:
            return None
        shifted = moment + self.offset
        if day is None:
            return shifted.strftime("%Y%m" if month else "%Y")
        if hour is None:
            return shifted.strftime("%Y%m%d")
        return shifted.strftime("%Y%m%d%H%M%S") + (fraction or "") + (zone or "")


def clamp_age(value: str) -> str:
    """Ages of 90 years and over are an identifier (HIPAA Safe Harbor): they all become ``090Y``."""
    match = _AGE_YEARS.fullmatch(value.strip())
    if match and int(match.group(1)) >= AGE_CEILING_YEARS:
        return f"{AGE_CEILING_YEARS:03d}Y"
    return value
