"""Rectangles of pixels: where text was found, and what is blacked out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Box:
    """A rectangle of pixels: top-left corner (from 0), width and height.

    Parameters
    ----------
    x, y : int
        The top-left corner, from 0.
    width, height : int
        The size in pixels.

    Raises
    ------
    ValueError
        ``x`` or ``y`` is negative, or ``width`` or ``height`` is not positive.
    """

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.x < 0 or self.y < 0 or self.width <= 0 or self.height <= 0:
            raise ValueError("a box has x, y >= 0 and width, height > 0")

    @property
    def right(self) -> int:
        """The first column to the right of the box."""
        return self.x + self.width

    @property
    def bottom(self) -> int:
        """The first row below the box."""
        return self.y + self.height

    def overlaps(self, other: Box) -> bool:
        """Tell whether two boxes share at least one pixel.

        Parameters
        ----------
        other : Box
            The other box.

        Returns
        -------
        bool
            True when they overlap.
        """
        return min(self.right, other.right) > max(self.x, other.x) and min(
            self.bottom, other.bottom
        ) > max(self.y, other.y)

    def padded(self, padding: int, columns: int, rows: int) -> Box:
        """Grow the box by ``padding`` on every side, clipped to the image.

        Parameters
        ----------
        padding : int
            Pixels added on each side.
        columns, rows : int
            The image's size.

        Returns
        -------
        Box
            The grown box, at least one pixel wide and high.
        """
        x, y = max(0, self.x - padding), max(0, self.y - padding)
        right, bottom = min(columns, self.right + padding), min(rows, self.bottom + padding)
        return Box(x, y, max(1, right - x), max(1, bottom - y))

    def clipped(self, columns: int, rows: int) -> Box | None:
        """Cut the box to the image.

        Parameters
        ----------
        columns, rows : int
            The image's size.

        Returns
        -------
        Box or None
            The part of the box inside the image; None when it lies outside.
        """
        right, bottom = min(columns, self.right), min(rows, self.bottom)
        if right <= self.x or bottom <= self.y:
            return None
        return Box(self.x, self.y, right - self.x, bottom - self.y)

    def text(self) -> str:
        """Describe the box for reports.

        Returns
        -------
        str
            ``x=… y=… w=… h=…``.
        """
        return f"x={self.x} y={self.y} w={self.width} h={self.height}"
