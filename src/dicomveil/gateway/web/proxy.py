"""QIDO-RS and WADO-RS: the cohort searched and retrieved by its pseudonymous keys.

The DICOMweb side of a query route is the DIMSE proxy's twin
(:mod:`~dicomveil.gateway.query`, :mod:`~dicomveil.gateway.retrieve`), with the same rules:

* a search's pseudonymous Patient ID and new UIDs (of the path or the query) are
  translated to the cohort's originals (:func:`~dicomveil.gateway.query.confine`); a key
  that stands for nothing in the cohort finds nothing, never the whole archive;
* every other matching value passes upstream only where it cannot identify and means the
  same there (:func:`~dicomveil.gateway.query.sanitize_query`); the values that could not
  pass are matched here, on the de-identified answers (single values, ``*`` and ``?``
  wildcards, UID lists, ranges of dates and times);
* answers outside the cohort are dropped before they are de-identified; the others are
  de-identified by the route's profile and key (:func:`~dicomveil.gateway.query
  .clean_answer`) and carry the gateway's own Retrieve URL;
* retrieved instances are de-identified as ``dicomveil run`` writes them (the same engine
  path and release gate: :func:`~dicomveil.gateway.cohorting.deidentify_cohort`, in the
  gateway's worker processes when it has some), in the transfer syntax they are kept in
  (never transcoded).

``offset`` and ``limit`` apply to the confined answers. ``fuzzymatching`` is not offered
(it would match pseudonyms against originals); ``includefield=all`` is the level's default
attributes. Metadata leaves bulk data out (binary values over 1 KiB: pixel data, overlays,
vendor blobs), without a BulkDataURI: the bulk-data, rendered and frame endpoints are not
served.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import config, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomveil.gateway.cohort import Cohort
from dicomveil.gateway.cohorting import deidentify_cohort
from dicomveil.gateway.query import (
    clean_answer,
    confine,
    confined_query,
    in_cohort,
    matches_held_back,
    sanitize_query,
)
from dicomveil.gateway.route import PIPELINE_LOCK, Route
from dicomveil.gateway.web.upstream import Upstream

if TYPE_CHECKING:
    from dicomveil.gateway.pool import WorkerPool

__all__ = [
    "MAX_SCANNED",
    "Found",
    "Retrieval",
    "Search",
    "SearchError",
    "metadata",
    "retrieve",
    "search",
]

STUDY, SERIES, INSTANCE = 0x0020000D, 0x0020000E, 0x00080018
_PATIENT_ID, _ISSUER = 0x00100020, 0x00100021
_RETRIEVE_URL = 0x00081190
_LEVEL_TAGS = {"STUDY": (STUDY,), "SERIES": (STUDY, SERIES), "IMAGE": (STUDY, SERIES, INSTANCE)}
# PS3.18 Tables 10.6.3-3, -4 and -5: the attributes a search returns by default.
_DEFAULTS = {
    "STUDY": (
        "StudyDate StudyTime AccessionNumber InstanceAvailability ModalitiesInStudy "
        "ReferringPhysicianName TimezoneOffsetFromUTC PatientName PatientID PatientBirthDate "
        "PatientSex StudyInstanceUID StudyID NumberOfStudyRelatedSeries "
        "NumberOfStudyRelatedInstances"
    ),
    "SERIES": (
        "Modality TimezoneOffsetFromUTC SeriesDescription SeriesInstanceUID SeriesNumber "
        "NumberOfSeriesRelatedInstances PerformedProcedureStepStartDate "
        "PerformedProcedureStepStartTime StudyInstanceUID"
    ),
    "IMAGE": (
        "SOPClassUID SOPInstanceUID InstanceAvailability TimezoneOffsetFromUTC "
        "InstanceNumber Rows Columns BitsAllocated NumberOfFrames StudyInstanceUID "
        "SeriesInstanceUID"
    ),
}
_CONTROL = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
_BINARY = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_BULK = 1024
MAX_SCANNED = 50_000  # upstream answers a search reads at most (then: truncated)


class SearchError(ValueError):
    """A search the gateway cannot run as asked (HTTP 400); the message names the key."""


@dataclass
class Search:
    """A QIDO-RS request: its level, matching values and return keys, and paging."""

    level: str
    matching: dict[int, str] = field(default_factory=dict)
    returned: set[int] = field(default_factory=set)
    offset: int = 0
    limit: int | None = None
    from_path: frozenset[int] = frozenset()  # keys the path gives (a wrong one: no resource)

    @classmethod
    def parse(cls, level: str, params: list[tuple[str, str]], path: dict[int, str]) -> Search:
        """A search from the request's path UIDs and query parameters.

        Parameters
        ----------
        level : str
            STUDY, SERIES or IMAGE.
        params : list of (str, str)
            The query parameters, in order (repeated ones included).
        path : dict of int to str
            The UIDs of the path, by tag.

        Returns
        -------
        Search
            The search.

        Raises
        ------
        SearchError
            An attribute that is not a DICOM keyword or tag, a nested attribute, a key the
            path gives already, or a ``limit`` or ``offset`` that is not a number.
        """
        search = cls(level, matching=dict(path), from_path=frozenset(path))
        search.returned = {_tag(name) for name in _DEFAULTS[level].split()}
        for name, value in params:
            if name == "includefield":
                for item in value.split(","):
                    if item.strip() and item.strip() != "all":
                        search.returned.add(_tag(item.strip()))
            elif name in ("limit", "offset"):
                if not (value.isascii() and value.isdigit()):
                    raise SearchError(f"{name} must be a whole number")
                if name == "limit":
                    search.limit = int(value)
                else:
                    search.offset = int(value)
            elif name not in _CONTROL:
                tag = _tag(name)
                if tag in path:
                    raise SearchError(f"{name} is given by the path already")
                search.matching[tag] = value
        return search

    def identifier(self) -> Dataset:
        """The search as a C-FIND identifier: matching values, then empty return keys.

        Raises
        ------
        SearchError
            A value that its attribute's VR cannot hold (a number that is not one).
        """
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        for tag in sorted(self.returned | set(self.matching) | set(_LEVEL_TAGS[self.level])):
            vr = _vr(tag)
            value = self.matching.get(tag)
            if vr == "SQ":
                ds[tag] = DataElement(tag, vr, [])
                continue
            if value is not None and tag not in self.from_path and not _can_hold(vr, value):
                raise SearchError(
                    f"{keyword_for_tag(tag) or f'{tag:08X}'}: not a valid value for VR {vr}"
                )
            if value is not None and vr == "UI":
                uids = [uid for part in value.split(",") for uid in part.split("\\") if uid]
                value = uids if len(uids) > 1 else value  # type: ignore[assignment]
            try:
                # Never validated: pydicom's warnings would print the value.
                ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)
                ds[tag].value  # noqa: B018 (decoded now: a number that is none fails here)
            except (ValueError, TypeError, OverflowError):
                raise SearchError(
                    f"{keyword_for_tag(tag) or f'{tag:08X}'}: not a valid value for VR {vr}"
                ) from None
        return ds


_TEXT_LIMITS = {"AE": 16, "AS": 4, "CS": 16, "DS": 16, "IS": 12, "LO": 64, "SH": 16, "PN": 194}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TIME = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?$")
_DATETIME = re.compile(
    r"^[0-9]{4}((0[1-9]|1[0-2])((0[1-9]|[12][0-9]|3[01])"
    r"(([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9](\.[0-9]{1,6})?)?)?)?)?)?([+-][0-9]{4})?$"
)


def _can_hold(vr: str, value: str) -> bool:
    """Whether ``value`` is a matching value an attribute of ``vr`` can hold (PS3.4 C.2.2.2,
    PS3.18 8.3.4): a date, time or date-time (or a range of them), UIDs, or text no longer
    than the VR allows (wildcards included). A value that cannot be held matches nothing,
    and says the client made a mistake: a 400, not an empty answer."""
    if value in ("", "*"):
        return True
    if vr in ("DA", "TM", "DT"):
        if value.count("-") > 1 or value == "-":
            return vr == "DT" and _DATETIME.match(value) is not None
        return all(not side or _one_temporal(vr, side) for side in value.split("-"))
    if vr == "UI":
        uids = [u for part in value.split(",") for u in part.split("\\")]
        return all(len(u) <= 64 and _UID.match(u) is not None for u in uids)
    limit = _TEXT_LIMITS.get(vr)
    return limit is None or all(len(v) <= limit for v in value.split("\\"))


def _one_temporal(vr: str, text: str) -> bool:
    if vr == "DA":
        try:
            _dt.datetime.strptime(text, "%Y%m%d")
        except ValueError:
            return False
        return len(text) == 8
    if vr == "TM":
        return _TIME.match(text) is not None
    return _DATETIME.match(text) is not None


def _tag(name: str) -> int:
    if "." in name:
        raise SearchError(f"{name}: nested attributes are not searched")
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        tag = int(name, 16)
    else:
        found = tag_for_keyword(name)
        if found is None:
            raise SearchError(f"{name}: not a DICOM keyword or tag")
        tag = found
    if _vr(tag) == "":
        raise SearchError(f"{name}: not an attribute the gateway can search")
    return tag


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return ""


# --------------------------------------------------------------------------------------------
# QIDO-RS


@dataclass
class Found:
    """A search's answers, and whether the gateway stopped looking before the end."""

    answers: list[dict[str, Any]]
    truncated: bool = False


def search(route: Route, cohort: Cohort, upstream: Upstream, request: Search, base: str) -> Found:
    """Answer a search for the route's cohort (see the module). The upstream's answers are
    read until ``offset + limit`` confined answers are found, and never more than
    :data:`MAX_SCANNED` of them (then the result says it is truncated).

    Parameters
    ----------
    route : Route
        The route (its profile, key and query settings).
    cohort : Cohort
        The gateway's cohorts.
    upstream : Upstream
        The archive.
    request : Search
        The search.
    base : str
        The route's base URL (Retrieve URLs).

    Returns
    -------
    Found
        The de-identified answers in DICOM JSON.

    Raises
    ------
    UpstreamError
        The archive cannot be reached or fails.
    SearchError
        A value its attribute's VR cannot hold.
    """
    query = route.config.query
    assert query is not None
    level = request.level
    identifier = request.identifier()
    confinement = confine(identifier, cohort, route.project)
    if confinement is None:
        return Found([])
    with PIPELINE_LOCK:
        upstream_query = sanitize_query(identifier, route.compiled, query.pass_query_keys)
    here = {
        tag: value
        for tag, value in request.matching.items()
        if tag not in (_PATIENT_ID, STUDY, SERIES, INSTANCE)
        and upstream_query.get(tag) is not None
        and upstream_query[tag].value in (None, "", [])
    }
    confined_query(upstream_query, confinement, level)
    if level == "STUDY":
        for tag in (_PATIENT_ID, _ISSUER):  # the pseudonyms derive from these
            if tag not in upstream_query:
                upstream_query[tag] = DataElement(tag, "LO", None)
    requested = set(request.returned) | set(request.matching) | set(_LEVEL_TAGS[level])
    requested.discard(_RETRIEVE_URL)
    answers: list[dict[str, Any]] = []
    wanted = None if request.limit is None else request.offset + request.limit
    truncated = False
    # the upstream's association or paging ends when the reading does, however it ends
    with contextlib.closing(upstream.find(level, upstream_query)) as found:
        for scanned, answer in enumerate(found, start=1):
            if scanned > MAX_SCANNED:
                truncated = True
                break
            if not in_cohort(answer, confinement, level, cohort, route.project):
                continue  # dropped before it is de-identified
            with PIPELINE_LOCK:
                clean = clean_answer(route, answer, requested)
            if clean is None or not matches_held_back(clean, here):
                continue
            if 0x00080052 in clean:
                del clean[0x00080052]
            uids = [
                str(clean.get(tag).value or "") if tag in clean else ""
                for tag in _LEVEL_TAGS[level]
            ]
            if all(uids):
                names = ("studies", "series", "instances")
                path = "/".join(f"{name}/{uid}" for name, uid in zip(names, uids, strict=False))
                clean[_RETRIEVE_URL] = DataElement(_RETRIEVE_URL, "UR", f"{base}/{path}")
            answers.append(clean.to_json_dict())
            if wanted is not None and len(answers) >= wanted:
                break
    return Found(answers[request.offset : wanted], truncated)


# --------------------------------------------------------------------------------------------
# WADO-RS


@dataclass
class Retrieval:
    """What a retrieval delivers: de-identified files in a stage folder (:meth:`close`
    removes it), and how many cohort instances were withheld."""

    stage: Path
    files: list[Path]
    withheld: int = 0

    def close(self) -> None:
        """Remove the stage folder."""
        shutil.rmtree(self.stage, ignore_errors=True)


def retrieve(
    route: Route,
    cohort: Cohort,
    upstream: Upstream,
    uids: dict[int, str],
    spool: Path,
    pool: WorkerPool | None = None,
) -> Retrieval | None:
    """Retrieve a study, series or instance of the cohort by its new UIDs, de-identified.

    Parameters
    ----------
    route : Route
        The route.
    cohort : Cohort
        The gateway's cohorts.
    upstream : Upstream
        The archive.
    uids : dict of int to str
        The path's new Study, Series and SOP Instance UIDs, by tag.
    spool : Path
        The folder the stage is made in.
    pool : WorkerPool or None, optional
        The gateway's workers, which de-identify the originals (None: this thread does).

    Returns
    -------
    Retrieval or None
        The de-identified files, or None when the UIDs stand for nothing in the cohort.

    Raises
    ------
    UpstreamError
        The archive cannot be reached or fails.
    """
    identifier = Dataset()
    for tag, uid in uids.items():
        identifier[tag] = DataElement(tag, "UI", uid, validation_mode=config.IGNORE)
    confinement = confine(identifier, cohort, route.project)
    if confinement is None:
        return None
    stage = Path(tempfile.mkdtemp(prefix="wado-", dir=spool))
    retrieval = Retrieval(stage, [])
    try:
        originals = stage / "originals"
        originals.mkdir()
        tags = sorted(uids, key=(STUDY, SERIES, INSTANCE).index)
        choices = [sorted(confinement.uids.get(tag, ())) for tag in tags]
        for combination in itertools.product(*choices):
            upstream.fetch(dict(zip(tags, combination, strict=True)), originals)
        files = deidentify_cohort(route, originals, confinement, cohort, stage / "out", pool)
    except BaseException:
        retrieval.close()
        raise
    retrieval.files = [path for path in files if path is not None]
    retrieval.withheld = len(files) - len(retrieval.files)
    return retrieval


def metadata(path: Path) -> dict[str, Any]:
    """A de-identified instance's metadata in DICOM JSON, its bulk data left out.

    Parameters
    ----------
    path : Path
        The de-identified file.

    Returns
    -------
    dict
        Every element but pixel data and binary values longer than 1 KiB.
    """
    ds = dcmread(path, stop_before_pixels=True)
    _drop_bulk(ds)
    return ds.to_json_dict()


def _drop_bulk(ds: Dataset) -> None:
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value or []:
                _drop_bulk(item)
        elif element.VR in _BINARY and element.value is not None and len(element.value) > _BULK:
            del ds[element.tag]
