"""The Phoenix protocol: the ASCCONV section of a Siemens protocol, parameter lines kept.

The protocol text (the CSA series header's ``MrPhoenixProtocol``; XA's (0021,xx19)) holds an
XProtocol tree, then ``### ASCCONV BEGIN ... ###``, one ``key = value`` line per parameter,
and ``### ASCCONV END ###``. Converters read the ASCCONV lines. :func:`clean_protocol` keeps
the section's markers and the lines :func:`~dicomveil.standard.acquisition.phoenix_policy`
allows, each unchanged (converters read the digits of a line up to its end: a line is kept
whole or not at all); everything else goes, the XProtocol tree with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from dicomveil.standard.acquisition import phoenix_policy

_BEGIN = "### ASCCONV BEGIN"
_END = "### ASCCONV END ###"
_BEGIN_LINE = re.compile(r"^### ASCCONV BEGIN( [A-Za-z]+=[A-Za-z0-9_@%/.]+)* ###$")
_LINE = re.compile(
    r"^(?P<key>[A-Za-z][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[A-Za-z][A-Za-z0-9_]*(?:\[\d+\])?)*)"
    r"\s*=\s*(?P<value>\S(?:.*\S)?)\s*$"
)
_INDEX = re.compile(r"\[\d+\]")
_NUMBER = re.compile(r"^-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)$")


def clean_protocol(text: str, keep_text: Callable[[str], bool]) -> str:
    """The ASCCONV section of ``text``, only its allowed lines; empty when it has none.

    Parameters
    ----------
    text : str
        The protocol text.
    keep_text : callable
        Whether a quoted text value may be kept (none of the file's identifying values).

    Returns
    -------
    str
        A line break, ``### ASCCONV BEGIN ###``, the kept lines and ``### ASCCONV END ###``,
        joined by line breaks; ``""`` when the text has no ASCCONV section.
    """
    start = text.find(_BEGIN)
    if start < 0:
        return ""
    end = text.find(_END, start)
    section = text[start : end if end >= 0 else len(text)].splitlines()
    begin = section[0].strip() if _BEGIN_LINE.match(section[0].strip()) else "### ASCCONV BEGIN ###"
    kept = [begin]
    kept.extend(line for line in section[1:] if _allowed(line, keep_text))
    kept.append(_END)
    # A line break first: a reader that skips the first byte of a text protocol (dcm2niix
    # does, for XA's) still finds the section's marker.
    return "\n" + "\n".join(kept)


def _allowed(line: str, keep_text: Callable[[str], bool]) -> bool:
    match = _LINE.match(line)
    if match is None:
        return False
    policy = phoenix_policy()
    key = _INDEX.sub("", match["key"])
    value = match["value"]
    if _NUMBER.match(value):
        known = key.split(".", 1)[0] in policy.numeric_families or key in policy.numeric_keys
        return known and keep_number(value, keep_text)
    if policy.text_pattern.match(value) and any(
        key == suffix or key.endswith("." + suffix) for suffix in policy.text_keys
    ):
        return keep_text(value.strip('"'))
    return False


_DATE_LIKE = re.compile(r"^(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])$")


def keep_number(value: str, keep_text: Callable[[str], bool]) -> bool:
    """Whether a number may be kept: not one of the file's identifying values, and not
    shaped like a date (``20180810``: scanners write study dates into numeric parameters;
    when unsure, it goes).

    Parameters
    ----------
    value : str
        The number as written.
    keep_text : callable
        Whether a text holds none of the file's identifying values.

    Returns
    -------
    bool
        True when it may be kept.
    """
    digits = value.lstrip("-").split(".", 1)[0]
    return not _DATE_LIKE.match(digits) and keep_text(value)
