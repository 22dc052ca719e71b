"""Recognizers with no dataset context, as regular expressions: dates (numeric, and with
English, German or French month names), times, phone and fax numbers, e-mail addresses,
URLs, ID- and MRN-like numbers, UIDs, ages over 89, street addresses and postal codes, and
the cues of person names (titles, labels, "by", degrees, DICOM carets) that
:mod:`dicomveil.cleaners.text.names` follows. Numbers with units are measurements, not IDs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Final

from dicomveil.cleaners.text.spans import Basis, Category, Span
from dicomveil.cleaners.text.variants import _trie_pattern
from dicomveil.cleaners.text.vocabulary import (
    _L,
    _LETTER,
    _R,
    _digits,
    _Vocabulary,
    _vocabulary,
    fold,
)


@dataclass(frozen=True)
class _Finder:
    """A pattern whose matches are spans of one category.

    ``folded``: it is searched in the folded text (lower case, no accents), else in the
    original; ``group``: the span is that group of a match; ``keep(match, text, vocab)``:
    a match is a span only if it holds.
    """

    rx: re.Pattern[str]
    category: Category
    folded: bool = True
    group: int = 0
    keep: Callable[[re.Match[str], str, _Vocabulary], bool] | None = None
    hint: re.Pattern[str] | None = None  # searched first, in the folded text: else no match


@dataclass(frozen=True)
class _Patterns:
    finders: tuple[_Finder, ...]  # dates, times, phone numbers, IDs, ages, addresses
    email: re.Pattern[str]
    url: re.Pattern[str]
    # the cues of person names (:mod:`dicomveil.cleaners.text.names`)
    titles: re.Pattern[str]
    labels: re.Pattern[str]
    by: re.Pattern[str]
    suffix: re.Pattern[str]
    caret: re.Pattern[str]
    token: re.Pattern[str]
    unit_after: re.Pattern[str]  # a unit after a number: a measurement (_is_measure)
    weekday_before: re.Pattern[str]  # a weekday before a date: part of it
    date_said: re.Pattern[str]  # the words before a day and month that make it a date
    extension_after: re.Pattern[str]  # an extension after a phone number: part of it


_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_YEAR4 = r"(?:1[89]\d{2}|20\d{2})"


_WEEKDAYS: Final = (
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "mon", "tue", "tues", "wed", "thu", "thurs", "fri", "sat", "sun",
    "montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonnabend", "sonntag",
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
)  # fmt: skip


@cache
def _patterns() -> _Patterns:
    vocab = _vocabulary()
    months = _trie_pattern(vocab.months)  # a trie: faster than a long alternation
    month = rf"(?:{months}){_R}\.?"
    titles = "|".join(sorted((re.escape(t) for t in vocab.titles), key=len, reverse=True))
    units = "|".join(sorted((re.escape(u) for u in vocab.units), key=len, reverse=True))
    upper_word = r"[A-ZÀ-ÖØ-Þ][\w'\u2019.\-]*"
    street_en = (
        r"(?:street|st|avenue|ave|road|rd|drive|dr(?!\.?\s+(?-i:[A-ZÀ-Þ]))|lane|ln|boulevard|blvd"
        r"|court|ct|way|place|pl"
        r"|terrace|crescent|close|square|sq|highway|hwy|parkway|pkwy|circle)"
    )
    street_de = r"(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee)"
    street_fr = (
        r"(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|allee|impasse|quai|route|cours)"
    )
    fr_upper = r"[A-ZÀ-ÖØ-Þ][^\W\d_]*"
    weekdays = _trie_pattern(_WEEKDAYS)
    return _Patterns(
        finders=(
            # 3. März 2024, 3 mars 2024, 1er mars, 5th of March 2024, 05-Mar-2024, 5 March
            _Finder(
                re.compile(
                    rf"(?<![\w.,]){_DAY}(?:\.|er|st|nd|rd|th)?(?:\s+of)?[\s/\-]*{month}"
                    rf"(?:[\s,\-/.']*{_YEAR4}(?!\d)|[\-/.']\s?\d{{2}}(?!\d))?"
                ),
                Category.DATE,
            ),
            # March 5, 2024; Mar 5 2024; March 5th
            _Finder(
                re.compile(
                    rf"{_L}{month}\s*{_DAY}(?:st|nd|rd|th)?(?!\d)(?:,?\s+{_YEAR4}(?!\d))?"
                    rf"(?![\w.,]\d)"
                ),
                Category.DATE,
            ),
            # month and year, day and month
            _Finder(
                re.compile(
                    rf"(?:{_L}{month}\s*{_YEAR4}(?!\d))"
                    rf"|(?:(?<![\w.,/\-])(?:0?[1-9]|1[0-2])[./]{_YEAR4}(?![\d]|[.,]\d))"
                    rf"|(?:(?<![\w.,/\-])(?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])\.(?![\d]))"
                ),
                Category.DATE,
            ),
            # a month and day without a year where a date is said ("since Sunday 12/8",
            # "LKW 23:40 4/26", "on 3/14"), never a score ("KG 4/5", "MoCA 17/30")
            _Finder(
                re.compile(
                    r"(?<![\w./\-])(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|[12]\d|3[01])"
                    r"(?![\d/]|[.,]\d)"
                ),
                Category.DATE,
                keep=_said_date,
            ),
            # a year of birth: "b. 1994", "born 1994", "geb. 1994", "née en 1994", "Jg. 1994"
            _Finder(
                re.compile(
                    rf"{_L}(?:b\.|born(?:\s+in)?|geb\.|geboren(?:\s+im\s+jahr)?|jg\.|jahrgang"
                    rf"|nee?\s+en|nee?)\s*({_YEAR4}){_R}"
                ),
                Category.DATE,
                group=1,
            ),
            # numeric: day and month in either order, ISO, compact (DA, DT)
            _Finder(
                re.compile(
                    rf"(?<![\w.,/\-])(\d{{1,2}})([./\-])(\d{{1,2}})\2({_YEAR4}|\d{{2}})"
                    r"(?![\d]|[.,]\d)"
                ),
                Category.DATE,
                keep=_numeric_date,
            ),
            _Finder(
                re.compile(
                    rf"(?<![\w.,/\-])({_YEAR4})([\-/.])(\d{{1,2}})\2(\d{{1,2}})(?![\d]|[.,]\d)"
                ),
                Category.DATE,
                keep=_iso_date,
            ),
            _Finder(
                re.compile(
                    rf"(?<![\w.,]){_YEAR4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                    r"(?:[01]\d|2[0-3])?(?:[0-5]\d){0,2}(?:\.\d{1,6})?(?:[+\-]\d{4})?"
                    r"(?![\w]|[.,]\d)"
                ),
                Category.DATE,
                keep=_compact_date_match,
            ),
            # times
            _Finder(
                re.compile(
                    r"(?<![\w:.,])(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?"
                    r"(?:\s*[ap]\.?m\.?(?![^\W_]))?(?![\d:])"
                ),
                Category.TIME,
            ),
            _Finder(
                re.compile(r"(?<![\w:.,])(?:1[0-2]|0?[1-9])(?::[0-5]\d)?\s*[ap]\.?m\.?(?![^\W_])"),
                Category.TIME,
            ),
            _Finder(
                re.compile(rf"(?<![\w:.,])(?:[01]?\d|2[0-3])\s?h\s?[0-5]\d{_R}"), Category.TIME
            ),
            _Finder(
                re.compile(rf"(?<![\w:.,])((?:[01]?\d|2[0-3]))([.:][0-5]\d)?\s?uhr{_R}"),
                Category.TIME,
                keep=_clock_time,
            ),
            _Finder(
                re.compile(
                    rf"{_L}(?:at|um|a|vers|gegen|ab|bis|heure|heures)\s+([1-9]:[0-5]\d){_R}"
                ),
                Category.TIME,
                group=1,
            ),
            # phone numbers (on the original text: 7 to 15 digits), after a keyword, extensions
            *(
                _Finder(rx, Category.PHONE, folded=False, keep=_phone_number)
                for rx in (
                    re.compile(
                        r"(?<![\w+])\+\s?\d{1,3}(?:[\s.\-/]*(?:\(0\)|\(\d{1,5}\)|\d{1,5})){2,6}"
                        r"(?!\d)"
                    ),
                    re.compile(
                        r"(?<![\w.])(?:\(\d{3}\)\s?\d{3}[\s.\-]\d{4}|\d{3}([.\-])\d{3}\1\d{4})"
                        r"(?![\w]|[.,]\d)"
                    ),
                    re.compile(r"(?<![\w.])0[1-9]([\s.\-])\d{2}(?:\1\d{2}){3}(?![\w]|[.,]\d)"),
                    re.compile(r"(?<![\w.])0\d{2,4}(?:\s\d{3,4}){1,2}(?![\w]|[.,]\d)"),
                    # 0049 (0)30 1234567, 0044 20 7946 0018: the international prefix 00
                    re.compile(
                        r"(?<![\w.+])00\d{1,3}(?:[\s.\-/]*(?:\(0\)|\(\d{1,5}\)|\d{1,5})){2,6}"
                        r"(?!\d)"
                    ),
                    # (030) 1234567, (0711) 12 34 56; 030 12345678; 555 204 8861
                    re.compile(
                        r"(?<![\w.])\(0\d{1,4}\)\s?\d{2,8}(?:[\s\-]\d{2,5}){0,3}(?![\w]|[.,]\d)"
                    ),
                    re.compile(r"(?<![\w.])0\d{2,4}\s\d{5,8}(?![\w]|[.,]\d)"),
                    re.compile(r"(?<![\w.])[2-9]\d{2}\s[2-9]\d{2}\s\d{4}(?![\w]|[.,]\d)"),
                    # 0511 / 87 65 43 21: an area code, then the number in pairs
                    re.compile(
                        r"(?<![\w.])0\d{2,5}\s?/\s?\d{2,4}(?:\s\d{2,4}){1,4}(?![\w]|[.,]\d)"
                    ),
                    re.compile(
                        r"(?<![\w.])0\d{2,5}(?:\s?[/\-]\s?\d{3,9}(?:-\d{1,5})?|\s\d{3,9}-\d{1,5})"
                        r"(?![\w]|[.,]\d)"
                    ),
                )
            ),
            # an ID with a letter prefix and a long number: ED24-55871, BSU-4471-2290
            _Finder(
                re.compile(r"(?<![\w\-])[A-Z]{2,5}\d{0,4}-\d{3,}(?:-\d{2,})?(?![\w\-])"),
                Category.ID,
                folded=False,
                keep=_dashed_id,
            ),
            # a code of letters and groups of digits: NSR-24-10-5531, AVM-FR-2024-0198,
            # MSREG-BW 0331-17, DPV 0037-4410, TR-88410-2 (trial, registry and case numbers)
            _Finder(
                re.compile(
                    r"(?<![\w\-/.])[A-Z]{1,6}\d{0,3}(?:-[A-Z]{2,4})*[\- /]\d{2,}(?:[\-/ ]\d+)*"
                    r"(?:\s?[A-Z](?![\w]))?(?![\w\-/]|[.,]\d)"
                ),
                Category.ID,
                folded=False,
                keep=_coded_id,
            ),
            # a French social security number: 2 57 03 37 261 044 18
            _Finder(
                re.compile(
                    r"(?<![\w.])[12]\s\d{2}\s\d{2}\s\d{2}\s\d{3}\s\d{3}(?:\s\d{2})?(?![\w]|[.,]\d)"
                ),
                Category.ID,
                folded=False,
            ),
            _Finder(
                re.compile(
                    rf"{_L}(?:tel|tele|telephone|telefon|telefonnummer|phone|ph|fax|telefax"
                    r"|telecopie|mobile|mobil|handy|portable|cell|pager|bip|gsm|rufnummer"
                    r"|durchwahl|ruckruf)"
                    r"\.?(?:\s*/\s*fax\.?)?\s*(?:no\.?|nr\.?|n°|number|#)?\s*[:.]?\s*"
                    r"(\+?\(?\d[\d\s().\-/]{3,}\d)"
                ),
                Category.PHONE,
                group=1,
                keep=_keyword_phone,
            ),
            _Finder(
                re.compile(
                    rf"{_L}(?:ext|extension|durchwahl|dw|poste|app)\.?\s*(?:no\.?|nr\.?|n°|#)?"
                    r"\s*[:.]?\s*(\d{3,6})(?![\w]|[.,]\d)"
                ),
                Category.PHONE,
                group=1,
            ),
            # IDs: after a keyword (on folded text), then on the original text
            _Finder(
                re.compile(
                    rf"{_L}(?:mrn|mr#|mr-?nr|pid|pat(?:ient(?:en)?)?[\s\-]?(?:id|nr|#|no)|id|ipp"
                    r"|nip|nda|acc(?:ession)?(?:\s*(?:no|nr|#|number))?|fall(?:nummer|[\s\-]?nr)"
                    r"|auftrag(?:snummer|s?[\s\-]?nr)|aufnahme[\s\-]?nr|n°(?:\s*(?:de\s+)?(?:dossier"
                    r"|patient|examen|sejour))?|no\s+de\s+dossier|dossier|order(?:\s*(?:no|#|number))?"
                    r"|case(?:\s*(?:no|#|number))?|ssn|nhs(?:\s*(?:no|number))?|versichertennummer"
                    r"|versicherungsnummer|secu|insee|nir|chart(?:\s*(?:no|#))?"
                    r"|record(?:\s*(?:no|#|number))?|kennung|identifiant)"
                    r"\.?\s*[:#=]?\s*([a-z0-9](?:[a-z0-9\-/._]*[a-z0-9])?)"
                ),
                Category.ID,
                group=1,
                keep=_keyword_id,
            ),
            _Finder(
                re.compile(r"(?<![\w.,/\-])(?:[A-Z]{1,6}[\-_]?)?\d{5,}[A-Z]?(?![\w]|[.,]\d)"),
                Category.ID,
                folded=False,
                keep=_generic_id,
            ),
            _Finder(
                re.compile(r"(?<![\w.,/\-])\d{2,}(?:-\d{2,}){1,3}(?![\w/\-]|[.,]\d)"),
                Category.ID,
                folded=False,
                keep=_dashed_id,
            ),
            _Finder(
                re.compile(r"(?<![\w.])[0-2](?:\.\d+){4,}(?![\w]|\.\d)"), Category.ID, folded=False
            ),
            # where the patient lies: "ICU bed 14", "Zimmer 412", "box 4" (not "waiting room 2")
            _Finder(
                re.compile(
                    rf"{_L}(?:{'|'.join(sorted(vocab.location_cues, key=len, reverse=True))})"
                    r"\.?\s*(?:no\.?|nr\.?|n°|#)?\s*((?:[a-z]{1,3}-)?\d{1,4}[a-z]?)(?![\w]|[.,]\d)"
                ),
                Category.ID,
                group=1,
                keep=_location,
            ),
            # any stated age of the patient, in the forms that say it is one (privacy first:
            # the Basic Profile removes Patient's Age); not a duration ("for 3 years",
            # "depuis 3 ans", "vor 3 J.")
            _Finder(
                re.compile(
                    r"(?<![\w.,/])(\d{1,3})\s?-?\s?(?:years?\s?-?\s?old|year-old|yo|y/o|y\.o\."
                    r"|jahre\s+alt|jahrige[rnms]?|yrs?\.?|ans|jahre|j\.|j|y)(?![^\W_])"
                ),
                Category.AGE,
                group=1,
                keep=_stated_age,
            ),
            _Finder(
                re.compile(rf"{_L}(?:aged?|alter|age\s+de|agee?\s+de)\s*:?\s*(\d{{1,3}}){_R}"),
                Category.AGE,
                group=1,
            ),
            # "46F, BRCA2 carrier", "66 M restrained driver": age and sex opening a history
            _Finder(
                re.compile(r"^\s*(\d{1,3})\s?[mfw](?=[\s,.;:)]|$)"),
                Category.AGE,
                group=1,
            ),
            # street addresses and postal codes (on the original text); German streets only
            # where a street word is (their patterns try every capitalised word)
            *(
                _Finder(rx, Category.ADDRESS, folded=False, hint=re.compile(street_de))
                for rx in (
                    re.compile(
                        rf"{_L}(?:[A-ZÄÖÜ][^\W\d_]*[\s\-])?[A-ZÄÖÜ][^\W\d_\-]*(?i:{street_de})"
                        rf"\s*\d{{1,4}}\s?[a-z]?{_R}"
                    ),
                    re.compile(
                        rf"{_L}[A-ZÄÖÜ][^\W\d_\-]*\s+(?:Straße|Strasse|Str\.|Weg|Allee|Platz"
                        rf"|Gasse|Ring|Damm)\s+\d{{1,4}}\s?[a-z]?{_R}"
                    ),
                )
            ),
            *(
                _Finder(rx, Category.ADDRESS, folded=False)
                for rx in (
                    re.compile(
                        rf"{_L}\d{{1,5}}[A-Za-z]?,?\s+(?:{upper_word}\s+){{0,3}}{upper_word}\s+"
                        rf"(?i:{street_en})\b\.?"
                        r"(?:,?\s+(?i:apt|suite|unit|apartment)\.?\s*#?\w+)?"
                        r"(?:,\s*[A-ZÀ-ÖØ-Þ][\w'\u2019.\-]*(?:\s+[A-ZÀ-ÖØ-Þ][\w'\u2019.\-]*){0,2})?"
                        r"(?:,?\s+[A-Z]{2})?(?:\s+\d{5}(?:-\d{4})?)?"
                    ),
                    re.compile(
                        rf"{_L}\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?i:{street_fr})\s+"
                        r"(?:(?:de\s+la|de\s+l['\u2019]|du|des|de|d['\u2019]|la|le|les|l['\u2019])"
                        rf"\s*)?{fr_upper}(?:[\s\-'\u2019]+(?:de|du|des|la|le|{fr_upper}))*"
                    ),
                    re.compile(
                        r"(?i:(?<![\w.])(?:p\.?\s?o\.?\s?box|postfach|boite\s+postale|b\.?p\.?)\s*"
                        r"\d[\d ]{1,8}\d(?![\d/]))"
                    ),
                    re.compile(rf"{_L}[A-Z]{{2}}\s\d{{5}}(?:-\d{{4}})?{_R}"),
                )
            ),
            _Finder(
                re.compile(
                    rf"{_L}(?:[A-Z]{{1,2}}-)?\d{{5}}\s+([A-ZÀ-ÖØ-Þ][^\W\d_]+"
                    r"(?:[\s\-][A-ZÀ-ÖØ-Þ][^\W\d_]+)?)(?:\s+(?i:cedex)(?:\s+\d{1,2})?)?"
                ),
                Category.ADDRESS,
                folded=False,
                keep=_postal_city,
            ),
        ),
        email=re.compile(r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"),
        url=re.compile(
            r"(?:(?<![\w.])(?:https?|ftp)://[^\s<>\"']+|(?<![\w.])www\.[^\s<>\"']+"
            # a bare domain of a well-known top-level domain: "hbc-club.example.fr/contact"
            r"|(?<![\w.@/\-])[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*"
            r"\.(?:com|org|net|edu|gov|info|io|uk|de|fr|eu|ch|at|be|nl|ca|us|ie)(?:/[^\s<>\"']*)?"
            r"(?![\w\-]|\.\w))",
            re.IGNORECASE,
        ),
        titles=re.compile(rf"{_L}(?i:{titles})(?:\.|{_R})"),
        labels=re.compile(
            rf"{_L}(?i:referring(?:\s+(?:physician|doctor|md|dr))?|referred\s+by"
            r"|ref\.?\s*(?:phys|dr|md)\.?|radiologist|attending|physician|operator"
            r"|technologist|tech|technician|radiographer|signed(?:\s+by)?|dictated\s+by"
            r"|read\s+by|reported\s+by|verified\s+by|reviewed\s+by|approved\s+by|seen\s+by"
            r"|requested\s+by|requesting\s+physician|ordering\s+physician|consultant|resident"
            r"|fellow|author|observer|zuweiser(?:in)?|überweiser(?:in)?|uberweiser(?:in)?"
            r"|überweisende[rn]?\s+arzt|befunder(?:in)?|befundet\s+von|befundende[rn]?\s+arzt"
            r"|mtra|mtr|mta|untersucher(?:in)?|unterschrift|gez\.|gezeichnet|arzt|ärztin"
            r"|oberarzt|oberärztin|assistenzarzt|assistenzärztin|médecin(?:\s+(?:prescripteur"
            r"|demandeur|traitant|radiologue))?|medecin|prescripteur|demandeur|radiologue"
            r"|manipulateur|manipulatrice|interprété\s+par|signé(?:\s+par)?|dicté\s+par"
            r"|validé\s+par|vu\s+par|adressé\s+par|patient(?:in|e)?|pat\.|name|nom"
            r"|nom\s+de\s+naissance|geburtsname|pt\.?|contact|kontakt|angehörige[rn]?"
            r"|next\s+of\s+kin|mother|father|mutter|vater|mère|père|épouse|époux|wife|husband"
            r"|ehefrau|ehemann)\s*[:=]\s*"
        ),
        by=re.compile(rf"{_L}(?:by|par|durch|von|per|from|chez|bei)\s+"),
        suffix=re.compile(
            r"(?:,\s*|\s+)(?:MD|M\.D\.|PhD|Ph\.D\.|RN|FACR|FRCR|FRCS|MBBS)(?![^\W_])"
        ),
        caret=re.compile(rf"{_L}{_LETTER}[\w'\u2019.\-]*\^[\w'\u2019.\-^]*"),
        token=re.compile(r"[^\s,;:()\[\]{}<>\"/]+"),
        unit_after=re.compile(rf"\s?(?:{units})(?![^\W_])", re.IGNORECASE),
        weekday_before=re.compile(rf"{_L}(?:{weekdays}),?\s+(?:(?:the|le|den)\s+)?$"),
        date_said=re.compile(
            rf"(?:{_L}(?:{weekdays}),?|{_L}(?:on|since|from|until|till|due|dated|seit|bis|ab|le"
            r"|du|au|depuis|jusqu'au)|(?:[01]?\d|2[0-3])[:h][0-5]\d)\s+$"
        ),
        extension_after=re.compile(
            r"\s*,?\s*(?:x|ext\.?|extension|poste|durchwahl|dw\.?)\s*\d{1,6}(?!\d)"
        ),
    )


def _valid_dmy(day: int, month: int, year: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _year(text: str) -> int:
    value = int(text)
    return value + (2000 if value < 50 else 1900) if len(text) <= 2 else value


def _number_spans(text: str, folded: str, p: _Patterns, vocab: _Vocabulary) -> Iterator[Span]:
    """Dates, times, phone numbers, IDs, ages and addresses: spans that hold digits."""
    for finder in p.finders:
        if finder.hint is not None and finder.hint.search(folded) is None:
            continue
        group = finder.group
        category = finder.category
        for m in finder.rx.finditer(folded if finder.folded else text):
            if finder.keep is None or finder.keep(m, text, vocab):
                start, end = m.start(group), m.end(group)
                if category is Category.DATE:  # with its weekday: "mardi 26 mars"
                    before = p.weekday_before.search(folded, max(0, start - 24), start)
                    start = before.start() if before is not None else start
                elif category is Category.PHONE:  # with its extension: "... x22", "ext. 213"
                    after = p.extension_after.match(folded, end)
                    end = after.end() if after is not None else end
                    if folded[max(0, start - 2) : start] in ("1-", "1 ", "1.") and (
                        start == 2 or not folded[start - 3].isalnum()
                    ):
                        start -= 2  # the North American "1-800-555-0139"
                yield Span(start, end, category, Basis.PATTERN)


# What makes a match a span (the ``keep`` of a finder).


def _numeric_date(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    a, b, year = int(m[1]), int(m[3]), _year(m[4])
    return _valid_dmy(a, b, year) or _valid_dmy(b, a, year)


def _iso_date(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    return _valid_dmy(int(m[4]), int(m[3]), int(m[1]))


def _compact_date_match(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    digits = m.group()
    return _valid_dmy(int(digits[6:8]), int(digits[4:6]), int(digits[:4]))


def _location(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    """A bed or room the patient is in, not a room they pass through ("waiting room")."""
    before = re.findall(r"[^\W\d_]+", fold(text[max(0, m.start() - 24) : m.start()]))
    return not before or before[-1] not in vocab.location_not_before


def _clock_time(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    """ "14 Uhr", "14.30 Uhr", "um 7 Uhr" are times; "bei 2 Uhr" (a position on a breast or a
    clock face: a bare hour up to 12 without "um", "gegen", "ab" or "bis") is not."""
    if m[2] or int(m[1]) > 12:
        return True
    return _HOUR_SAID.search(fold(text[max(0, m.start() - 12) : m.start()])) is not None


_HOUR_SAID: Final = re.compile(r"(?:um|gegen|ab|bis|seit|ca\.?)\s*$")


_DATE_LIKE: Final = re.compile(r"(?<!\d)(\d{1,2})[./\-](\d{1,2})[./\-](\d{4}|\d{2})$")


def _a_date(text: str) -> bool:
    """Whether ``text`` ends with a valid numeric date (day and month in either order)."""
    m = _DATE_LIKE.search(text)
    if m is None:
        return False
    a, b, year = int(m[1]), int(m[2]), _year(m[3])
    return 1900 <= year <= 2100 and (_valid_dmy(a, b, year) or _valid_dmy(b, a, year))


def _coded_id(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    """Letters and groups of digits with five digits or more ("CKH 0093 4471 20",
    "MFT 4471092", "CP/25/01187"), not a score or a measurement ("MMST 19/30", "BP 98/60",
    "TR 2000 ms")."""
    number = re.split(r"[\- /]", m.group(), maxsplit=1)[-1]
    if len(_digits(m.group())) < 5 or len(_digits(number)) < 4 or _a_date(m.group()):
        return False  # too short ("ISOVUE300/100"), or a date after a word ("MDT 02/12/2025")
    after = _patterns().unit_after.match(text, m.end())
    return after is None


def _said_date(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    """A day and month with no year, where the words before say it is a date."""
    return _patterns().date_said.search(fold(text[max(0, m.start() - 24) : m.start()])) is not None


def _phone_number(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    return 7 <= len(_digits(m.group())) <= 15


_DURATION_BEFORE = re.compile(
    r"(?:\b(?:for|since|over|past|in|within|every|last|seit|vor|nach|fur|in|alle|uber|depuis"
    r"|pendant|dans|sur|apres|avant|pour|les|y\s+a|x)\s*$)"
)
_DURATION_AFTER = re.compile(r"\s*(?:ago|prior|earlier|before|later|zuvor|plus\s+tot)\b")


def _stated_age(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    """An age, not a duration: nothing before it says "for", "seit", "depuis"...; nothing
    after it says "ago"; the short forms ("ans", "Jahre", "J.", "y") only for 1 to 119."""
    before = text[max(0, m.start() - 12) : m.start(1)]
    if _DURATION_BEFORE.search(before) or _DURATION_AFTER.match(text, m.end()):
        return False
    if not 0 < int(m[1]) < 120:
        return False
    unit = text[m.end(1) : m.end()].strip(" -").casefold()
    if unit in _SHORT_AGE_UNITS and int(m[1]) < 90:  # "ans", "J.": where a person is named
        words = text[: m.start(1)].split()
        last = words[-1] if words else ""
        name = last.rstrip(".^,")
        letters = name.replace("-", "").replace("^", "")
        return not words or fold(last) in _AGE_OPENERS or (letters.isalpha() and name.isupper())
    return True


# Units that also measure durations: an age under 90 with one of them only where a person
# is named ("PETIT G. 73 ans", "Patiente de 67 ans"); 90 and over always (HIPAA's rule).
_SHORT_AGE_UNITS = frozenset({"ans", "jahre", "j.", "j", "y", "yr", "yrs", "yr.", "yrs."})
_AGE_OPENERS = frozenset(
    {"de", "von", "patient", "patiente", "patientin", "homme", "femme", "mann", "frau", "aged"}
)


def _keyword_phone(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    return len(_digits(m[1])) >= 5


def _keyword_id(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    return len(_digits(m[1])) >= 3 and not _is_measure(text, m.end(1))


def _generic_id(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    digits = _digits(m.group())
    if _is_measure(text, m.end()):
        return False
    is_date = len(digits) == len(m.group()) and len(digits) in (8, 12, 14)
    return not (is_date and _compact_date(digits))


def _dashed_id(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    return len(_digits(m.group())) >= 6 and not _is_measure(text, m.end())


def _postal_city(m: re.Match[str], text: str, vocab: _Vocabulary) -> bool:
    city = fold(m[1].split()[0])
    return city not in vocab.units and city not in vocab.not_names


def _compact_date(digits: str) -> bool:
    return _valid_dmy(int(digits[6:8]), int(digits[4:6]), int(digits[:4])) and (
        1800 <= int(digits[:4]) <= 2099
    )


def _is_measure(text: str, end: int) -> bool:
    """A number followed by a unit ("12345 ms") is a measurement, not an ID."""
    return bool(_patterns().unit_after.match(text, end))
