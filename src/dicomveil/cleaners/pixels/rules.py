"""Rectangle rules: regions of known burned-in text, per manufacturer, model and image size.

As in CTP's pixel anonymizer scripts, a rule gives boxes that are blacked out in every frame
of a matching image, in addition to what OCR finds. The bundled rules are
``data/pixel-rules.toml``; a user's file of the same format adds to them (``--pixel-rules``).

The file is validated by pydantic models that forbid unknown keys
(:mod:`~dicomveil.cleaners.pixels.rules_file`). Every problem found is a
line of the :class:`~dicomveil.errors.ProfileError` raised, naming the file and the entry
(``rules.toml: rule[2].boxes[0]: unknown key 'w'``), never a traceback.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from pydicom.dataset import Dataset

from dicomveil.cleaners.pixels.boxes import Box
from dicomveil.cleaners.pixels.header import header_int, header_text
from dicomveil.errors import ProfileError


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
        # pydantic: loaded with the first rules file (not with every run)
        from dicomveil.cleaners.pixels.rules_file import parsed_rules

        return cls(tuple(RectangleRule(**fields) for fields in parsed_rules(data, source)))

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
