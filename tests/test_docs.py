"""Public API documentation (issue 12): every name a package exports has a docstring, and
every exported function and public method documents its arguments.

The front door (``dicomveil``) documents them in numpydoc sections (``Parameters``, and
``Returns``/``Raises``), as pydicom and highdicom do. Elsewhere a docstring may instead name
every argument in the text (````name````), or refer to the callable or protocol that
documents them (a method that implements :class:`dicomveil.cleaners.Cleaner`, say): the
same parameters documented twice would be duplication.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

FRONT_DOORS = (
    "dicomveil",
    "dicomveil.profiles",
    "dicomveil.engine",
    "dicomveil.cleaners",
    "dicomveil.cleaners.text",
    "dicomveil.cleaners.pixels",
    "dicomveil.io",
    "dicomveil.qc.verify",
    "dicomveil.qc.diff",
    "dicomveil.qc.audit",
    "dicomveil.gateway",
)


def _exported() -> Iterator[tuple[str, Any]]:
    for module_name in FRONT_DOORS:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if not name.startswith("__"):
                yield f"{module_name}.{name}", getattr(module, name)


def _callables() -> Iterator[tuple[str, Callable[..., Any]]]:
    seen: set[int] = set()
    for name, obj in _exported():
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj) and obj.__module__.startswith("dicomveil"):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                function = (
                    member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                )
                if inspect.isfunction(function):
                    yield f"{name}.{attr}", function


_FRONT_NAMES = frozenset(importlib.import_module("dicomveil").__all__)


def _arguments(function: Callable[..., Any]) -> list[str]:
    parameters = inspect.signature(function).parameters
    return [p for p in parameters if p not in ("self", "cls")]


_EXPORTED = list(_exported())
_CALLABLES = list(_callables())


@pytest.mark.parametrize(("name", "obj"), _EXPORTED, ids=[name for name, _ in _EXPORTED])
def test_every_exported_name_has_a_docstring(name: str, obj: Any) -> None:
    if inspect.isfunction(obj) or inspect.isclass(obj):
        assert inspect.getdoc(obj), f"{name} has no docstring"


@pytest.mark.parametrize(("name", "function"), _CALLABLES, ids=[name for name, _ in _CALLABLES])
def test_arguments_are_documented(name: str, function: Callable[..., Any]) -> None:
    doc = inspect.getdoc(function) or ""
    assert doc, f"{name} has no docstring"
    arguments = _arguments(function)
    if not arguments or "\nParameters\n----------" in doc:
        return
    parts = name.split(".")
    if parts[1] in _FRONT_NAMES:
        pytest.fail(f"{name}: the front door documents arguments in a Parameters section")
    named = all(f"``{a}``" in doc for a in arguments if a not in ("args", "kwargs"))
    referred = any(role in doc for role in (":meth:`", ":func:`", ":class:`"))
    assert named or referred, f"{name}: arguments neither in a Parameters section nor named"
