"""Help that reads like other command-line tools': ``--key PATH``, ``--workers N``, and no type
after a flag (Typer would show ``<path>``, ``<int>``, ``<list[str]>`` and ``<bool>``).

Every option of dicomveil names its value with ``metavar`` (``PATH``, ``TEXT``, ``N``,
``FILE``, ``DB``...). The command classes here do the rest: flags (``--help`` included) show
no value, and arguments show their metavar, the click way (``INPUT... OUTPUT``), in the usage
line and in place of a Python type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _Argument(TyperArgument):
    """An argument whose help shows its metavar, never a Python type."""

    def display_type_rich(self, ctx: Any) -> str | None:
        """No type column: the argument's name (its metavar) says what it is."""
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        """``INPUT... OUTPUT`` or ``FILE`` as written (``[FILE]`` when optional)."""
        name = self.metavar or self.name or ""
        if self.nargs != 1 and "..." not in name:
            name += "..."
        return [name if self.required else f"[{name}]"]


def _readable(params: list[Any]) -> list[Any]:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # a flag takes no value
        elif type(param) is TyperArgument:
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
            param.__class__ = _Argument  # same object, help shown the click way
    return params


class Command(TyperCommand):
    """A command whose help shows metavars (see the module)."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, ``--help`` included, made readable (see the module)."""
        return _readable(super().get_params(ctx))


class Group(TyperGroup):
    """A group of commands whose help shows metavars (see the module)."""

    def get_params(self, ctx: Any) -> list[Any]:
        """The parameters, ``--help`` included, made readable (see the module)."""
        return _readable(super().get_params(ctx))


def option(metavar: str, help: str, *names: str, **settings: Any) -> Any:
    """An option that takes a value, shown in the help as ``metavar`` (``FILE``, ``N``).

    Parameters
    ----------
    metavar : str
        What the value is, for the help.
    help : str
        The help text.
    *names : str
        The option as typed, when not derived from the parameter's name.
    **settings
        More of :func:`typer.Option`'s settings.

    Returns
    -------
    typer.models.OptionInfo
        For ``Annotated[type, option(...)]``.
    """
    return typer.Option(*names, metavar=metavar, help=help, **settings)


def choice(values: Iterable[str], help: str) -> Any:
    """An option that takes one of ``values`` (an enum), in any case (see :func:`option`)."""
    return option("|".join(values), help, case_sensitive=False)


def flag(name: str, help: str) -> Any:
    """A boolean option that is only ever switched on (``--show-values``, no ``--no-`` form).

    Parameters
    ----------
    name : str
        The option as typed.
    help : str
        Its help text.

    Returns
    -------
    typer.models.OptionInfo
        For ``Annotated[bool, flag(...)] = False``.
    """
    return typer.Option(name, help=help)
