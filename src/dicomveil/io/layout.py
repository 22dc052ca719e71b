"""Output file names made only of de-identified values.

The default layout is ``{patient}/{study}/{series}/{sop}.dcm``: the patient pseudonym and
the (new) Study, Series and SOP Instance UIDs. A custom template may use only the fields in
:data:`FIELDS`, each read from the de-identified dataset; every component is reduced to
``[A-Za-z0-9._-]`` and the result can never leave the output folder.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from pydicom.dataset import Dataset

from dicomveil.errors import LayoutError
from dicomveil.io.read import uid_value

DEFAULT_LAYOUT = "{patient}/{study}/{series}/{sop}.dcm"
FIELDS = {
    "patient": "the patient pseudonym (or the crosswalk's study ID)",
    "study": "StudyInstanceUID after de-identification",
    "series": "SeriesInstanceUID after de-identification",
    "sop": "SOPInstanceUID after de-identification",
    "modality": "Modality",
    "series_number": "SeriesNumber",
    "instance_number": "InstanceNumber",
}
_KEYWORDS = {
    "study": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
    "sop": "SOPInstanceUID",
    "modality": "Modality",
    "series_number": "SeriesNumber",
    "instance_number": "InstanceNumber",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# The UID fields, by tag: read from the bytes where the engine left them encoded.
_UID_TAGS = {"study": 0x0020000D, "series": 0x0020000E, "sop": 0x00080018}


@dataclass(frozen=True)
class Layout:
    """Where each output file goes, below the output folder: a template of :data:`FIELDS`.

    Parameters
    ----------
    template : str
        A relative path of ``{field}`` placeholders, which must contain ``{sop}``
        (default: :data:`DEFAULT_LAYOUT`).

    Raises
    ------
    LayoutError
        An unknown field, no ``{sop}``, or a path that could leave the output folder.
    """

    template: str = DEFAULT_LAYOUT

    def __post_init__(self) -> None:
        names = _used_fields(self.template)
        unknown = [n for n in names if n not in FIELDS]
        if unknown:
            raise LayoutError(
                f"layout uses unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}"
            )
        if "sop" not in names:
            raise LayoutError("layout must contain {sop}, or files would overwrite each other")
        if self.template.startswith("/") or ".." in PurePosixPath(self.template).parts:
            raise LayoutError("layout must be a relative path inside the output folder")

    def relative_path(self, ds: Dataset, patient: str) -> PurePosixPath:
        """Name a de-identified dataset's file, relative to the output folder.

        Parameters
        ----------
        ds : Dataset
            The de-identified dataset: the fields are read from it.
        patient : str
            The patient pseudonym (or the crosswalk's study ID).

        Returns
        -------
        PurePosixPath
            The template filled in, each component reduced to ``[A-Za-z0-9._-]`` (an empty
            one, ``.`` or ``..`` becomes ``_``).
        """
        values = {"patient": _safe(patient)}
        for name in _used_fields(self.template):
            if name in _UID_TAGS:
                values[name] = _safe(str(uid_value(ds, _UID_TAGS[name]) or ""))
            elif name != "patient":
                values[name] = _safe(str(ds.get(_KEYWORDS[name], "") or ""))
        parts = []
        for part in self.template.split("/"):
            rendered = part.format(**values)
            rendered = _safe(rendered)
            if rendered in ("", ".", ".."):
                rendered = "_"
            parts.append(rendered)
        return PurePosixPath(*parts)

    def path(self, root: Path, ds: Dataset, patient: str) -> Path:
        """Name a de-identified dataset's file in the output folder ``root``:
        :meth:`relative_path` below the resolved ``root``.

        Raises
        ------
        LayoutError
            The path would leave the output folder (never, by construction: a safeguard).
        """
        return self.paths((root,), ds, patient)[0]

    def paths(self, roots: Sequence[Path], ds: Dataset, patient: str) -> list[Path]:
        """:meth:`path` in each of several folders, the template filled in once.

        Parameters
        ----------
        roots : sequence of Path
            The folders.
        ds : Dataset
            The de-identified dataset.
        patient : str
            The patient pseudonym.

        Returns
        -------
        list of Path
            One path per folder, in their order.

        Raises
        ------
        LayoutError
            A path would leave its folder (never, by construction: a safeguard).
        """
        relative = self.relative_path(ds, patient)
        # Every part is reduced to [A-Za-z0-9._-] and is never "." or "..": joined to the
        # resolved root it cannot leave it (checked without a system call per file).
        if any(part in ("", ".", "..") for part in relative.parts):
            raise LayoutError("the layout produced a path outside the output folder")
        return [_resolved(root) / relative for root in roots]


def _safe(value: str) -> str:
    return _UNSAFE.sub("_", value.strip())[:128]


@lru_cache(maxsize=64)
def _used_fields(template: str) -> tuple[str, ...]:
    return tuple(sorted({f for _, f, _, _ in string.Formatter().parse(template) if f is not None}))


@lru_cache(maxsize=64)
def _resolved(root: Path) -> Path:
    return root.resolve()
