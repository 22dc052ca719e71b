"""Rectangle rules: regions of known burned-in text, per manufacturer, model and image size.

As in CTP's pixel anonymizer scripts, a rule gives boxes that are blacked out in every frame
of a matching image, in addition to what OCR finds. The bundled rules are
``data/pixel-rules.toml``; a user's file of the same format adds to them (``--pixel-rules``).

The file is validated by pydantic models that forbid unknown keys. Every problem found is a
line of the :class:`~dicomveil.errors.ProfileError` raised, naming the file and the entry
(``rules.toml: rule[2].boxes[0]: unknown key 'w'``), never a traceback.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError
from pydicom.dataset import Dataset

from dicomveil.cleaners.pixels.boxes import Box
from dicomveil.cleaners.pixels.header import header_int, header_text
from dicomveil.errors import ProfileError
from dicomveil.validation import key_path


@dataclass(frozen=True)
class RectangleRule:
    """Regions of known burned-in text on the images of one kind of device.

    Attributes
    ----------
    name : str
        Unique among the rules in use.
    boxes : tuple[Box, ...]
        The regions blacked out.
    manufacturer, model : str
        Case-insensitive substrings of Manufacturer and Manufacturer's Model Name; empty
        matches any.
    modality : str
        Modality, exact (case-insensitive); empty matches any.
    rows, columns : int or None
        The image size, exact; None matches any.
    source : str
        Where the rectangles come from.
    """

    name: str
    boxes: tuple[Box, ...]
    manufacturer: str = ""
    model: str = ""
    modality: str = ""
    rows: int | None = None
    columns: int | None = None
    source: str = ""

    def matches(self, ds: Dataset) -> bool:
        """Tell whether the rule applies to an image: every condition it states holds.

        Parameters
        ----------
        ds : Dataset
            The image's header.

        Returns
        -------
        bool
            True when the rule's boxes are to be blacked out on this image.
        """
        if (
            self.manufacturer
            and self.manufacturer.lower() not in header_text(ds, 0x00080070).lower()
        ):
            return False
        if self.model and self.model.lower() not in header_text(ds, 0x00081090).lower():
            return False
        if self.modality and self.modality.upper() != header_text(ds, 0x00080060).upper():
            return False
        if self.rows is not None and self.rows != header_int(ds, 0x00280010):
            return False
        return self.columns is None or self.columns == header_int(ds, 0x00280011)


@dataclass(frozen=True)
class PixelRules:
    """A validated set of rectangle rules (``data/pixel-rules.toml`` and the user's).

    Attributes
    ----------
    rules : tuple[RectangleRule, ...]
        The rules, in the order of their files.
    """

    rules: tuple[RectangleRule, ...] = ()

    @classmethod
    def bundled(cls) -> PixelRules:
        """Load the rules that come with dicomveil (once per process).

        Returns
        -------
        PixelRules
            The rules of ``data/pixel-rules.toml``.
        """
        return _bundled_rules()

    @classmethod
    def from_file(cls, path: str | Path) -> PixelRules:
        """Load and validate a rules file.

        Parameters
        ----------
        path : str or Path
            A TOML file in the format of ``data/pixel-rules.toml``.

        Returns
        -------
        PixelRules
            Its rules.

        Raises
        ------
        ProfileError
            The file cannot be read, is not valid TOML, or has invalid rules.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"cannot read ({exc.strerror})", source=str(path)) from None
        return cls.from_toml(text, str(path))

    @classmethod
    def from_toml(cls, text: str, source: str) -> PixelRules:
        """Parse and validate rules.

        Parameters
        ----------
        text : str
            TOML in the format of ``data/pixel-rules.toml``.
        source : str
            Where the text comes from, for messages.

        Returns
        -------
        PixelRules
            The rules.

        Raises
        ------
        ProfileError
            Not valid TOML, or invalid rules: an unknown key, a value of the wrong type, an
            impossible box, a rule that matches every device, a name used twice. It names
            ``source`` and the entry of each problem, one line per problem.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"not valid TOML ({exc})", source=source) from None
        try:
            parsed = _RulesFile.model_validate(data)
        except ValidationError as exc:
            raise _profile_error(exc, source) from None
        return cls(tuple(entry.rule() for entry in parsed.rule))

    def __add__(self, other: PixelRules) -> PixelRules:
        """Both sets of rules, these then ``other``.

        Raises
        ------
        ProfileError
            A rule name is in both.
        """
        names = {r.name for r in self.rules}
        for rule in other.rules:
            if rule.name in names:
                raise ProfileError(f"rule name {rule.name!r} is already defined")
        return PixelRules(self.rules + other.rules)

    def matching(self, ds: Dataset) -> tuple[RectangleRule, ...]:
        """The rules that apply to the image of header ``ds`` (:meth:`RectangleRule.matches`),
        in order."""
        return tuple(rule for rule in self.rules if rule.matches(ds))


@cache
def _bundled_rules() -> PixelRules:
    text = (
        resources.files("dicomveil.cleaners.pixels")
        .joinpath("data/pixel-rules.toml")
        .read_text("utf-8")
    )
    return PixelRules.from_toml(text, "dicomveil/cleaners/pixels/data/pixel-rules.toml")


@cache
def load_rules(path: Path | None) -> PixelRules:
    """Load the rules in use: the bundled ones and those of a user's file (once per path).

    Parameters
    ----------
    path : Path or None
        A user's rules file, or None for the bundled rules alone.

    Returns
    -------
    PixelRules
        The bundled rules, then the file's.

    Raises
    ------
    ProfileError
        The file cannot be used, or defines a rule name the bundled rules already have.
    """
    bundled = PixelRules.bundled()
    return bundled if path is None else bundled + PixelRules.from_file(path)


# --------------------------------------------------------------------------------------------
# The file's shape (pydantic), and its problems as lines


class _Table(BaseModel):
    # Strict: a whole number is an int (not a bool, not a float), a text is a str. Texts are
    # stripped, as the header values they are compared with.
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class _BoxEntry(_Table):
    x: int
    y: int
    width: int
    height: int
    what: str = ""

    @model_validator(mode="after")
    def _possible(self) -> _BoxEntry:
        self.box()  # ValueError: a negative corner or an empty box
        return self

    def box(self) -> Box:
        return Box(self.x, self.y, self.width, self.height)


class _RuleEntry(_Table):
    name: str = Field(min_length=1)
    manufacturer: str = ""
    model: str = ""
    modality: str = ""
    rows: int | None = Field(default=None, gt=0)
    columns: int | None = Field(default=None, gt=0)
    boxes: list[_BoxEntry] = Field(min_length=1)
    source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> _RuleEntry:
        if not (self.manufacturer or self.model):
            raise PydanticCustomError(
                "matches_every_device",
                "a rule names a manufacturer or a model (it would match every device)",
            )
        for index, entry in enumerate(self.boxes):
            box = entry.box()
            if (self.columns is not None and box.right > self.columns) or (
                self.rows is not None and box.bottom > self.rows
            ):
                raise PydanticCustomError(
                    "box_outside_image", "the box lies outside the image", {"box": index}
                )
        return self

    def rule(self) -> RectangleRule:
        boxes = tuple(entry.box() for entry in self.boxes)
        return RectangleRule(boxes=boxes, **self.model_dump(exclude={"boxes"}))


class _RulesFile(_Table):
    version: Literal[1] = 1
    rule: list[_RuleEntry] = []

    @model_validator(mode="after")
    def _unique(self) -> _RulesFile:
        names: set[str] = set()
        for index, entry in enumerate(self.rule):
            if entry.name in names:
                raise PydanticCustomError(
                    "duplicate_name",
                    "duplicate rule name {name}",
                    {"name": repr(entry.name), "rule": index},
                )
            names.add(entry.name)
        return self


# What a value must be, by key, for messages.
_EXPECTED = {
    "rows": "a whole number",
    "columns": "a whole number",
    "x": "a whole number",
    "y": "a whole number",
    "width": "a whole number",
    "height": "a whole number",
}


def _profile_error(exc: ValidationError, source: str) -> ProfileError:
    """The ProfileError for pydantic's errors: one line per problem."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        problem = _problem(error)
        if problem not in problems:
            problems.append(problem)
    if len(problems) == 1:
        entry, message = problems[0]
        return ProfileError(message, source=source, entry=entry or None)
    lines = [f"{entry}: {message}" if entry else message for entry, message in problems]
    return ProfileError(f"{len(lines)} problems:\n  " + "\n  ".join(lines), source=source)


def _problem(error: ErrorDetails) -> tuple[str, str]:
    """(entry, message) for one of pydantic's errors."""
    loc = tuple(error["loc"])
    kind = error["type"]
    context: dict[str, Any] = dict(error.get("ctx") or {})
    key = loc[-1] if loc and isinstance(loc[-1], str) else None
    parent = key_path(loc[:-1] if key is not None else loc)
    if kind == "box_outside_image":
        return f"{key_path(loc)}.boxes[{context['box']}]", error["msg"]
    if kind == "duplicate_name":
        return f"rule[{context['rule']}]", error["msg"]
    if kind == "matches_every_device":
        return key_path(loc), error["msg"]
    if kind == "value_error":  # a box that cannot be (Box's own message)
        return key_path(loc), str(context.get("error", error["msg"]))
    if kind == "extra_forbidden":
        return parent, f"unknown key {key!r}"
    if kind == "literal_error" and loc == ("version",):
        return "", "unsupported version (expected 1)"
    if loc == ("rule",):
        return "", "'rule' must be an array of tables ([[rule]])"
    if kind in ("model_type", "model_attributes_type", "dict_type") and key is None:
        in_boxes = len(loc) >= 2 and loc[-2] == "boxes"
        what = "a box is a table {x, y, width, height}" if in_boxes else "a rule is a table"
        return parent, what
    if key == "name":
        return parent, "'name' (a non-empty text) is required"
    if kind == "greater_than":
        return parent, f"'{key}' must be positive"
    if key == "boxes" and kind in ("missing", "list_type", "too_short"):
        return parent, "'boxes' must be a non-empty array"
    expected = _EXPECTED.get(key or "", "a text" if kind == "string_type" else "")
    if kind == "missing" and key:
        return parent, f"'{key}' ({expected}) is required" if expected else f"'{key}' is required"
    if kind in ("string_type", "int_type") and key:
        return parent, f"'{key}' must be {expected}"
    return parent, f"'{key}': {error['msg']}" if key else error["msg"]
