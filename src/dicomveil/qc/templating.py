"""The HTML pages of quality control: Jinja2 templates shipped in ``dicomveil/qc/templates``,
rendered with autoescape, so that every value put into a page is escaped, whatever it holds.

Jinja2 loads when a page is first rendered, not with the package (nor the command line).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("dicomveil.qc", "templates"),
        # Every template is HTML: escape whatever its name, strings included.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), default_for_string=True, default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, **context: Any) -> str:
    """Render one of the templates of ``dicomveil/qc/templates``.

    Parameters
    ----------
    name : str
        The template's file name (``diff_report.html``).
    **context : Any
        The names the template uses, and their values (escaped as they are put in).

    Returns
    -------
    str
        The page.

    Raises
    ------
    jinja2.TemplateNotFound
        There is no such template.
    jinja2.UndefinedError
        The template uses a name the context does not give.
    """
    return _environment().get_template(name).render(**context)
