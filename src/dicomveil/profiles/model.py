"""Profiles: named presets and custom TOML files, composed and compiled into a lookup.

A :class:`Profile` is immutable and valid by construction: an unknown tag, keyword, action,
option or key is a :class:`~dicomveil.errors.ProfileError` when it loads, naming the file and
the entry. :meth:`Profile.compile` turns it, once per run, into a :class:`CompiledProfile`:
dictionaries from tag (or private creator, group and element) to a :class:`Decision` that
the engine looks up per element.

Composition, in order (later wins):

1. the base: ``ps3.15`` (every row of PS3.15 Table E.1-1, Basic Profile column), ``keep``
   (everything kept unless a rule says otherwise) or ``copy`` (a byte-identical copy);
2. each option's column of Table E.1-1, in the order of :class:`~dicomveil.standard.options.Option`;
   where two options touch one attribute, ``K`` wins over ``C`` (the user asked to keep it);
3. the safe-private list (PS3.15 Table E.3.10-1) and TCIA's list, when their options are on;
4. the rules of the profile and of the profiles it extends, the most derived last.

Profile file format (TOML)::

    name = "my-study"                  # optional: defaults to the file name
    description = "what and why"
    extends = "ps3.15-basic"           # a named profile or a path relative to this file
    options = ["retain-uids", "RetainLongitudinalTemporalInformationFullDatesOption"]
    allow = ["burned-in-annotation"]   # risks to let through instead of withholding
    references = "keep"                # X/Z/U* reference sequences: keep (UIDs replaced)
                                       # or remove (where the IOD does not require them)
    private = "remove"                 # private elements no rule matches: remove | keep

    [[rules]]
    keyword = "SeriesDescription"      # or tag = "0008,103E", tag = "60xx,4000",
    action = "K"                       # or private = {creator = "...", group = "0029",
    reason = "needed for BIDS"         #               element = "xx10"}

    [[rules]]
    tag = "0008,0022"
    action = "replace"
    value = "{today}"                  # templates: {pseudonym} {today} {patient_id_hash}
                                       #            {issuer_hash}

    [clean]                            # tokens of the clean-* options' free-text cleaner
    replacement = "[REDACTED]"         # every category, or per category: name id date time
    name = "[PERSON]"                  # phone email url address institution age
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pydicom.config
from pydicom.datadict import (
    dictionary_has_tag,
    dictionary_VR,
    repeater_has_tag,
    tag_for_keyword,
)
from pydicom.valuerep import validate_value

from dicomveil.cleaners.text import Replacements
from dicomveil.errors import ProfileError
from dicomveil.standard import tables
from dicomveil.standard.actions import Action, Code, Decision
from dicomveil.standard.options import EXCLUSIVE, Option
from dicomveil.standard.risks import Risk


class Base(StrEnum):
    """What a profile starts from before its options and rules."""

    PS315 = "ps3.15"
    KEEP = "keep"
    COPY = "copy"


TEMPLATE_FIELDS = ("pseudonym", "today", "patient_id_hash", "issuer_hash")
_TEMPLATE_SAMPLE = {
    "pseudonym": "DVABCDEFGHIJKL",
    "today": "20000101",
    "patient_id_hash": "0" * 32,
    "issuer_hash": "0" * 32,
}
_TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class Target:
    """What a rule applies to: one tag, a repeating-group element, or a private element."""

    tag: int | None = None  # a public tag
    group_pattern: int | None = None  # 0x5000 or 0x6000: every even group 50xx / 60xx
    element: int | None = None  # with group_pattern: the element; None = every element
    creator: str | None = None  # private: creator, group and low byte of the element
    group: int | None = None
    offset: int | None = None

    @property
    def label(self) -> str:
        if self.tag is not None:
            return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"
        if self.group_pattern is not None:
            element = "xxxx" if self.element is None else f"{self.element:04X}"
            return f"({self.group_pattern >> 8:02X}xx,{element})"
        return f'({self.group:04X},"{self.creator}",xx{self.offset:02X})'

    @property
    def vr(self) -> str | None:
        """The dictionary VR where the target fixes one, else None."""
        tag = self.tag
        if tag is None and self.group_pattern is not None and self.element is not None:
            tag = (self.group_pattern << 16) | self.element
        if tag is None or not known_tag(tag):
            return None
        vr = dictionary_VR(tag)
        return None if " or " in vr else vr


@dataclass(frozen=True, slots=True)
class Rule:
    """One custom rule of a profile."""

    target: Target
    action: Action | Code
    value: str | None = None
    reason: str = ""
    source: str = ""


@dataclass(frozen=True)
class Profile:
    """A named, validated de-identification profile."""

    name: str
    description: str = ""
    source: str = ""
    base: Base = Base.PS315
    options: frozenset[Option] = frozenset()
    rules: tuple[Rule, ...] = ()
    allow: frozenset[Risk] = frozenset()
    keep_private: bool = False
    clean: Replacements = field(default_factory=Replacements)  # free-text cleaner tokens
    # X/Z/U* reference sequences: kept with their UIDs replaced (False), or removed where
    # the IOD does not require them (True: ``references = "remove"``).
    remove_references: bool = False

    def __post_init__(self) -> None:
        for group in EXCLUSIVE:
            both = group & self.options
            if len(both) > 1:
                names = " and ".join(sorted(o.value for o in both))
                raise ProfileError(f"options {names} cannot be combined", source=self.name)
        if self.base is Base.COPY and (self.rules or self.options):
            raise ProfileError("a byte-identical copy takes no rules or options", source=self.name)

    @classmethod
    def named(cls, name: str) -> Profile:
        """A preset by name (see :func:`preset_names`) or a TOML file by path."""
        return load_profile(name)

    @classmethod
    def from_file(cls, path: str | Path) -> Profile:
        return _load_file(Path(path), ())

    def with_options(self, options: Iterable[str | Option]) -> Profile:
        """The same profile with more options."""
        extra = frozenset(Option.parse(o) for o in options)
        if not extra - self.options:
            return self
        names = ",".join(sorted(o.value for o in extra))
        return replace(self, options=self.options | extra, name=f"{self.name}+{names}")

    def compile(self) -> CompiledProfile:
        return _compile(self)

    @property
    def digest(self) -> str:
        """A hash of the compiled content (rules, options, tables): same digest, same output."""
        return self.compile().digest


@dataclass(frozen=True)
class CompiledProfile:
    """A profile turned into lookups; built once per run."""

    profile: Profile
    tags: Mapping[int, Decision]
    group_patterns: Mapping[tuple[int, int | None], Decision]
    private: Mapping[tuple[str, int, int], Decision]
    private_default: Decision
    public_default: Decision
    unknown_public: Decision
    replace_uids: bool
    shift_dates: bool
    digest: str = field(default="")
    _memo: dict[int, Decision] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def copy(self) -> bool:
        return self.profile.base is Base.COPY

    def public(self, tag: int) -> Decision:
        """The decision for a public (even group) tag; memoised per process."""
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


def known_tag(tag: int) -> bool:
    """In the DICOM data dictionary, repeating groups (50xx, 60xx, 7Fxx) included."""
    return bool(dictionary_has_tag(tag) or repeater_has_tag(tag))


# --------------------------------------------------------------------------------------------
# Loading


def preset_names() -> tuple[str, ...]:
    files = resources.files("dicomveil.profiles").joinpath("presets")
    return tuple(
        sorted(p.name.removesuffix(".toml") for p in files.iterdir() if p.name.endswith(".toml"))
    )


def load_profile(name_or_path: str | Path) -> Profile:
    """A preset by name, or a TOML profile file by path."""
    text = str(name_or_path)
    if text in preset_names():
        return _load_preset(text)
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        return _load_file(path, ())
    known = ", ".join(preset_names())
    raise ProfileError(f"unknown profile {text!r} (known: {known}, or a path to a .toml file)")


@cache
def _load_preset(name: str) -> Profile:
    data = resources.files("dicomveil.profiles").joinpath("presets", f"{name}.toml").read_bytes()
    return _from_toml(tomllib.loads(data.decode("utf-8")), f"preset {name}", None, ())


def _load_file(path: Path, chain: tuple[str, ...]) -> Profile:
    key = str(path.resolve())
    if key in chain:
        raise ProfileError("profiles extend each other in a cycle", source=str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read the profile ({exc.strerror})", source=str(path)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"not valid TOML: {exc}", source=str(path)) from None
    return _from_toml(data, str(path), path.parent, (*chain, key))


_TOP_KEYS = {
    "name",
    "description",
    "source",
    "base",
    "extends",
    "options",
    "allow",
    "private",
    "rules",
    "clean",
    "references",
}
_RULE_KEYS = {"tag", "keyword", "private", "action", "value", "reason"}


def _from_toml(
    data: dict[str, Any], source: str, folder: Path | None, chain: tuple[str, ...]
) -> Profile:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ProfileError(f"unknown key(s) {', '.join(sorted(unknown))}", source=source)
    parent: Profile | None = None
    if "extends" in data:
        if "base" in data:
            raise ProfileError("use either 'extends' or 'base', not both", source=source)
        parent = _resolve_extends(_str(data, "extends", source), source, folder, chain)
        if parent.base is Base.COPY:
            raise ProfileError(
                "cannot extend a byte-identical copy", source=source, entry="extends"
            )
    if parent is None:
        try:
            base = Base(_str(data, "base", source) if "base" in data else "ps3.15")
        except ValueError:
            raise ProfileError(
                f"unknown base {data['base']!r} (known: ps3.15, keep, copy)",
                source=source,
                entry="base",
            ) from None
        parent = Profile(name="", base=base, keep_private=base is not Base.PS315)
    options = set(parent.options)
    for i, item in enumerate(_list(data, "options", source)):
        try:
            options.add(Option.parse(str(item)))
        except ProfileError as exc:
            raise ProfileError(str(exc), source=source, entry=f"options[{i}]") from None
    allow = set(parent.allow)
    for i, item in enumerate(_list(data, "allow", source)):
        try:
            allow.add(Risk(str(item)))
        except ValueError:
            known = ", ".join(r.value for r in Risk)
            raise ProfileError(
                f"unknown risk {item!r} (known: {known})", source=source, entry=f"allow[{i}]"
            ) from None
    keep_private = not _removes(data, "private", source, not parent.keep_private)
    remove_references = _removes(data, "references", source, parent.remove_references)
    clean = parent.clean
    if "clean" in data:
        clean = clean.merged(Replacements.parse(data["clean"], source))
    rules = list(parent.rules)
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ProfileError("must be an array of tables ([[rules]])", source=source, entry="rules")
    for i, raw in enumerate(raw_rules):
        rules.append(_parse_rule(raw, source, f"rules[{i}]"))
    default_name = Path(source).stem if folder is not None else source
    try:
        return Profile(
            name=str(data.get("name", default_name)),
            description=str(data.get("description", parent.description)),
            source=str(data.get("source", parent.source or source)),
            base=parent.base,
            options=frozenset(options),
            rules=tuple(rules),
            allow=frozenset(allow),
            keep_private=keep_private,
            clean=clean,
            remove_references=remove_references,
        )
    except ProfileError as exc:
        raise ProfileError(str(exc), source=source) from None


def _resolve_extends(
    name: str, source: str, folder: Path | None, chain: tuple[str, ...]
) -> Profile:
    if name in preset_names():
        return _load_preset(name)
    if folder is not None:
        path = (folder / name) if not Path(name).is_absolute() else Path(name)
        if path.exists():
            return _load_file(path, chain)
    raise ProfileError(f"extends unknown profile {name!r}", source=source, entry="extends")


def _removes(data: dict[str, Any], key: str, source: str, default: bool) -> bool:
    """A ``keep`` / ``remove`` setting: True for remove; ``default`` when absent."""
    if key not in data:
        return default
    value = _str(data, key, source)
    if value not in ("keep", "remove"):
        raise ProfileError("must be 'keep' or 'remove'", source=source, entry=key)
    return value == "remove"


def _str(data: dict[str, Any], key: str, source: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ProfileError("must be a string", source=source, entry=key)
    return value


def _list(data: dict[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ProfileError("must be a list", source=source, entry=key)
    return value


_TAG = re.compile(r"^\(?\s*([0-9A-Fa-fxX]{4})\s*,\s*([0-9A-Fa-fxX]{4})\s*\)?$")


def _parse_rule(raw: Any, source: str, entry: str) -> Rule:
    if not isinstance(raw, dict):
        raise ProfileError("a rule must be a table", source=source, entry=entry)
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ProfileError(
            f"unknown key(s) {', '.join(sorted(unknown))}", source=source, entry=entry
        )
    selectors = [k for k in ("tag", "keyword", "private") if k in raw]
    if len(selectors) != 1:
        raise ProfileError(
            "a rule needs exactly one of tag, keyword or private", source=source, entry=entry
        )
    try:
        target = _parse_target(selectors[0], raw[selectors[0]])
        action_text = raw.get("action")
        if not isinstance(action_text, str):
            raise ProfileError("a rule needs an action")
        action: Action | Code
        action = Code.parse(action_text) if "/" in action_text else Action.parse(action_text)
        value = raw.get("value")
        if action is Action.REPLACE:
            if not isinstance(value, str):
                raise ProfileError("action 'replace' needs a string value")
            if target.vr == "SQ":
                raise ProfileError("a sequence cannot be replaced by a value; use X, Z or K")
            _check_template(value, target.vr)
        elif value is not None:
            raise ProfileError("only action 'replace' takes a value")
        if action is Action.CLEAN:
            raise ProfileError(
                "action C needs an option's cleaner; use an option such as "
                "clean-descriptors instead"
            )
    except ProfileError as exc:
        raise ProfileError(str(exc), source=source, entry=entry) from None
    reason = str(raw.get("reason", ""))
    return Rule(target, action, value, reason, f"{source} {entry}")


def _parse_target(kind: str, value: Any) -> Target:
    if kind == "keyword":
        if not isinstance(value, str):
            raise ProfileError("keyword must be a string")
        tag = tag_for_keyword(value.strip())
        if tag is None:
            raise ProfileError(f"unknown keyword {value!r}")
        return Target(tag=tag)
    if kind == "tag":
        if not isinstance(value, str):
            raise ProfileError("tag must be a string such as '0010,0010'")
        match = _TAG.match(value.strip())
        if not match:
            raise ProfileError(f"not a tag: {value!r} (write 'GGGG,EEEE')")
        group_text, element_text = match[1].upper(), match[2].upper()
        if group_text in ("50XX", "60XX"):
            element = None if element_text == "XXXX" else _hex(element_text, value)
            return Target(group_pattern=int(group_text[:2], 16) << 8, element=element)
        group, element_ = _hex(group_text, value), _hex(element_text, value)
        if group & 1:
            raise ProfileError(
                f"{value} is private: match it by private creator with "
                "private = {creator = ..., group = ..., element = ...}"
            )
        tag = (group << 16) | element_
        if not known_tag(tag) and not _in_table(tag):
            raise ProfileError(f"unknown tag {value!r} (not in the DICOM data dictionary)")
        return Target(tag=tag)
    if not isinstance(value, dict) or set(value) != {"creator", "group", "element"}:
        raise ProfileError("private must be {creator = ..., group = ..., element = ...}")
    creator = str(value["creator"]).strip()
    group = _hex(str(value["group"]), str(value))
    element_text = str(value["element"]).upper()
    if element_text.startswith("XX"):
        element_text = element_text[2:]
    offset = _hex(element_text, str(value)) & 0xFF
    if not creator or not group & 1 or group < 0x0009:
        raise ProfileError("private needs a creator and an odd group from 0009")
    return Target(creator=creator, group=group, offset=offset)


def _hex(text: str, where: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise ProfileError(f"not hexadecimal in {where!r}") from None


@cache
def _table_tags() -> frozenset[int]:
    return frozenset(int(r.tag, 16) for r in tables.e1_1_rows() if _is_single(r.tag))


def _in_table(tag: int) -> bool:
    return tag in _table_tags()


def _is_single(tag: str) -> bool:
    return len(tag) == 8 and "x" not in tag.lower() and tag != "private"


def _check_template(value: str, vr: str | None) -> None:
    for name in _TEMPLATE_FIELD.findall(value):
        if name not in TEMPLATE_FIELDS:
            raise ProfileError(
                f"unknown template field {{{name}}} (known: "
                + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                + ")"
            )
    if vr is not None:
        sample = render_template(value, _TEMPLATE_SAMPLE)
        try:
            validate_value(vr, sample, pydicom.config.RAISE)
        except ValueError:
            raise ProfileError(f"value {value!r} is not valid for VR {vr}") from None


def render_template(value: str, fields: Mapping[str, str]) -> str:
    return _TEMPLATE_FIELD.sub(lambda m: fields[m[1]], value)


# --------------------------------------------------------------------------------------------
# Compiling


@cache
def _compile(profile: Profile) -> CompiledProfile:
    tags: dict[int, Decision] = {}
    patterns: dict[tuple[int, int | None], Decision] = {}
    private: dict[tuple[str, int, int], Decision] = {}
    ps315 = profile.base is Base.PS315
    keep = Decision(Action.KEEP, "not in PS3.15 Table E.1-1: kept")
    if ps315:
        private_default = Decision(Code.X, "PS3.15 Table E.1-1 private attributes: X")
        unknown_public = Decision(
            Action.REMOVE, "not in the DICOM data dictionary: cannot be vouched for, removed"
        )
        for row in tables.e1_1_rows():
            decision = _row_decision(row, profile.options, profile.remove_references)
            if row.tag == "private":
                private_default = decision
            elif row.tag == "50xxxxxx":
                patterns[(0x5000, None)] = decision
            elif row.tag.startswith("60xx"):
                patterns[(0x6000, int(row.tag[4:], 16))] = decision
            else:
                tags[int(row.tag, 16)] = decision
        if private_default.code is Action.CLEAN and Option.RETAIN_SAFE_PRIVATE in profile.options:
            for safe in tables.safe_private_rows():
                private[(safe.creator, safe.group, safe.offset)] = Decision(
                    Action.KEEP,
                    "PS3.15 Table E.3.10-1 safe private attribute (retain-safe-private)",
                )
            private_default = Decision(Action.REMOVE, "private attribute not on the safe list")
        if Option.RETAIN_TCIA_PRIVATE in profile.options:
            _add_tcia(private, profile.options)
        _add_clean_extras(profile.options, tags, patterns)
    else:
        keep = Decision(Action.KEEP, f"{profile.base.value} profile: not changed by a rule")
        unknown_public = keep
        private_default = keep
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
    if Option.RETAIN_PATIENT_ID_HASH in profile.options:
        # The option replaces the default pseudonym; a rule with another value still wins.
        for tag, template in ((0x00100020, "{patient_id_hash}"), (0x00100021, "{issuer_hash}")):
            current = tags.get(tag)
            if current is None or current.value in (None, "{pseudonym}"):
                tags[tag] = Decision(Action.REPLACE, "option retain-patient-id-hash", template)
    replace_uids = ps315 and Option.RETAIN_UIDS not in profile.options
    shift_dates = ps315 and Option.RETAIN_LONG_MODIFIED_DATES in profile.options
    compiled = CompiledProfile(
        profile=profile,
        tags=tags,
        group_patterns=patterns,
        private=private,
        private_default=private_default,
        public_default=keep,
        unknown_public=unknown_public,
        replace_uids=replace_uids,
        shift_dates=shift_dates,
    )
    return replace(compiled, digest=_digest(compiled))


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
    from dicomveil.cleaners.structured import EXTRA_TEXT_TAGS, OVERLAY_GEOMETRY, OVERLAY_TEXTS

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
    blob = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
