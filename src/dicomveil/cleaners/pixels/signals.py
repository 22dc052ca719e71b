"""Header signals: which images may carry burned-in text, from their header alone.

Burned In Annotation, modality, SOP class, Image Type, conversion type and devices with known
text regions (:mod:`dicomveil.cleaners.pixels.rules`) decide whether the pixel step looks at
an image; images without any signal are left to the engine.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicomveil.cleaners.pixels.header import BURNED_IN, header_text, header_values
from dicomveil.cleaners.pixels.rules import PixelRules

# What a modality says about text in the pixels.
_MODALITIES = {
    "US": "ultrasound",
    "IVUS": "intravascular ultrasound",
    "SC": "secondary capture",
    "OT": "modality OT",
    "XA": "X-ray angiography",
    "RF": "radio fluoroscopy",
    "ES": "endoscopy",
    "XC": "external-camera photograph",
    "GM": "general microscopy",
    "SM": "slide microscopy",
    "DOC": "document",
    "OP": "ophthalmic photograph",
}
_SOP_PREFIXES = (
    ("1.2.840.10008.5.1.4.1.1.7", "secondary capture"),
    ("1.2.840.10008.5.1.4.1.1.77.1", "visible light image"),
    ("1.2.840.10008.5.1.4.1.1.6.", "ultrasound"),
    ("1.2.840.10008.5.1.4.1.1.3.1", "ultrasound multi-frame"),
    ("1.2.840.10008.5.1.4.1.1.12.", "X-ray angiography or fluoroscopy"),
)
_IMAGE_TYPE_WORDS = ("SECONDARY", "SCREEN", "CAPTURE")


def header_signals(ds: Dataset, rules: PixelRules | None = None) -> tuple[str, ...]:
    """Tell why an image may carry burned-in text, from its header alone.

    Parameters
    ----------
    ds : Dataset
        The image's header.
    rules : PixelRules or None
        The rectangle rules in use (default: the bundled ones); a matching rule is a signal.

    Returns
    -------
    tuple[str, ...]
        The signals found, as short reasons that quote no values beyond enumerated ones
        (YES, a modality, a SOP class name); empty when nothing suggests text.
    """
    signals: list[str] = []
    if header_text(ds, BURNED_IN).upper() == "YES":
        signals.append("BurnedInAnnotation YES")
    modality = header_text(ds, 0x00080060).upper()
    if modality in _MODALITIES:
        signals.append(_MODALITIES[modality])
    sop_class = header_text(ds, 0x00080016)
    for prefix, what in _SOP_PREFIXES:
        if sop_class.startswith(prefix) and what not in signals:
            signals.append(what)
    words = [str(v).upper() for v in header_values(ds.get(0x00080008))]
    for word in _IMAGE_TYPE_WORDS:
        if any(word in w for w in words):
            signals.append(f"ImageType {word}")
    if header_text(ds, 0x00080064):
        signals.append("ConversionType present (secondary capture)")
    for rule in (rules or PixelRules.bundled()).matching(ds):
        signals.append(f"known text regions (rule {rule.name})")
    return tuple(signals)
