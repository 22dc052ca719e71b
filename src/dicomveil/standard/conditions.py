"""Conditional consistency: the 1C/2C partners of attributes the walk removed.

PS3.3 makes some attributes conditional on others ("required if Responsible Person is
present", "required if the patient is an animal"). Removing one side can leave the other
orphaned or missing, which makes the object invalid. Which attribute conditions which is
data, not code: ``data/conditions.toml`` lists each pair with its source in PS3.3. After
the walk, :func:`apply` applies it to the top level of the dataset.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pydicom import config as _pydicom_config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.errors import ProfileError


@dataclass(frozen=True, slots=True)
class Condition:
    """One conditional attribute and what its condition depends on."""

    tag: int
    keyword: str
    type: str
    only_with: tuple[int, ...]  # it goes when none of these has a value
    required_with: tuple[int, ...]  # it comes back empty when any of these has a value
    source: str


@cache
def conditions() -> tuple[Condition, ...]:
    """The bundled conditions (``data/conditions.toml``)."""
    raw = resources.files("dicomveil.standard").joinpath("data", "conditions.toml").read_bytes()
    found = []
    for i, entry in enumerate(tomllib.loads(raw.decode("utf-8"))["conditions"]):

        def tag(keyword: str, where: str = f"conditions[{i}]") -> int:
            value = tag_for_keyword(keyword)
            if value is None:
                raise ProfileError(f"unknown keyword {keyword!r}", source=where)
            return int(value)

        found.append(
            Condition(
                tag=tag(entry["attribute"]),
                keyword=entry["attribute"],
                type=entry["type"],
                only_with=tuple(tag(k) for k in entry.get("only_with", ())),
                required_with=tuple(tag(k) for k in entry.get("required_with", ())),
                source=entry["source"],
            )
        )
    return tuple(found)


@cache
def watched() -> frozenset[int]:
    """The conditional attributes: the walk notes which of them the input has."""
    return frozenset(c.tag for c in conditions())


def _has_value(ds: Dataset, tag: int) -> bool:
    elem = ds.get_item(tag, keep_deferred=True)
    if elem is None:
        return False
    value = elem.value
    return value not in (None, b"", "") and not (isinstance(value, Sequence) and not value)


def apply(
    ds: Dataset, before: frozenset[int], report: Callable[[int, str, str, str], None]
) -> None:
    """Make the top level of ``ds`` consistent after the walk.

    ``before`` holds the conditional attributes the input had; ``report(tag, vr, action,
    source)`` records each change.
    """
    for condition in conditions():
        tag = condition.tag
        orphaned = condition.only_with and tag in ds
        if orphaned and not any(_has_value(ds, t) for t in condition.only_with):
            vr = ds.get_item(tag, keep_deferred=True).VR or dictionary_VR(tag)
            del ds[tag]
            report(tag, str(vr), "X", f"{condition.source}: its condition no longer holds")
        missing = condition.required_with and tag in before and tag not in ds
        if missing and any(_has_value(ds, t) for t in condition.required_with):
            vr = dictionary_VR(tag)
            ds[tag] = DataElement(
                tag,
                vr,
                Sequence() if vr == "SQ" else None,
                validation_mode=_pydicom_config.IGNORE,
            )
            report(tag, vr, "Z", f"{condition.source}: its condition holds, kept empty")
