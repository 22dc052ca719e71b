"""What cleaning means inside structures: SR content trees, graphic annotations, overlays.

The engine walks a sequence "in a cleaned structure" when an option's C action cleans it
(``clean-structured-content``: Content Sequence, Acquisition Context Sequence, Specimen
Preparation Sequence, Waveform Annotation Sequence; ``clean-graphics``: Graphic Annotation
Sequence; ``clean-descriptors``: its coded sequences), and, with
``clean-structured-content``, the SR Verifying Observer Sequence (Basic Profile D).
Inside, :func:`decision_in_structure` tightens each element's decision:

- person names (PNAME content items, observers) become keyed pseudonyms: the patient's
  name the patient's pseudonym, anyone else a pseudonym of their own
  (:func:`person_pseudonym`), the same in every file;
- free text (TEXT content items, text objects, labels, descriptions) is cleaned like a
  descriptor (:mod:`dicomveil.cleaners.text`); coded entries (Code Value, Coding Scheme
  Designator, ...) are kept, a Code Meaning cleaned of the patient's own values only (a
  local code's "Protocol for Smith"; clinical terms stay);
- dates and times follow the date policy: shifted (``retain-long-modified-dates``), kept
  (``retain-long-full-dates``), otherwise replaced by dummies valid for the VR;
- UIDs and references are mapped as everywhere else; numbers, codes and graphic data stay.

PS3.15 Table E.1-1 still decides what it lists (an X stays X): this only adds to it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from functools import cache
from typing import Final

from pydicom.datadict import get_entry, keyword_for_tag
from pydicom.dataset import Dataset

from dicomveil.cleaners.text import TEXT_VRS, fold
from dicomveil.identity.pseudonyms import Pseudonymizer
from dicomveil.standard import tables
from dicomveil.standard.actions import Action, Code, Decision
from dicomveil.standard.options import Option

# Coded entries (PS3.3 Table 8.8-1 Code Sequence Macro and template identification): kept,
# but a code meaning, cleaned of the patient's own values (:data:`CODE_MEANING`).
CODE_MEANING: Final = 0x00080104
CODE_TAGS: Final = frozenset(
    {
        0x00080100,  # CodeValue
        0x00080102,  # CodingSchemeDesignator
        0x00080103,  # CodingSchemeVersion
        0x00080104,  # CodeMeaning
        0x00080105,  # MappingResource
        0x00080107,  # ContextGroupLocalVersion
        0x0008010B,  # ContextGroupExtensionFlag
        0x0008010D,  # ContextGroupExtensionCreatorUID
        0x0008010F,  # ContextIdentifier
        0x00080119,  # LongCodeValue
        0x00080120,  # URNCodeValue
        0x00080122,  # MappingResourceName
        0x00080123,  # ContextGroupIdentificationSequence
        0x00080124,  # MappingResourceIdentificationSequence
        0x0040A010,  # RelationshipType
        0x0040A040,  # ValueType
        0x0040A050,  # ContinuityOfContent
        0x0040DB00,  # TemplateIdentifier
    }
)

# Basic Profile D sequences whose items clean-structured-content cleans (person names become
# keyed pseudonyms, as in the content tree) rather than the table's dummies: the SR Document
# General Module's observers.
CLEANED_D_SEQUENCES: Final = frozenset({0x0040A073})  # VerifyingObserverSequence

# SR content trees: a D on them cannot keep the document, so they withhold the object unless
# clean-structured-content cleans them or the profile allows structured content.
CONTENT_TREE_SEQUENCES: Final = frozenset({0x0040A730})  # ContentSequence

# The dummy code of a D code sequence (PS3.16 8.2: designators starting with "99" are
# private coding schemes): one item, valid for the Code Sequence Macro.
DUMMY_CODE: Final = ("ANONYMIZED", "99DICOMVEIL", "de-identified")


def is_code_sequence(tag: int) -> bool:
    """A sequence of coded entries (its keyword ends in CodeSequence, as every Code Sequence
    Macro attribute's does)."""
    keyword = keyword_for_tag(tag) or ""
    return keyword.endswith("CodeSequence")


def dummy_code_item() -> Dataset:
    """A new item holding :data:`DUMMY_CODE`."""
    item = Dataset()
    value, scheme, meaning = DUMMY_CODE
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


# What an option also touches beyond its column of Table E.1-1: texts the table does not
# list (the Basic Profile keeps them) that the option's cleaner cleans, and the overlay
# geometry that clean-graphics keeps with the overlay bitmap (the Basic Profile removes the
# whole overlay: its elements are repeating-group entries outside the data dictionary).
EXTRA_TEXT_TAGS: Final[Mapping[Option, tuple[tuple[int, str], ...]]] = {
    Option.CLEAN_GRAPHICS: (
        (0x00700068, "Graphic Layer Description"),
        (0x00700207, "Graphic Group Label"),
        (0x00700208, "Graphic Group Description"),
    ),
    Option.CLEAN_STRUCTURED_CONTENT: ((0x0040A492, "Completion Flag Description"),),
    Option.CLEAN_DESCRIPTORS: (
        (0x00420010, "Document Title"),
        (0x00700081, "Content Description"),
    ),
}
OVERLAY_TEXTS: Final = (
    (0x0022, "Overlay Description"),
    (0x0045, "Overlay Subtype"),
    (0x1500, "Overlay Label"),
)
OVERLAY_GEOMETRY: Final = (
    (0x0010, "Overlay Rows"),
    (0x0011, "Overlay Columns"),
    (0x0015, "Number of Frames in Overlay"),
    (0x0040, "Overlay Type"),
    (0x0050, "Overlay Origin"),
    (0x0051, "Image Frame Origin"),
    (0x0100, "Overlay Bits Allocated"),
    (0x0102, "Overlay Bit Position"),
    (0x1001, "Overlay Activation Layer"),
    (0x1301, "ROI Area"),
    (0x1302, "ROI Mean"),
    (0x1303, "ROI Standard Deviation"),
)

_DATE_VRS: Final = frozenset({"DA", "DT", "TM"})


@cache
def descriptor_tags() -> frozenset[int]:
    """Tags with C in the clean-descriptors column of PS3.15 Table E.1-1."""
    column = Option.CLEAN_DESCRIPTORS.column
    return frozenset(
        int(row.tag, 16)
        for row in tables.e1_1_rows()
        if column is not None
        and row.options.get(column) == "C"
        and len(row.tag) == 8
        and "x" not in row.tag
    )


def decision_in_structure(
    tag: int,
    vr: str,
    decision: Decision,
    *,
    default: Decision,
    keep_dates: bool,
    clean_text: bool = True,
) -> Decision:
    """The decision for an element inside a cleaned structure (see the module docstring).

    ``default`` is the compiled profile's decision for public attributes it does not list;
    ``keep_dates`` is true when dates are kept or shifted rather than replaced;
    ``clean_text`` false (the items of a D sequence, no option cleaning them) replaces free
    text the table does not list by a dummy instead of cleaning it.
    """
    listed = decision is not default
    if vr == "PN":
        if not listed or decision.code in (Action.KEEP, Code.K):
            return Decision(Action.DUMMY, decision.source + " (a name in a cleaned structure)")
        return decision
    if tag == CODE_MEANING and clean_text and vr in TEXT_VRS:
        # a local code's meaning may name the patient ("Protocol for Smith"): the patient's
        # own values are replaced, clinical terms kept (the free-text cleaner's rule)
        return Decision(
            Action.CLEAN,
            decision.source + " (a code meaning in a cleaned structure: the patient's values)",
            option=Option.CLEAN_STRUCTURED_CONTENT,
            fallback=Code.K,
        )
    if vr in TEXT_VRS and vr != "CS" and tag not in CODE_TAGS:
        if not clean_text:
            if listed:
                return decision
            return Decision(Action.DUMMY, decision.source + " (text in a D sequence)")
        if not listed or (tag in descriptor_tags() and decision.code is not Action.KEEP):
            return Decision(
                Action.CLEAN,
                decision.source + " (text in a cleaned structure)",
                option=Option.CLEAN_STRUCTURED_CONTENT,
                fallback=Code.X,
            )
        return decision
    if vr in _DATE_VRS and not listed and not keep_dates:
        return Decision(Action.DUMMY, decision.source + " (a date in a cleaned structure)")
    return decision


def standard_code(item: Dataset) -> bool:
    """Whether a code item is of a standard coding scheme (DCM, SCT, LN, ...): its meaning
    is the standard's words, kept. A local scheme's (a designator "99..." or "L", PS3.16
    8.2; none given) may be a site's free text: cleaned of the patient's own values."""
    try:
        designator = str(item.get(0x00080102).value or "").strip().upper()
    except Exception:  # no designator, or one pydicom cannot read: not a standard one
        return False
    return bool(designator) and not designator.startswith("99") and designator not in _LOCAL


_LOCAL: Final = frozenset({"L", "LOCAL", "PRIVATE"})


def repeater_vr(tag: int, vr: str) -> str:
    """The VR of a repeating-group element (50xx, 60xx) read as UN from an implicit VR file:
    the data dictionary's, binary where it allows OB or OW."""
    if vr != "UN" or (tag >> 16) & 0xFF00 not in (0x5000, 0x6000):
        return vr
    try:
        known = str(get_entry(tag)[0])
    except KeyError:
        return vr
    return "OW" if " or " in known else known


def person_pseudonym(pseudonymizer: Pseudonymizer, name: str) -> str:
    """A keyed pseudonym for a person other than the patient (the same name in any case,
    accents or trailing empty components gives the same pseudonym)."""
    raw = pseudonymizer.digest("person-name", person_key(name))
    return "DVP" + base64.b32encode(raw).decode("ascii")[:11]


def person_key(name: str) -> str:
    """A person name normalised for comparison: folded, components trimmed."""
    group = fold(name).split("=")[0]
    return "^".join(" ".join(c.split()) for c in group.split("^")).rstrip("^")
