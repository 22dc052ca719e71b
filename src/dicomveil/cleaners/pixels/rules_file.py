"""The shape of a rectangle rules file (:mod:`~dicomveil.cleaners.pixels.rules`), as pydantic
models that forbid unknown keys, and its problems as lines of a
:class:`~dicomveil.errors.ProfileError`. Apart from the rules, so that pydantic is loaded with
the first rules file read, not with every run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from dicomveil.cleaners.pixels.boxes import Box
from dicomveil.errors import ProfileError
from dicomveil.validation import key_path


def parsed_rules(data: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """The rules of a rules file's TOML data, validated: each rule's fields, as
    :class:`~dicomveil.cleaners.pixels.rules.RectangleRule` takes them.

    Parameters
    ----------
    data : dict
        The file's TOML, parsed.
    source : str
        The file, for messages.

    Returns
    -------
    list of dict
        Its rules' fields (the boxes as :class:`~dicomveil.cleaners.pixels.boxes.Box`), in
        order.

    Raises
    ------
    ProfileError
        Invalid rules, one line per problem (see :meth:`PixelRules.from_toml
        <dicomveil.cleaners.pixels.rules.PixelRules.from_toml>`).
    """
    try:
        parsed = _RulesFile.model_validate(data)
    except ValidationError as exc:
        raise _profile_error(exc, source) from None
    return [entry.fields() for entry in parsed.rule]


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

    def fields(self) -> dict[str, Any]:
        boxes = tuple(entry.box() for entry in self.boxes)
        return {**self.model_dump(exclude={"boxes"}), "boxes": boxes}


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
