"""Free-text cleaning: the identifying spans of a text, found by pattern and by what the
dataset knows, replaced by tokens of similar meaning (``[NAME]``, ``[DATE]``, ...)."""

from dicomveil.cleaners.text.core import (
    DEFAULT_TOKENS,
    TEXT_VRS,
    VR_MAX_LENGTH,
    Basis,
    Category,
    Cleaned,
    Identifiers,
    Replacements,
    Span,
    TextCleaner,
    fold,
)

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
]
