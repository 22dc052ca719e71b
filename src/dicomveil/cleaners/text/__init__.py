"""Free-text cleaning: the identifying spans of a text, found by pattern and by what the
dataset knows, replaced by tokens of similar meaning (``[NAME]``, ``[DATE]``, ...).

Two kinds of recognizer find the spans:

- **dataset-aware** (:class:`Identifiers`, built from one file by
  :meth:`Identifiers.from_dataset`): every identifying value of the patient that the file
  holds, at any depth: person names and their parts (in any case and order, with or without
  accents or umlaut transliteration, with their initials), IDs and accession numbers, dates
  in the common written formats, phone numbers (compared by their digits), e-mail
  addresses, addresses, institution, department and station names. Knowledge is per file:
  a value that only another file of the same patient holds is not known.
- **patterns**, with no context: dates (numeric, and with English, German or French month
  names: "5 March 2024", "3. März 2024", "3 mars 2024"), times, phone and fax numbers,
  e-mail addresses, URLs, ID- and MRN-like numbers, UIDs, titled names ("Dr. X",
  "Prof. Dr. med. X", "Herr/Frau X", "M./Mme X"), names after labels ("Referring: X",
  "seen by X Y"), names with degrees ("X Y, MD"), DICOM person names ("SMITH^JOHN"), street
  addresses and postal codes, ages over 89.

Numbers with units, sequence names and parameters ("T1 MPRAGE sag 1mm", "DWI b1000",
"TR 2300") are left alone. When a span could identify, it goes: privacy first. No
named-entity model is used: a name that no pattern cues and the file does not hold stays.

:class:`TextCleaner` replaces spans by the tokens of :class:`Replacements` (a profile's
``[clean]`` table). :class:`Cleaned` reports positions, categories and counts, never the
removed values; nothing here logs.

The modules, from the bottom up:

- :mod:`~dicomveil.cleaners.text.spans`: :class:`Span`, :class:`Category`, :class:`Basis`;
- :mod:`~dicomveil.cleaners.text.replacements`: :class:`Replacements`, the default tokens;
- :mod:`~dicomveil.cleaners.text.vocabulary`: :func:`fold`, word boundaries, the word lists;
- :mod:`~dicomveil.cleaners.text.variants`: how a known value may be written;
- :mod:`~dicomveil.cleaners.text.identifiers`: :class:`Identifiers` and their search;
- :mod:`~dicomveil.cleaners.text.patterns`: the recognizers with no context;
- :mod:`~dicomveil.cleaners.text.names`: person names found by their cues;
- :mod:`~dicomveil.cleaners.text.cleaner`: :class:`TextCleaner`, :class:`Cleaned`, the text
  VRs and their maximum lengths.

Code outside this package imports from :mod:`dicomveil.cleaners.text` only.
"""

from dicomveil.cleaners.text.cleaner import TEXT_VRS, VR_MAX_LENGTH, Cleaned, TextCleaner
from dicomveil.cleaners.text.identifiers import Identifiers
from dicomveil.cleaners.text.replacements import DEFAULT_TOKENS, Replacements
from dicomveil.cleaners.text.spans import Basis, Category, Span
from dicomveil.cleaners.text.vocabulary import fold, not_names

__all__ = [
    "DEFAULT_TOKENS",
    "TEXT_VRS",
    "VR_MAX_LENGTH",
    "Basis",
    "Category",
    "Cleaned",
    "Identifiers",
    "Replacements",
    "Span",
    "TextCleaner",
    "fold",
    "not_names",
]
