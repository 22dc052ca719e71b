"""What withholds an object: content that a profile cannot vouch for unless it allows it.

A profile's ``allow`` list names these; the engine's risk checks and the pixel step report
them, each with a reason that never holds a value of the file.
"""

from __future__ import annotations

from enum import StrEnum


class Risk(StrEnum):
    """Objects withheld unless a profile explicitly allows them."""

    BURNED_IN_ANNOTATION = "burned-in-annotation"
    POSSIBLE_BURNED_IN = "possible-burned-in-annotation"
    RECOGNIZABLE_VISUAL_FEATURES = "recognizable-visual-features"
    ENCAPSULATED_DOCUMENT = "encapsulated-document"
    STRUCTURED_CONTENT = "structured-content"

    @property
    def reason(self) -> str:
        return _RISK_REASONS[self]


_RISK_REASONS = {
    Risk.BURNED_IN_ANNOTATION: "BurnedInAnnotation is YES: text in the pixels cannot be cleaned",
    Risk.POSSIBLE_BURNED_IN: "burned-in text not ruled out: an image of a kind that often "
    "carries it (ultrasound, secondary capture, photograph, ...) without BurnedInAnnotation NO",
    Risk.RECOGNIZABLE_VISUAL_FEATURES: "RecognizableVisualFeatures is YES: the image may show "
    "a face",
    Risk.ENCAPSULATED_DOCUMENT: "encapsulated document (PDF, CDA, ...): its content cannot be "
    "cleaned",
    Risk.STRUCTURED_CONTENT: "structured content (SR content tree) cannot be vouched for by "
    "this profile",
}
