"""Header values as the pixel step reads them: forgiving, never raising on a malformed value."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

BURNED_IN = 0x00280301  # Burned In Annotation


def header_text(ds: Dataset, tag: int) -> str:
    """Read an element's value as one text.

    Parameters
    ----------
    ds : Dataset
        The dataset.
    tag : int
        The element's tag.

    Returns
    -------
    str
        The value stripped of padding (several values joined by ``\\``); empty when the
        element is absent, empty or cannot be read.
    """
    try:
        elem = ds.get(tag)
        if elem is None or elem.value is None:
            return ""
        value = elem.value
        if isinstance(value, bytes):
            return value.decode("ascii", "replace").strip("\x00 ")
        if isinstance(value, list | tuple):
            return "\\".join(str(v) for v in value)
        return str(value).strip()
    except Exception:
        return ""


def header_int(ds: Dataset, tag: int) -> int | None:
    """The value of element ``tag`` of ``ds`` as a whole number; None when the element is
    absent, empty or not a number."""
    try:
        elem = ds.get(tag)
        return None if elem is None or elem.value is None else int(elem.value)
    except (TypeError, ValueError):
        return None


def header_values(elem: Any) -> list[Any]:
    """Read an element's values as a list.

    Parameters
    ----------
    elem : DataElement or None
        The element (as ``Dataset.get`` returns it).

    Returns
    -------
    list
        Its non-empty values; none for an absent or empty element, or one that cannot be
        read.
    """
    try:
        value = None if elem is None else elem.value
    except Exception:
        return []
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes | int | float):
        return [value]
    return [v for v in value if v not in (None, "")]
