"""A profile compiled into lookups: the decision for every element, built once per run.

Composition, in order (later wins): the base (PS3.15 Table E.1-1's Basic Profile column,
or keep everything); each option's column; the safe-private and TCIA lists with their
options; the clean options' extras; the rules of the profile and of those it extends; the
identity templates of :file:`identity.toml`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from dicomveil.cleaners.structured import EXTRA_TEXT_TAGS, OVERLAY_GEOMETRY, OVERLAY_TEXTS
from dicomveil.errors import ProfileError
from dicomveil.profiles.rules import Base, check_template, known_tag
from dicomveil.standard import acquisition, tables
from dicomveil.standard.actions import Action, Code, Decision
from dicomveil.standard.options import Option

if TYPE_CHECKING:
    from dicomveil.profiles.model import Profile

IDENTITY_SOURCE = "dicomveil/profiles/identity.toml"


@dataclass(frozen=True)
class CompiledProfile:
    """A profile turned into lookups; built once per run.

    What follows from the profile alone (``replace_uids``, ``shift_dates``, the dummies'
    templates, the digest) is set when it is made.
    """

    profile: Profile
    tags: Mapping[int, Decision]
    group_patterns: Mapping[tuple[int, int | None], Decision]
    private: Mapping[tuple[str, int, int], Decision]
    private_default: Decision
    public_default: Decision
    unknown_public: Decision
    # A profile that lists attributes by name and keeps private elements: what its rules for
    # the acquisition date (DA) and date-time (DT) do to private values of that VR too.
    private_dates: Mapping[str, Decision] = field(default_factory=dict)
    replace_uids: bool = field(init=False)
    shift_dates: bool = field(init=False)
    # D on these tags writes this template (profiles/identity.toml [dummy]).
    dummies: Mapping[int, str] = field(init=False)
    dummies_source: str = field(default=IDENTITY_SOURCE, init=False)
    digest: str = field(init=False)
    _memo: dict[int, Decision] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        ps315 = self.profile.base is Base.PS315
        options = self.profile.options
        object.__setattr__(self, "replace_uids", ps315 and Option.RETAIN_UIDS not in options)
        shift_dates = ps315 and Option.RETAIN_LONG_MODIFIED_DATES in options
        object.__setattr__(self, "shift_dates", shift_dates)
        object.__setattr__(self, "dummies", identity_templates("dummy"))
        object.__setattr__(self, "digest", _digest(self))

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def copy(self) -> bool:
        return self.profile.base is Base.COPY

    def public(self, tag: int) -> Decision:
        """The decision for the public (even group) tag ``tag``; memoised per process."""
        tag = int(tag)  # a pydicom BaseTag compares in Python: look up a plain int
        found = self._memo.get(tag)
        if found is None:
            found = self._memo[tag] = self._public(tag)
        return found

    def _public(self, tag: int) -> Decision:
        found = self.tags.get(tag)
        if found is not None:
            return found
        group = tag >> 16
        if 0x5000 <= group <= 0x60FF and (group & 0xFF00) in (0x5000, 0x6000):
            base = group & 0xFF00
            element = tag & 0xFFFF
            found = self.group_patterns.get((base, element)) or self.group_patterns.get(
                (base, None)
            )
            if found is not None:
                return found
        if known_tag(tag):
            return self.public_default
        return self.unknown_public


@cache
def compile_profile(profile: Profile) -> CompiledProfile:
    """Turn ``profile`` into the lookups the engine uses (cached per profile): decisions by
    tag, by repeating-group pattern and by private creator, the defaults, the identity
    templates, and a digest of it all."""
    tags: dict[int, Decision] = {}
    patterns: dict[tuple[int, int | None], Decision] = {}
    private: dict[tuple[str, int, int], Decision] = {}
    ps315 = profile.base is Base.PS315
    public_default = Decision(Action.KEEP, "not in PS3.15 Table E.1-1: kept")
    if ps315:
        private_default = Decision(Code.X, "PS3.15 Table E.1-1 private attributes: X")
        unknown_public = Decision(
            Action.REMOVE, "not in the DICOM data dictionary: cannot be vouched for, removed"
        )
        for row in tables.e1_1_rows():
            decision = _row_decision(row, profile.options, profile.remove_references)
            place = row.place
            if place is None:
                private_default = decision
            elif isinstance(place, tuple):
                patterns[place] = decision
            else:
                tags[place] = decision
        if private_default.code is Action.CLEAN and Option.RETAIN_SAFE_PRIVATE in profile.options:
            for safe in tables.safe_private_rows():
                private[(safe.creator, safe.group, safe.offset)] = Decision(
                    Action.KEEP,
                    "PS3.15 Table E.3.10-1 safe private attribute (retain-safe-private)",
                )
            private_default = Decision(Action.REMOVE, "private attribute not on the safe list")
        if Option.RETAIN_TCIA_PRIVATE in profile.options:
            _add_tcia(private, profile.options)
        if Option.RETAIN_ACQUISITION_PARAMETERS in profile.options:
            _add_acquisition(private)
        _add_clean_extras(profile.options, tags, patterns)
    else:
        public_default = Decision(
            Action.KEEP, f"{profile.base.value} profile: not changed by a rule"
        )
        unknown_public = private_default = public_default
    if not ps315 or profile.keep_private:
        private_default = Decision(
            Action.KEEP if profile.keep_private else Action.REMOVE,
            "profile default for private attributes",
        )
    for rule in profile.rules:
        reason = f"rule {rule.source}" + (f" ({rule.reason})" if rule.reason else "")
        decision = Decision(rule.action, reason, rule.value)
        target = rule.target
        if target.tag is not None:
            tags[target.tag] = decision
        elif target.group_pattern is not None:
            patterns[(target.group_pattern, target.element)] = decision
        else:
            assert target.creator is not None and target.group is not None
            assert target.offset is not None
            private[(target.creator, target.group, target.offset)] = decision
    if not ps315:
        _follow_into_frames(tags)
    if Option.RETAIN_PATIENT_ID_HASH in profile.options:
        # The option replaces the default pseudonym; a rule with another value still wins.
        for tag, template in identity_templates("retain-patient-id-hash").items():
            current = tags.get(tag)
            if current is None or current.value in (None, "{pseudonym}"):
                tags[tag] = Decision(Action.REPLACE, "option retain-patient-id-hash", template)
    private_dates: dict[str, Decision] = {}
    if not ps315 and private_default.code is Action.KEEP:
        for vr, tag in (("DA", _ACQUISITION_DATE), ("DT", 0x0008002A)):
            follows = tags.get(tag)
            if follows is not None:
                why = f"{follows.source}; a private {vr}, as {keyword_for_tag(tag)}"
                private_dates[vr] = Decision(follows.code, why, follows.value)
    return CompiledProfile(
        profile,
        tags,
        patterns,
        private,
        private_default,
        public_default,
        unknown_public,
        private_dates,
    )


@cache
def identity_templates(table: str) -> Mapping[int, str]:
    """Tag -> template of one table of ``identity.toml`` (``dummy``, an option's name)."""
    data = tomllib.loads(
        resources.files("dicomveil.profiles").joinpath("identity.toml").read_text("utf-8")
    )
    found: dict[int, str] = {}
    for keyword, template in data[table].items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ProfileError(f"unknown keyword {keyword!r}", source=IDENTITY_SOURCE, entry=table)
        check_template(str(template), None)
        found[tag] = str(template)
    return MappingProxyType(found)


def _row_decision(
    row: tables.TableRow, options: frozenset[Option], remove_references: bool = False
) -> Decision:
    code = Code.parse(row.basic)
    source = f"PS3.15 Table E.1-1 {row.name}: {row.basic}"
    chosen: Decision = Decision(code, source)
    if code is Code.X_Z_U and not remove_references:
        # U is one of the table's choices for every Type: the reference stays, its UIDs
        # replaced consistently with the objects it references (no privacy cost).
        chosen = Decision(Action.UID, f"{source} (U: kept, UIDs replaced)")
    kept = False
    for option in Option:
        column = option.column
        if column is None or option not in options:
            continue
        value = row.options.get(column)
        if value == "K":
            chosen = Decision(Action.KEEP, f"{source}, {option.value}: K")
            kept = True
        elif value == "C" and not kept:
            chosen = Decision(
                Action.CLEAN, f"{source}, {option.value}: C", option=option, fallback=code
            )
    if not kept and code is Code.U and Option.RETAIN_UIDS in options:
        # PS3.15 E.3.9: the option retains UIDs; the table's column omits two U rows (UID
        # (0040,A124) of SR content items, Digital Signature UID), which would otherwise be
        # replaced while the same UIDs are kept where other elements reference them.
        chosen = Decision(Action.KEEP, f"{source}, retain-uids: K (PS3.15 E.3.9)")
    return chosen


def _add_clean_extras(
    options: frozenset[Option],
    tags: dict[int, Decision],
    patterns: dict[tuple[int, int | None], Decision],
) -> None:
    """What the clean options touch beyond their columns (see dicomveil.cleaners.structured)."""

    def clean(option: Option, name: str) -> Decision:
        return Decision(
            Action.CLEAN,
            f"{name}: not in PS3.15 Table E.1-1, {option.value}: C",
            option=option,
            fallback=Code.X,
        )

    def remove(name: str, why: str) -> Decision:
        return Decision(Code.X, f"{name}: {why}; removed (privacy first)")

    for option, extras in EXTRA_TEXT_TAGS.items():
        for tag, name in extras:
            if option in options:
                tags.setdefault(tag, clean(option, name))
            else:
                # Emptied, not removed: some are Type 2 (Content Description in presentation
                # states), and an empty value is valid for every Type 2 and 3 attribute.
                tags.setdefault(
                    tag,
                    Decision(
                        Code.Z_D,
                        f"{name}: free text not in PS3.15 Table E.1-1; emptied, or a dummy "
                        "where the IOD requires a value (privacy first): Z/D",
                    ),
                )
    # The Basic Profile removes Overlay Data (60xx,3000): the rest of the overlay plane, its
    # free-text label and description included, goes with it unless clean-graphics keeps it.
    patterns.setdefault((0x6000, None), remove("overlay plane", "its Overlay Data is removed"))
    if Option.CLEAN_GRAPHICS in options:
        for element, name in OVERLAY_TEXTS:
            patterns.setdefault((0x6000, element), clean(Option.CLEAN_GRAPHICS, name))
        for element, name in OVERLAY_GEOMETRY:
            patterns.setdefault(
                (0x6000, element),
                Decision(Action.KEEP, f"{name}: overlay geometry, clean-graphics: K"),
            )


def _add_tcia(private: dict[tuple[str, int, int], Decision], options: frozenset[Option]) -> None:
    shift = Option.RETAIN_LONG_MODIFIED_DATES in options
    full = Option.RETAIN_LONG_FULL_DATES in options
    for (creator, group, offset), disposition in tables.tcia_private().items():
        key = (creator, group, offset)
        if key in private:
            continue
        source = f"TCIA private tag knowledge base: {disposition} (retain-tcia-private)"
        if disposition == "keep":
            private[key] = Decision(Action.KEEP, source)
        elif disposition == "hash":
            private[key] = Decision(Action.UID, source)
        elif disposition == "date-shift" and (shift or full):
            private[key] = Decision(Action.KEEP, source)
        # remove, date-shift-integer and date-shift without a date option: the default (X).


# Attributes of Enhanced objects (the acquisition date and time, and per frame, in their
# functional groups) and the image-level attribute whose rule they follow in a profile that
# lists attributes by name (issue 14): a preset that replaces the acquisition date must not
# leave it in the acquisition date and time, nor in every frame's.
_FRAME_FOLLOWS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (0x0008002A, (0x00080022,)),  # AcquisitionDateTime (Enhanced objects) as AcquisitionDate
    (0x00189074, (0x0008002A, 0x00080022)),  # FrameAcquisitionDateTime
    (0x00189151, (0x0008002A, 0x00080022)),  # FrameReferenceDateTime
    (0x00189516, (0x0008002A, 0x00080022)),  # StartAcquisitionDateTime
    (0x00189517, (0x0008002A, 0x00080022)),  # EndAcquisitionDateTime
    (0x00209158, (0x00204000,)),  # FrameComments follow ImageComments
)


_ACQUISITION_DATE, _ACQUISITION_TIME, _COMMENTS = 0x00080022, 0x00080032, 0x00209158
TIME_OF_DAY = "{time_of_day}"
"""A replacement's field, for date-times only: the time of day of the value it replaces."""


def _follow_into_frames(tags: dict[int, Decision]) -> None:
    """Give per-frame attributes the rule of the image-level attribute they repeat, where
    the profile names that one and not them (a date replacement becomes the frame's
    date, without a time)."""
    for frame_tag, sources in _FRAME_FOLLOWS:
        if frame_tag in tags:
            continue
        source_tag = next((t for t in sources if t in tags), None)
        if source_tag is None:
            continue
        decision = tags[source_tag]
        keyword = keyword_for_tag(source_tag)
        value = decision.value
        if value is not None and source_tag == _ACQUISITION_DATE and frame_tag != _COMMENTS:
            # A date-time takes the date and keeps the time of day, unless the profile
            # replaces the acquisition time too.
            time_rule = tags.get(_ACQUISITION_TIME)
            if time_rule is not None and time_rule.code is Action.REPLACE and time_rule.value:
                value += time_rule.value
            else:
                value += TIME_OF_DAY
        code = decision.code
        if frame_tag != _COMMENTS and isinstance(code, Code) and code.is_compound:
            # The frame's date-times are Type 1C in the Frame Content macro, where the IOD
            # types of nested attributes are not looked up: the dummy, never a removal.
            code = Code.D
        tags[frame_tag] = Decision(
            code,
            f"{decision.source}; as {keyword} (issue 14)",
            value,
            decision.option,
            decision.fallback,
        )


def _add_acquisition(private: dict[tuple[str, int, int], Decision]) -> None:
    """retain-acquisition-parameters: numbers kept, private sequences kept (their items
    walked), text and containers cleaned; a cleaning decision overrides a keep of another
    list (the CSA headers are never kept unparsed)."""
    option = Option.RETAIN_ACQUISITION_PARAMETERS
    for entry in acquisition.private_parameters():
        source = f"{entry.vendor} {entry.name}: read by converters ({option})"
        for creator in entry.creators:
            key = (creator, entry.group, entry.offset)
            if entry.handling is acquisition.Handling.CLEAN:
                private[key] = Decision(Action.CLEAN, source, option=option, fallback=Code.X)
            else:
                private.setdefault(key, Decision(Action.KEEP, source))


def _digest(compiled: CompiledProfile) -> str:
    def enc(d: Decision) -> list[str | None]:
        return [d.code.value, d.value, d.option.value if d.option else None]

    p = compiled.profile
    content = {
        "base": p.base.value,
        "options": sorted(o.value for o in p.options),
        "allow": sorted(r.value for r in p.allow),
        "clean": p.clean.describe(),
        "tags": {f"{k:08X}": enc(v) for k, v in sorted(compiled.tags.items())},
        "patterns": {f"{k[0]:04X},{k[1]}": enc(v) for k, v in compiled.group_patterns.items()},
        "private": {"|".join(map(str, k)): enc(v) for k, v in sorted(compiled.private.items())},
        "defaults": [
            enc(compiled.private_default),
            enc(compiled.public_default),
            enc(compiled.unknown_public),
        ],
        "tables": tables.table_digest(),
        "edition": tables.EDITION,
    }
    if p.generalize.active:
        content["generalize"] = p.generalize.describe()
    blob = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
