"""The vocabulary of ``diff``: the kinds of change, how files were matched, and the path of an
element (its steps, each a public element, a private creator or a private element)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from pydicom.datadict import keyword_for_tag, private_dictionary_description

__all__ = ["ChangeKind", "MatchMethod", "Step", "StepKind", "StepPath"]


class ChangeKind(StrEnum):
    """What de-identification did to one element (in the order reports list them)."""

    REMOVED = "removed"
    EMPTIED = "emptied"
    REPLACED = "replaced"
    SHIFTED = "shifted"
    KEPT = "kept"
    ADDED = "added"


_KIND_ORDER = {kind: i for i, kind in enumerate(ChangeKind)}


class MatchMethod(StrEnum):
    """How an original file was paired with its de-identified file."""

    UID_MAP = "uid map"
    SAME_UID = "same UID"
    CONTENT = "content"
    GIVEN = "given"  # the caller knows the pair (the audit trail's input and output)


class StepKind(IntEnum):
    """What one step of an element's path names (the order sorts a group's elements)."""

    PUBLIC = 0
    CREATOR = 1
    PRIVATE = 2
    ORPHAN = 3  # a private element without its creator, or a private group length


@dataclass(frozen=True)
class Step:
    """One level of an element's path.

    Public elements (and private ones without a creator) are named by their tag; private
    creators by ``(group, creator)``; private elements by ``(group, creator, offset)``, so an
    element whose block moved (``0019,10xx`` to ``0019,11xx``) is still the same element.

    Attributes
    ----------
    kind : StepKind
        What the step names.
    group : int
        The tag's group.
    element : int
        The tag's element; the offset (0x00-0xFF) of a private element.
    creator : str
        The private creator of a private creator or element.
    occurrence : int
        Tells apart a creator that appears twice in one group (0 for the first).
    """

    kind: StepKind
    group: int
    element: int  # the tag's element; the offset (0x00-0xFF) of a private element
    creator: str = ""
    occurrence: int = 0

    @property
    def sort_key(self) -> tuple[int, int, str, int, int]:
        """The step's place in tag order: public elements, then private blocks by creator,
        then elements without a creator."""
        if self.kind is StepKind.PUBLIC:
            return (self.group, 0, "", 0, self.element)
        if self.kind is StepKind.ORPHAN:
            return (self.group, 2, "", 0, self.element)
        offset = -1 if self.kind is StepKind.CREATOR else self.element
        return (self.group, 1, self.creator, self.occurrence, offset)

    @property
    def text(self) -> str:
        """``(0010,0010)``, ``(0019,"SIEMENS MR HEADER")``, ``(0019,"SIEMENS MR HEADER",0C)``."""
        if self.kind in (StepKind.PUBLIC, StepKind.ORPHAN):
            return f"({self.group:04X},{self.element:04X})"
        creator = self.creator.replace('"', "'")
        if self.occurrence:
            creator += f"#{self.occurrence + 1}"
        if self.kind is StepKind.CREATOR:
            return f'({self.group:04X},"{creator}")'
        return f'({self.group:04X},"{creator}",{self.element:02X})'

    @property
    def keyword(self) -> str:
        """The data dictionary's keyword, ``[description]`` of a known private element, or
        an empty string."""
        if self.kind is StepKind.PUBLIC:
            return keyword_for_tag((self.group << 16) | self.element)
        if self.kind is StepKind.CREATOR:
            return "PrivateCreator"
        if self.kind is StepKind.PRIVATE:
            try:
                tag = (self.group << 16) | 0x1000 | self.element
                return f"[{private_dictionary_description(tag, self.creator)}]"
            except KeyError:
                return ""
        return ""

    @property
    def label(self) -> str:
        """The keyword of a public element, else the text."""
        return (self.kind is StepKind.PUBLIC and self.keyword) or self.text


StepPath = tuple[Step, ...]


def _path_text(steps: StepPath) -> str:
    return ">".join(step.text for step in steps)


def _path_keyword(steps: StepPath) -> str:
    """Keywords, joined; a step without one by its text, a path without any: empty."""
    keywords = [step.keyword for step in steps]
    if not any(keywords):
        return ""
    return ">".join(k or step.text for k, step in zip(keywords, steps, strict=True))


def _path_label(steps: StepPath) -> str:
    return ">".join(step.label for step in steps)
