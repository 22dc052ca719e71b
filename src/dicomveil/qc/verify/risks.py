"""Risk flags: content a reviewer must look at, reported even where the profile allows it
(BurnedInAnnotation not NO, kept free text and private elements, encapsulated documents,
overlays, SR content trees)."""

from __future__ import annotations

from typing import Final

from dicomveil.qc.verify.context import _FileState
from dicomveil.qc.verify.elements import (
    _ENCAPSULATED_DOCUMENT,
    _PIXEL_TAGS,
    _Data,
    _keyword,
    _label,
    _text,
)
from dicomveil.qc.verify.report import RiskKind

_ENCAPSULATED_PREFIX: Final = "1.2.840.10008.5.1.4.1.1.104."
_SOP_CLASS_UID: Final = 0x00080016
_BURNED_IN: Final = 0x00280301
_RECOGNIZABLE: Final = 0x00280302
_CONTENT_SEQUENCE: Final = 0x0040A730
_ENCRYPTED_ATTRIBUTES: Final = 0x04000500


def _risks(check: _FileState, ds: _Data) -> None:
    pixels = any(t in ds for t in _PIXEL_TAGS)
    burned = _text(ds, _BURNED_IN).upper()
    if pixels and burned != "NO":
        check.flag(
            "BurnedInAnnotation",
            RiskKind.BURNED_IN_ANNOTATION,
            "an image whose BurnedInAnnotation is not NO: text in the pixels is possible",
        )
    if _text(ds, _RECOGNIZABLE).upper() == "YES":
        check.flag(
            "RecognizableVisualFeatures",
            RiskKind.RECOGNIZABLE_VISUAL_FEATURES,
            "RecognizableVisualFeatures is YES: the image may show a face",
        )
    sop_class = _text(ds, _SOP_CLASS_UID)
    if sop_class.startswith(_ENCAPSULATED_PREFIX) or _ENCAPSULATED_DOCUMENT in ds:
        check.flag(
            "EncapsulatedDocument",
            RiskKind.ENCAPSULATED_DOCUMENT,
            "an encapsulated document: its content cannot be vouched for",
        )
    for tag in ds.elements:
        if (tag >> 16) & 0xFF01 == 0x6000 and tag & 0xFFFF == 0x3000:
            check.flag(
                _label(tag, _keyword(tag), ""),
                RiskKind.OVERLAY,
                "overlay data: review it for text",
            )
    if _CONTENT_SEQUENCE in ds:
        check.flag(
            "ContentSequence",
            RiskKind.STRUCTURED_CONTENT,
            "an SR content tree: review its text",
        )
    if _ENCRYPTED_ATTRIBUTES in ds and not check.ctx.rules.reversible:
        check.flag(
            "EncryptedAttributesSequence",
            RiskKind.ENCRYPTED_ATTRIBUTES,
            "an Encrypted Attributes Sequence the profile did not ask for (no reversible "
            "option): whoever holds its recipients' keys can read what it seals",
        )
    for block, count in sorted(check.blocks.items()):
        check.flag(block, RiskKind.PRIVATE_ELEMENTS, f"{count} private element(s) kept")
