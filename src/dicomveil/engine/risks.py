"""What withholds an object before the walk: content that the profile cannot vouch for.

An encapsulated document, BurnedInAnnotation YES, an image of a kind that often carries
burned-in text without BurnedInAnnotation NO, RecognizableVisualFeatures YES, an SR content
tree: each withholds the object unless the profile allows the risk (``allow``) or an option
cleans it. The reasons name the element, the value class and the option or ``allow`` entry
that would let the object through; never a value of the file beyond enumerated ones (YES,
NO, a modality, a SOP class name).
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.engine.values import element_path, has_pixels, sop_name, text_of
from dicomveil.profiles import CompiledProfile
from dicomveil.standard.actions import Action, Code, dummy_value
from dicomveil.standard.options import Option
from dicomveil.standard.risks import Risk

# Encapsulated Document storage (PDF, CDA, STL, OBJ, MTL): PS3.4 B.5.
ENCAPSULATED_DOCUMENT_PREFIX = "1.2.840.10008.5.1.4.1.1.104."
# Kinds of image that often carry burned-in text when BurnedInAnnotation is not NO.
_BURNED_IN_MODALITIES = frozenset({"US", "IVUS", "OT", "SC", "XC", "ES", "GM", "DOC", "SM"})
_BURNED_IN_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture family
    "1.2.840.10008.5.1.4.1.1.77.1",  # visible light family (endoscopy, photos, slides)
    "1.2.840.10008.5.1.4.1.1.6.",  # ultrasound
    "1.2.840.10008.5.1.4.1.1.3.1",  # ultrasound multi-frame
)


def check_risks(
    profile: CompiledProfile, ds: Dataset, has_pixel_data: bool | None = None
) -> tuple[Risk, str] | None:
    """The first risk that withholds ``ds`` under ``profile``, with the reason.

    Parameters
    ----------
    profile : CompiledProfile
        The profile the object is de-identified with (its options and ``allow`` list).
    ds : pydicom.dataset.Dataset
        The object, as read.
    has_pixel_data : bool, optional
        Whether the object has pixel data that the caller streams separately (not in
        ``ds``); by default the dataset itself is looked at.

    Returns
    -------
    tuple of (Risk, str) or None
        The risk and the reason (what in this file raised it and what would let it
        through), or None when nothing withholds the object.
    """
    if profile.copy:
        return None
    pixels = has_pixels(ds) if has_pixel_data is None else has_pixel_data
    sop_class = text_of(ds, 0x00080016)
    burned = text_of(ds, 0x00280301).upper()
    found: list[tuple[Risk, str]] = []
    if is_encapsulated_document(ds, sop_class):
        what = (
            f"SOP class {sop_name(sop_class)}"
            if sop_class.startswith(ENCAPSULATED_DOCUMENT_PREFIX)
            else "EncapsulatedDocument (0042,0011) present"
        )
        found.append((Risk.ENCAPSULATED_DOCUMENT, f"{what}: {Risk.ENCAPSULATED_DOCUMENT.reason}"))
    if burned == "YES":
        found.append(
            (
                Risk.BURNED_IN_ANNOTATION,
                "BurnedInAnnotation (0028,0301) is YES: text in "
                "the pixels cannot be cleaned without clean-pixel-data",
            )
        )
    tree = content_tree(profile, ds)
    if tree:
        found.append((Risk.STRUCTURED_CONTENT, tree))
    if text_of(ds, 0x00280302).upper() == "YES":
        found.append(
            (
                Risk.RECOGNIZABLE_VISUAL_FEATURES,
                "RecognizableVisualFeatures (0028,0302) is YES: the image may show a face",
            )
        )
    modality = text_of(ds, 0x00080060).upper()
    kinds = []
    if modality in _BURNED_IN_MODALITIES:
        kinds.append(f"Modality {modality}")
    if sop_class.startswith(_BURNED_IN_SOP_PREFIXES):
        kinds.append(f"SOP class {sop_name(sop_class)}")
    clean_pixels = Option.CLEAN_PIXEL_DATA in profile.profile.options
    if clean_pixels and pixels and not kinds:
        # clean-pixel-data looks wider (ImageType, XA, devices with known text regions).
        # Its pixel step (dicomveil.cleaners.pixels) runs before the engine and sets
        # BurnedInAnnotation NO on what it has checked and cleaned. Imported here: only
        # this option needs the pixel step.
        from dicomveil.cleaners.pixels import header_signals

        kinds.extend(header_signals(ds))
    if burned not in ("YES", "NO") and pixels and kinds:
        state = f"is {burned}" if burned else "is absent"
        found.append(
            (
                Risk.POSSIBLE_BURNED_IN,
                f"burned-in text not ruled out: {', '.join(kinds)} "
                f"(an image of a kind that often carries it) and BurnedInAnnotation "
                f"(0028,0301) {state}, not NO",
            )
        )
    allow = profile.profile.allow
    for risk, detail in found:
        if risk not in allow:
            if clean_pixels and risk in (Risk.BURNED_IN_ANNOTATION, Risk.POSSIBLE_BURNED_IN):
                return risk, f"{detail} (clean-pixel-data: the pixels were not checked)"
            return risk, detail
    return None


def is_encapsulated_document(ds: Dataset, sop_class: str) -> bool:
    """An Encapsulated Document object (PDF, CDA, ...), by SOP class or by its element."""
    return sop_class.startswith(ENCAPSULATED_DOCUMENT_PREFIX) or 0x00420011 in ds


def content_tree(profile: CompiledProfile, ds: Dataset) -> str:
    """Why the top-level SR content tree withholds the object, or '' when there is none
    or the profile keeps or cleans it on purpose (clean-structured-content, a rule).
    A profile that keeps what it does not list (the presets) keeps the tree only by
    default: that is not enough for free text about a person."""
    if 0x0040A730 not in ds:
        return ""
    decision = profile.public(0x0040A730)
    explicit = decision is not profile.public_default
    if explicit and decision.code in (Action.KEEP, Action.CLEAN, Code.K, Code.C):
        return ""
    value = ds[0x0040A730].value
    if not isinstance(value, Sequence) or len(value) == 0:
        return ""
    return content_tree_reason((), 0x0040A730, decision.source)


def content_tree_reason(path: tuple[str, ...], tag: int, source: str) -> str:
    """Why an SR content tree withholds the object (checked before the walk at the top
    level, and in the walk wherever else one stands)."""
    return (
        f"{element_path(path, tag)}: an SR content tree ({source}); "
        "clean-structured-content cleans it"
    )


def encapsulated_note(ds: Dataset) -> str:
    """The warning for an encapsulated document a profile allows: never cleaned."""
    what = "encapsulated document allowed by the profile: its content (PDF, CDA, ...) "
    if 0x00420011 not in ds:
        return what + "was not cleaned: removed"
    value = ds.get_item(0x00420011, keep_deferred=True).value
    if value in (None, b"", dummy_value("OB")):
        return what + "was not cleaned: replaced by a dummy value"
    return what + "was not cleaned: kept as it was"
