"""What the profile demands, read from its data (base, options, rules) and the tables of
:mod:`dicomveil.standard.tables` (PS3.15 Table E.1-1, Table E.3.10-1), never from the engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar

from dicomveil.profiles import Base, Profile
from dicomveil.qc.verify.elements import _DATE_VRS, _dictionary_vr, _entry, _keyword, _Node
from dicomveil.qc.verify.forms import _NEEDLE_KEYWORDS, _NEEDLE_VRS, _VOCABULARY_KEYWORDS
from dicomveil.standard import acquisition, tables
from dicomveil.standard.options import Option

_K = TypeVar("_K")
_V = TypeVar("_V")
_PATIENT_ID: Final = 0x00100020
_ISSUER: Final = 0x00100021
_FREE_TEXT_VRS: Final = frozenset({"LO", "LT", "SH", "ST", "UC", "UT"})


@dataclass(frozen=True, slots=True)
class _Expect:
    """What may be present: letters of PS3.15 Table E.1-1a and two of ours.

    ``X`` absent, ``Z`` empty, ``D`` a dummy, ``U`` a new UID, ``K`` anything, ``C`` cleaned
    (anything), ``R`` a replacement (not the original), ``S`` a shifted date (not the
    original), ``M`` the modified-dates option's C: ``S`` for dates, ``K`` for the rest.
    """

    allowed: frozenset[str]
    why: str
    explicit: bool = False  # kept on purpose (an option's K, a rule, a keep-all profile)
    value: str | None = None  # a rule's literal replacement (no template field)
    wholesale: bool = False  # kept because a list profile keeps all it does not list


def _letters(code: str) -> frozenset[str]:
    return frozenset(code.replace("*", "").split("/"))


_KEEP_DEFAULT: Final = _Expect(frozenset("K"), "not in PS3.15 Table E.1-1: kept")
_UNKNOWN: Final = _Expect(frozenset("X"), "not in the DICOM data dictionary: never kept")


@dataclass(frozen=True)
class _Rules:
    """Verify's own reading of a :class:`Profile`."""

    name: str
    copy: bool
    ps315: bool
    shift_dates: bool
    temporal_kept: bool  # a retain-long option: times of day stay
    replace_uids: bool
    keep_private: bool
    # By tag, and by (group base, element or None: any) for the repeating groups 50xx, 60xx.
    placed: Mapping[int | tuple[int, int | None], _Expect]
    private: Mapping[tuple[str, int, int], _Expect]
    private_default: _Expect
    public_default: _Expect
    unknown_public: _Expect
    descriptors: frozenset[int]
    reversible: bool  # the reversible option: an Encrypted Attributes Sequence is asked for
    # Remembered: the same tags, VRs and creators come back in every file. The walks look
    # them up as dicts, with no call on the common path.
    skip: _Lookup[tuple[int, str | None], bool] = field(init=False, compare=False, repr=False)
    decided: _Lookup[tuple[int, str, str], tuple[_Expect, frozenset[str]]] = field(
        init=False, compare=False, repr=False
    )

    # Public elements of an output that need only be valid (see the output walk).
    passable: _Lookup[tuple[int, str], int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip", _Lookup(self._unwanted))
        object.__setattr__(self, "decided", _Lookup(self._decide))
        object.__setattr__(self, "passable", _Lookup(self._passable))

    def _passable(self, key: tuple[int, str]) -> int:
        """2 for a group length (no content), 1 for a public element of an output whose
        value the profile keeps or cleans, that is no UID, no sequence and no free text
        the risk flags look at: its validity is all that is checked. 0 otherwise."""
        tag, vr = key
        group = tag >> 16
        if group & 1 or vr == "SQ" or vr == "UI":
            return 0
        if tag & 0xFFFF == 0 and group != 0x0002:
            return 2
        letters = self.decided[(tag, vr, "")][1]
        return 1 if ("K" in letters or "C" in letters) and tag not in self.descriptors else 0

    @classmethod
    def of(cls, profile: Profile) -> _Rules:
        options = profile.options
        ps315 = profile.base is Base.PS315
        placed: dict[int | tuple[int, int | None], _Expect] = {}
        private: dict[tuple[str, int, int], _Expect] = {}
        keep_all = _Expect(
            frozenset("K"), f"{profile.base.value} profile: kept", explicit=True, wholesale=True
        )
        private_default = _Expect(frozenset("X"), "private attributes are removed")
        descriptors: set[int] = set()
        if ps315:
            enabled = [o for o in Option if o in options and o.column is not None]
            for row in tables.e1_1_rows():
                expect = _row_expect(row, options, enabled)
                place = row.place
                if place is None:
                    private_default = expect
                    continue
                placed[place] = expect
                if (
                    isinstance(place, int)
                    and "clean_descriptors" in row.options
                    and _dictionary_vr(place) in _FREE_TEXT_VRS
                ):
                    descriptors.add(place)
            if Option.RETAIN_SAFE_PRIVATE in options:
                for safe in tables.safe_private_rows():
                    private[(safe.creator, safe.group, safe.offset)] = _Expect(
                        frozenset("K"), "PS3.15 Table E.3.10-1 safe private", explicit=True
                    )
                private_default = _Expect(frozenset("X"), "private attribute not on the safe list")
            if Option.RETAIN_TCIA_PRIVATE in options:
                _add_tcia(private, options)
            if Option.RETAIN_ACQUISITION_PARAMETERS in options:
                _add_acquisition(private)
        if profile.keep_private:
            private_default = _Expect(frozenset("K"), "the profile keeps private attributes", True)
        for rule in profile.rules:
            action = rule.action.value
            letters = frozenset("R") if action == "R" else _letters(action)
            literal = rule.value if rule.value is not None and "{" not in rule.value else None
            expect = _Expect(
                letters, f"rule {rule.source}", explicit=letters == {"K"}, value=literal
            )
            target = rule.target
            if target.tag is not None:
                placed[target.tag] = expect
            elif target.group_pattern is not None:
                placed[(target.group_pattern, target.element)] = expect
            elif target.creator is not None and target.group is not None:
                private[(target.creator, target.group, target.offset or 0)] = expect
        if Option.RETAIN_PATIENT_ID_HASH in options:
            for tag in (_PATIENT_ID, _ISSUER):
                placed[tag] = _Expect(frozenset("R"), "option retain-patient-id-hash")
        return cls(
            name=profile.name,
            copy=profile.base is Base.COPY,
            ps315=ps315,
            shift_dates=ps315 and Option.RETAIN_LONG_MODIFIED_DATES in options,
            temporal_kept=bool(
                options & {Option.RETAIN_LONG_MODIFIED_DATES, Option.RETAIN_LONG_FULL_DATES}
            ),
            replace_uids=ps315 and Option.RETAIN_UIDS not in options,
            keep_private=profile.keep_private or profile.base is Base.COPY,
            placed=placed,
            private=private,
            private_default=private_default,
            public_default=_KEEP_DEFAULT if ps315 else keep_all,
            unknown_public=_UNKNOWN if ps315 else keep_all,
            descriptors=frozenset(descriptors),
            reversible=Option.REVERSIBLE in options,
        )

    def public(self, tag: int) -> _Expect:
        found = self.placed.get(tag)
        if found is not None:
            return found
        group = tag >> 16
        if (group & 0xFF00) in (0x5000, 0x6000):
            base = group & 0xFF00
            found = self.placed.get((base, tag & 0xFFFF)) or self.placed.get((base, None))
            if found is not None:
                return found
        if _entry(tag) is not None:
            return self.public_default
        return self.unknown_public

    def unwanted(self, tag: int, vr: str | None) -> bool:
        """Whether a public input element can hold neither a needle nor a value the output
        must not keep (most elements: the input walk skips them). ``vr`` is the walk's, or
        as a reader read it: None in implicit VR, or UN, then stand for the VR the walk gives
        (:func:`~.elements._vr_of`: the dictionary's, unless it has none or several)."""
        return self.skip[(tag, vr)]

    def _unwanted(self, key: tuple[int, str | None]) -> bool:
        tag, vr = key
        if vr is None or vr == "UN":
            known = _dictionary_vr(tag)
            vr = known if known and " or " not in known else "UN"
        keyword = _keyword(tag)
        letters = self.resolve(self.public(tag), vr)
        return not (
            vr in _NEEDLE_VRS
            or vr == "SQ"
            or keyword in _NEEDLE_KEYWORDS
            or keyword.endswith("ID")
            or _replaced(letters)
            or ("K" in letters and (vr == "CS" or keyword in _VOCABULARY_KEYWORDS))
        )

    def private_element(self, creator: str, tag: int) -> _Expect:
        found = self.private.get((creator, tag >> 16, tag & 0xFF))
        return found if found is not None else self.private_default

    def decide(self, node: _Node) -> tuple[_Expect, frozenset[str]]:
        """What may be present in the element, and the letters for its VR."""
        return self.decided[(node.tag, node.vr, node.creator)]

    def _decide(self, key: tuple[int, str, str]) -> tuple[_Expect, frozenset[str]]:
        tag, vr, creator = key
        expect = _expect_of(self, tag, creator)
        return expect, self.resolve(expect, vr)

    def resolve(self, expect: _Expect, vr: str) -> frozenset[str]:
        """The letters that apply to an element of this VR (dates under modified dates)."""
        allowed = expect.allowed
        if "M" in allowed:
            return frozenset("S") if vr in _DATE_VRS else frozenset("K")
        if self.shift_dates and vr in _DATE_VRS and "K" in allowed and not expect.explicit:
            return frozenset("S")  # every date of a patient moves (README: modified dates)
        return allowed


def _row_expect(row: tables.TableRow, options: frozenset[Option], enabled: list[Option]) -> _Expect:
    why = f"PS3.15 Table E.1-1 {row.name}: {row.basic}"
    kept = [o for o in enabled if row.options.get(str(o.column)) == "K"]
    if not kept and row.basic == "U" and Option.RETAIN_UIDS in options:
        kept = [Option.RETAIN_UIDS]  # PS3.15 E.3.9: every UID is retained
    if kept:
        return _Expect(frozenset("K"), f"{why}, {kept[0].value}: K", explicit=True)
    cleaned = [o for o in enabled if row.options.get(str(o.column)) == "C"]
    if Option.RETAIN_LONG_MODIFIED_DATES in cleaned:
        return _Expect(frozenset("M"), f"{why}, retain-long-modified-dates: C")
    if cleaned:
        return _Expect(_letters(row.basic) | {"C"}, f"{why}, {cleaned[0].value}: C")
    walkers = [o for o in _STRUCTURE_CLEANERS if o in options]
    if walkers and row.options.get("clean_descriptors") == "C":
        # The options that clean structures (SR trees, waveform and graphic annotations)
        # clean the descriptor texts inside them (README, "Cleaning free text, SR and
        # overlays"); the checks here do not know where an element is, so a cleaned value
        # is allowed wherever the attribute stands. The leak search still covers it.
        return _Expect(
            _letters(row.basic) | {"C"}, f"{why}, cleaned inside a structure ({walkers[0].value})"
        )
    return _Expect(_letters(row.basic), why)


_STRUCTURE_CLEANERS: Final = (Option.CLEAN_STRUCTURED_CONTENT, Option.CLEAN_GRAPHICS)


def _add_acquisition(private: dict[tuple[str, int, int], _Expect]) -> None:
    """retain-acquisition-parameters: its listed elements may stay (cleaned containers and
    text: anything, their bytes still searched for the originals' values)."""
    for entry in acquisition.private_parameters():
        why = f"acquisition parameter {entry.name} (retain-acquisition-parameters)"
        letter = "C" if entry.handling is acquisition.Handling.CLEAN else "K"
        for creator in entry.creators:
            key = (creator, entry.group, entry.offset)
            if letter == "C" or key not in private:
                private[key] = _Expect(frozenset(letter), why, explicit=letter == "K")


def _add_tcia(private: dict[tuple[str, int, int], _Expect], options: frozenset[Option]) -> None:
    dates = options & {Option.RETAIN_LONG_MODIFIED_DATES, Option.RETAIN_LONG_FULL_DATES}
    shift = Option.RETAIN_LONG_MODIFIED_DATES in options
    for key, disposition in tables.tcia_private().items():
        if key in private:
            continue
        why = f"TCIA private tag knowledge base: {disposition}"
        if disposition == "keep":
            private[key] = _Expect(frozenset("K"), why, explicit=True)
        elif disposition == "hash":
            private[key] = _Expect(frozenset("U"), why)
        elif disposition == "date-shift" and dates:
            private[key] = _Expect(frozenset("S" if shift else "K"), why, explicit=not shift)


def _replaced(letters: frozenset[str]) -> bool:
    """Whether the profile demands a value other than the original (if any value)."""
    return "K" not in letters and "C" not in letters and bool(letters & {"D", "U", "R", "S"})


def _expect_of(rules: _Rules, tag: int, creator: str) -> _Expect:
    if tag >> 16 & 1:
        if not creator:
            return _Expect(frozenset("X"), "private element without a private creator")
        return rules.private_element(creator, tag)
    if tag >> 16 == 0x0002:
        return _Expect(frozenset("K"), "file meta")
    return rules.public(tag)


class _Lookup(dict[_K, _V]):
    """A dict that computes what it lacks (once): ``lookup[key]``."""

    __slots__ = ("_compute",)

    def __init__(self, compute: Callable[[_K], _V]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, key: _K) -> _V:
        value = self[key] = self._compute(key)
        return value
