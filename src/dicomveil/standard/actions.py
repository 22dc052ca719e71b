"""Action codes of PS3.15 Table E.1-1a and what each does to a value of a given VR.

Single codes (PS3.15 Table E.1-1a):

- ``D`` replace with a non-zero-length dummy value consistent with the VR;
- ``Z`` replace with a zero-length value;
- ``X`` remove;
- ``K`` keep (unchanged for non-sequence attributes, cleaned for sequences);
- ``C`` clean: replace with values of similar meaning known not to identify;
- ``U`` replace with a non-zero-length UID that is internally consistent across the set.

Compound codes keep the first action unless IOD conformance needs the next one, which is
decided by the attribute's Type in the IOD of the object being processed:
``Z/D`` (Type 2 vs 1), ``X/Z`` (3 vs 2), ``X/D`` (3 vs 1), ``X/Z/D`` (3 vs 2 vs 1) and
``X/Z/U*`` (sequences of references: removed where optional; where the IOD requires them
(Type 1 or 2) kept with the UIDs inside replaced, rather than emptied, so that the object's
other references to the same instances stay consistent).

``REPLACE`` is dicomveil's own: a custom profile's literal or templated replacement value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dicomveil.errors import ProfileError
from dicomveil.standard.options import Option


class Action(StrEnum):
    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    REPLACE = "R"

    @classmethod
    def parse(cls, name: str | Action) -> Action:
        if isinstance(name, Action):
            return name
        key = name.strip()
        found = _NAMES.get(key.upper()) or _NAMES.get(key.lower())
        if found is None:
            raise ProfileError(
                f"unknown action {name!r} (known: X, Z, D, K, C, U, replace, or a compound "
                "code such as X/Z/D)"
            )
        return found


_NAMES: dict[str, Action] = {
    "X": Action.REMOVE,
    "Z": Action.EMPTY,
    "D": Action.DUMMY,
    "K": Action.KEEP,
    "C": Action.CLEAN,
    "U": Action.UID,
    "R": Action.REPLACE,
    "remove": Action.REMOVE,
    "empty": Action.EMPTY,
    "dummy": Action.DUMMY,
    "keep": Action.KEEP,
    "clean": Action.CLEAN,
    "uid": Action.UID,
    "replace": Action.REPLACE,
}


class Code(StrEnum):
    """A Basic Profile code as written in PS3.15 Table E.1-1, single or compound."""

    X = "X"
    Z = "Z"
    D = "D"
    K = "K"
    C = "C"
    U = "U"
    Z_D = "Z/D"
    X_Z = "X/Z"
    X_D = "X/D"
    X_Z_D = "X/Z/D"
    X_Z_U = "X/Z/U*"

    @property
    def is_compound(self) -> bool:
        return self not in _SINGLE

    @classmethod
    def parse(cls, text: str) -> Code:
        try:
            return cls(text.strip().upper())
        except ValueError:
            raise ProfileError(f"unknown action code {text!r}") from None

    def resolve(self, attribute_type: str | None) -> Action:
        """The single action for an attribute of this Type (1, 1C, 2, 2C, 3) in the IOD.

        ``None`` means the attribute is not defined at that place in the object's IOD (or the
        IOD is unknown): nothing requires it, so the first (most protective) action applies.
        """
        if not self.is_compound:
            return _SINGLE[self]
        parts = [p.rstrip("*") for p in self.value.split("/")]
        if attribute_type is None or attribute_type == "3":
            return _NAMES[parts[0]]
        if self is Code.X_Z_U:
            # A required reference sequence is kept with its UIDs replaced: emptying it would
            # leave the object's other references to those instances dangling.
            return Action.UID
        if attribute_type in ("2", "2C"):
            if "Z" in parts:
                return Action.EMPTY
            # Z is not among the choices: a dummy (or the UIDs replaced) keeps it valid.
            return _NAMES[parts[-1]]
        # Type 1 / 1C needs a non-empty value: the last choice (D or U).
        return _NAMES[parts[-1]]


_SINGLE: dict[Code, Action] = {
    Code.X: Action.REMOVE,
    Code.Z: Action.EMPTY,
    Code.D: Action.DUMMY,
    Code.K: Action.KEEP,
    Code.C: Action.CLEAN,
    Code.U: Action.UID,
}


# VR-valid dummy values (PS3.5 Table 6.2-1). UI dummies are keyed UIDs, made by the engine.
DUMMY_TEXT = "ANONYMIZED"
DUMMY_VALUES: dict[str, object] = {
    "AE": "ANONYMIZED",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "UC": DUMMY_TEXT,
    "UT": DUMMY_TEXT,
    "PN": "ANONYMIZED",
    "UR": "urn:dicomveil:anonymized",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
    "AT": 0,
    "OB": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x00\x00",
    "UN": b"\x00\x00",
}


def dummy_value(vr: str) -> object:
    """A VR-valid, non-empty value that carries no information."""
    try:
        return DUMMY_VALUES[vr]
    except KeyError:
        raise ProfileError(f"no dummy value is defined for VR {vr}") from None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine does to one element, and why."""

    code: Code | Action  # a Code (maybe compound, resolved by Type) or a resolved Action
    source: str
    value: str | None = None  # template for REPLACE
    option: Option | None = None  # the option whose C (clean) column this is
    fallback: Code | None = None  # with C: the Basic Profile code, where the cleaner cannot clean
