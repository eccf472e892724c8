"""Scrubbing identifiers out of report text before it becomes a caption.

A report attached to a DICOM file (``--reports``) often repeats what the file's header says about the
patient: the name (in any order and case, or in DICOM's ``Family^Given^Middle`` form), the patient ID,
the accession number, dates, the institution, the referring or performing physician. Captions end up in
shards, the embedding store and the explorer, so :func:`scrub_report_text` replaces

* every identifying value of the same file's header (:data:`IDENTIFYING_FIELDS`), matched
  case-insensitively as a whole word: person names component by component (so "Jane Doe", "DOE, JANE"
  and "Doe^Jane" all go), IDs with or without separators inside them, dates in the usual spellings
  (19610203, 1961-02-03, 03/02/1961, 2/3/1961, 3 February 1961, Feb 3, 1961, ...);
* and, whatever the header says, the common shapes of dates (numeric, ISO, with month names), labelled
  identifiers (``MRN: …``, ``Accession # …``, ``ID …``), long digit runs, US social security and phone
  numbers and e-mail addresses

by :data:`REPLACEMENT`. It returns the scrubbed text and the number of spans it replaced, never the spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

REPLACEMENT = "[removed]"

#: Person-name fields (VR PN): replaced component by component.
NAME_FIELDS: tuple[str, ...] = (
    "PatientName",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "PatientBirthName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
)
#: Identifier fields: replaced as a whole, with or without separators inside.
ID_FIELDS: tuple[str, ...] = (
    "PatientID",
    "OtherPatientIDs",
    "IssuerOfPatientID",
    "AccessionNumber",
    "StudyID",
    "MedicalRecordLocator",
)
#: Date fields (VR DA): replaced in every usual spelling.
DATE_FIELDS: tuple[str, ...] = (
    "PatientBirthDate",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstanceCreationDate",
)
#: Free-text identifying fields (institution, address, phone): replaced as a whole and by distinctive word.
TEXT_FIELDS: tuple[str, ...] = (
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "StationName",
)
IDENTIFYING_FIELDS: tuple[str, ...] = NAME_FIELDS + ID_FIELDS + DATE_FIELDS + TEXT_FIELDS

#: Words of institution names and addresses too common to scrub on their own.
_COMMON_WORDS = frozenset(
    "hospital hospitals general medical medicine center centre clinic clinics university department dept "
    "of the and for st saint health healthcare regional memorial community institute radiology imaging "
    "children's childrens county city street road avenue ave rd lane suite floor building north south "
    "east west new".split()
)
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")  # fmt: skip
_MONTH_PATTERN = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_ORDINAL = r"\d{1,2}(?:st|nd|rd|th)?"

#: Shapes scrubbed whatever the header says (applied after the header values).
COMMON_SHAPES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail address
        r"\b(?:MRN|MR\s*#|medical\s+record(?:\s+(?:number|no\.?))?|patient\s+id|pid|accession(?:\s+(?:number|no\.?))?"
        r"|acc\.?|ID|case|study\s+id|DOB|date\s+of\s+birth|born)\s*(?:#|:|no\.?|number)?\s*:?\s*"
        r"(?=[A-Z/.-]*\d)[A-Z0-9][A-Z0-9/.-]{2,}",  # labelled identifier: the value holds a digit
        r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",  # ISO-like dates
        r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",  # day/month/year either order
        r"\b\d{1,2}/(?:19|20)\d{2}\b",  # month/year
        rf"\b{_ORDINAL}\s+{_MONTH_PATTERN},?\s+\d{{2,4}}\b",  # 3 February 1961
        rf"\b{_MONTH_PATTERN}\s+{_ORDINAL},?\s+\d{{2,4}}\b",  # February 3, 1961
        rf"\b\d{{1,2}}-{_MONTH_PATTERN}-\d{{2,4}}\b",  # 03-Feb-1961
        rf"\b{_MONTH_PATTERN}\s+\d{{4}}\b",  # February 1961
        r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b",  # 19610203
        r"\b\d{3}-\d{2}-\d{4}\b",  # US social security number
        r"(?:\+\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b",  # phone number
        r"\b[A-Z]{0,4}\d{6,}\b",  # long digit runs (record and accession numbers)
    )
)


@dataclass(frozen=True)
class ScrubbedText:
    """Report text after scrubbing, and how many spans were replaced (never the spans themselves)."""

    text: str
    spans_replaced: int


def _values(dataset: Any, names: Iterable[str]) -> list[str]:
    values: list[str] = []
    for name in names:
        value = dataset.get(name) if hasattr(dataset, "get") else None
        if value is None or value == "":
            continue
        items = value if isinstance(value, (list, tuple)) or getattr(value, "VM", 1) > 1 else [value]
        values.extend(str(item) for item in items if str(item).strip())
    return values


def header_identifiers(dataset: Any) -> dict[str, list[str]]:
    """The identifying values of a pydicom dataset, grouped as ``names``, ``ids``, ``dates``, ``texts``.

    ``OtherPatientIDsSequence`` items contribute their ``PatientID``.
    """
    ids = _values(dataset, ID_FIELDS)
    for item in dataset.get("OtherPatientIDsSequence", []) or []:
        ids.extend(_values(item, ("PatientID",)))
    return {"names": _values(dataset, NAME_FIELDS), "ids": ids, "dates": _values(dataset, DATE_FIELDS),
            "texts": _values(dataset, TEXT_FIELDS)}  # fmt: skip


def _word(pattern: str) -> str:
    return rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])"


def _name_patterns(name: str) -> list[str]:
    # PN: up to three component groups (alphabetic=ideographic=phonetic), each Family^Given^Middle^Prefix^Suffix.
    parts = [part.strip(".") for part in re.split(r"[\^=,\s]+", name)]
    parts += [piece for part in parts if "-" in part for piece in part.split("-")]  # Smith-Jones: also Smith, Jones
    return [_word(re.escape(part)) for part in parts if len(part) >= 2]


def _id_pattern(value: str) -> str | None:
    characters = [c for c in value if c.isalnum()]
    if len(characters) < 2 or (value.strip().isdigit() and len(characters) < 5):
        return None  # a short number (StudyID "12") would also remove "12 mm"; it identifies no one alone
    # Separators inside the ID may be written or left out: ACC98765 = ACC-98765 = ACC 98765.
    return _word(r"[\s._/-]?".join(re.escape(c) for c in characters))


def _date_patterns(value: str) -> list[str]:
    digits = re.sub(r"\D", "", value)
    if len(digits) != 8:
        return [_word(re.escape(value))] if value.strip() else []
    year, month, day = digits[:4], int(digits[4:6]), int(digits[6:8])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return [_word(re.escape(digits))]
    m_forms = f"(?:0?{month})"
    d_forms = f"(?:0?{day})"
    y_forms = f"(?:{year}|{year[2:]})"
    month_name = _MONTHS[month - 1]
    month_word = f"(?:{month_name}|{month_name[:3]}\\.?|{month_name[:4]}\\.?)"
    day_word = rf"{d_forms}(?:st|nd|rd|th)?"
    return [
        _word(digits),
        _word(rf"{year}[-/.\s]{m_forms}[-/.\s]{d_forms}"),
        _word(rf"{d_forms}[-/.\s]{m_forms}[-/.\s]{y_forms}"),
        _word(rf"{m_forms}[-/.\s]{d_forms}[-/.\s]{y_forms}"),
        _word(rf"{day_word}\s*(?:of\s+)?{month_word}[,\s-]*{y_forms}"),
        _word(rf"{month_word}\s*{day_word},?\s*{y_forms}"),
    ]


def _text_patterns(value: str) -> list[str]:
    patterns = []
    words = [w for w in re.split(r"[\s,;^]+", value) if w]
    if words:
        patterns.append(_word(r"[\s,;^]+".join(re.escape(w) for w in words)))
    for word in words:
        clean = word.strip(".,;:()")
        if len(clean) >= 3 and clean.lower() not in _COMMON_WORDS and not clean.isdigit():
            patterns.append(_word(re.escape(clean)))
    return patterns


def identifier_patterns(identifiers: dict[str, Sequence[str]]) -> list[re.Pattern[str]]:
    """Compiled patterns for the header values (see :func:`header_identifiers`), longest first."""
    raw: list[str] = []
    for value in identifiers.get("texts", ()):
        raw += _text_patterns(value)
    for value in identifiers.get("dates", ()):
        raw += _date_patterns(value)
    for value in identifiers.get("ids", ()):
        pattern = _id_pattern(value)
        if pattern:
            raw.append(pattern)
    for value in identifiers.get("names", ()):
        raw += _name_patterns(value)
    unique = sorted(set(raw), key=len, reverse=True)  # whole values before their parts
    return [re.compile(pattern, re.IGNORECASE) for pattern in unique]


def scrub_report_text(text: str, identifiers: dict[str, Sequence[str]]) -> ScrubbedText:
    """Replace the header's identifying values and common identifier shapes in ``text``.

    Args:
        text: Report text.
        identifiers: The same file's identifying header values, from :func:`header_identifiers`.

    Returns:
        The scrubbed text (each replaced span becomes :data:`REPLACEMENT`; runs of replacements merge) and
        the number of spans replaced.
    """
    replaced = 0
    for pattern in (*identifier_patterns(identifiers), *COMMON_SHAPES):
        text, count = pattern.subn(REPLACEMENT, text)
        replaced += count
    marker = re.escape(REPLACEMENT)
    text = re.sub(rf"{marker}(?:[\s,^.;:-]*{marker})+", REPLACEMENT, text)
    return ScrubbedText(re.sub(r"\s{2,}", " ", text).strip(), replaced)
