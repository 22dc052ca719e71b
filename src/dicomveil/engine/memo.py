"""What an engine remembers for equal inputs (a patient's files repeat their texts and
sequences byte for byte), within a bound: a long-lived engine (a gateway's worker) must not
grow without limit."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Remembered(Generic[V]):
    """Answers by key, at most ``entries`` of them and about ``size`` bytes (what the caller
    counts for each: the input's bytes and the answer's), all forgotten at once when full.

    Parameters
    ----------
    entries : int
        The most answers held.
    size : int
        The most bytes held, as counted by :meth:`put`.
    """

    def __init__(self, entries: int, size: int) -> None:
        self.entries = entries
        self.size = size
        self._answers: dict[Hashable, V] = {}
        self._held = 0

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: Hashable) -> V | None:
        """The answer remembered for ``key``, or None.

        Parameters
        ----------
        key : Hashable
            Everything the answer depends on.

        Returns
        -------
        object or None
            The answer, or None when none is remembered.
        """
        return self._answers.get(key)

    def put(self, key: Hashable, answer: V, size: int) -> None:
        """Remember ``answer`` for ``key``; ``size`` is what it holds, in bytes.

        Parameters
        ----------
        key : Hashable
            Everything the answer depends on.
        answer : object
            The answer.
        size : int
            The bytes the key and the answer hold (their values' lengths).
        """
        if size > self.size:
            return
        if len(self._answers) >= self.entries or self._held + size > self.size:
            self._answers.clear()
            self._held = 0
        self._answers[key] = answer
        self._held += size
