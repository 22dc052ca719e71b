"""The vocabulary of a profile: its base, the targets and rules it names, the value
templates of ``replace`` rules, and the parsing of one rule entry of a TOML profile."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

import pydicom.config
from pydicom.datadict import dictionary_has_tag, dictionary_VR, repeater_has_tag, tag_for_keyword
from pydicom.valuerep import validate_value

from dicomveil.errors import ProfileError
from dicomveil.standard import tables
from dicomveil.standard.actions import Action, Code


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


def known_tag(tag: int) -> bool:
    """Whether ``tag`` is in the DICOM data dictionary (repeating groups 50xx, 60xx, 7Fxx
    included)."""
    return bool(dictionary_has_tag(tag) or repeater_has_tag(tag))


_TAG = re.compile(r"^\(?\s*([0-9A-Fa-fxX]{4})\s*,\s*([0-9A-Fa-fxX]{4})\s*\)?$")


def parse_rule(raw: Mapping[str, Any], source: str, entry: str) -> Rule:
    """One ``[[rules]]`` entry, its shape already checked (see
    :class:`dicomveil.profiles.profile_file.RuleEntry`), turned into a :class:`Rule`.

    Parameters
    ----------
    raw : Mapping
        The entry's keys that were set (tag, keyword or private; action; value; reason).
    source : str
        The profile, named in errors.
    entry : str
        The entry (``rules[2]``), named in errors.

    Returns
    -------
    Rule
        The rule.

    Raises
    ------
    ProfileError
        An unknown keyword, tag, action or template field, a value that is not valid for
        the VR, or a value where the action takes none.
    """
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
            check_template(value, target.vr)
        elif value is not None:
            raise ProfileError("only action 'replace' takes a value")
        if action is Action.UID and target.vr not in (None, "UI", "SQ"):
            raise ProfileError(
                f"action U replaces UIDs, and {target.label} has VR {target.vr}; use X, Z, D or K"
            )
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


def check_template(value: str, vr: str | None) -> None:
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
    """A ``replace`` rule's template with its fields filled in.

    Parameters
    ----------
    value : str
        The template (``{pseudonym}``, ``{today}``, ``{patient_id_hash}``, ``{issuer_hash}``).
    fields : Mapping of str to str
        The value of each field for the dataset at hand.

    Returns
    -------
    str
        The rendered value.
    """
    return _TEMPLATE_FIELD.sub(lambda m: fields[m[1]], value)
