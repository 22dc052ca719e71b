"""The de-identification engine: walks a dataset and applies a compiled profile."""

from dicomveil.engine.core import (
    CLASS_UID_TAGS,
    CLEANERS,
    Cleaning,
    ElementReport,
    Engine,
    Result,
)

__all__ = [
    "CLASS_UID_TAGS",
    "CLEANERS",
    "Cleaning",
    "ElementReport",
    "Engine",
    "Result",
]
