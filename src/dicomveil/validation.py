"""Shared pieces of the configuration loaders (profiles, pixel rules, the gateway): where in
a file a pydantic error is, written the way users write TOML keys.

Each loader validates the shape of its file with pydantic models (``extra="forbid"``) and
turns every :class:`pydantic.ValidationError` into its own :mod:`dicomveil.errors` error
naming the file and the entry; this module holds what they share.
"""

from __future__ import annotations

from collections.abc import Sequence


def key_path(loc: Sequence[int | str], *, first: int = 0) -> str:
    """The key path of a pydantic error location.

    Parameters
    ----------
    loc : sequence of int or str
        Keys and 0-based array indexes, as pydantic locates an error.
    first : int
        The number of the first array item in the text (the gateway counts from 1).

    Returns
    -------
    str
        For example ``rules[2].keyword``; empty for the whole file.
    """
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part + first}]"
        else:
            text += f".{part}" if text else part
    return text
