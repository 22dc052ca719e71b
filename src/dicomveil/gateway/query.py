"""C-FIND: queries proxied to the route's upstream node, answers de-identified.

Patient Root and Study Root queries, and Modality Worklist queries where the route allows
them, go to the route's ``[route.query]`` node with their matching values sanitized (see
:func:`sanitize_query`). Each answer goes through the engine with the route's profile and
key (nothing withheld, no pixels) and keeps the requested keys; an answer the engine cannot
clean is dropped, never passed. At PATIENT and STUDY level (and for worklists) the
upstream is asked for PatientID and IssuerOfPatientID, so that the pseudonyms of the
answers match the stored data.

Patient Root and Study Root queries are **confined to the project's cohort**
(:mod:`dicomveil.gateway.cohort`, :func:`confine`): a pseudonymous Patient ID (wildcards
allowed) and new Study, Series and SOP Instance UIDs (lists allowed) are translated to the
originals upstream; a value that no patient or UID of the cohort has gives no answers (never
the whole archive); and every answer whose patient (PATIENT level) or unique key (STUDY,
SERIES, IMAGE level) is not in the cohort is dropped before it is de-identified. A
wildcard query returns the cohort only. Worklist queries (for scanners, before any image
exists) are not confined.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pynetdicom.events import Event

from dicomveil.gateway.cohort import Cohort
from dicomveil.gateway.config import Node
from dicomveil.gateway.route import PIPELINE_LOCK, Handler, Peer, Route, status_dataset
from dicomveil.gateway.transport import open_association
from dicomveil.profiles import CompiledProfile
from dicomveil.standard.actions import Action

__all__ = [
    "FIND_MODELS",
    "Confinement",
    "FindHandler",
    "ModalityWorklistInformationFind",
    "PatientRootQueryRetrieveInformationModelFind",
    "StudyRootQueryRetrieveInformationModelFind",
    "UpstreamError",
    "clean_answer",
    "confine",
    "find_upstream",
    "sanitize_query",
]

# SOP classes (PS3.4; pynetdicom.sop_class makes these at run time, invisible to mypy).
PatientRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.1.1")
StudyRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
ModalityWorklistInformationFind = UID("1.2.840.10008.5.1.4.31")
FIND_MODELS = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

_PENDING = (0xFF00, 0xFF01)
# Keys a query always carries, keys the identity of a patient derives from.
_ALWAYS = frozenset({0x00080005, 0x00080052})  # SpecificCharacterSet, QueryRetrieveLevel
_IDENTITY_KEYS = (0x00100020, 0x00100021)  # PatientID, IssuerOfPatientID
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_UNIVERSAL = re.compile(r"^\**$")
_PATIENT_ID = 0x00100020
_UID_KEYS = (0x0020000D, 0x0020000E, 0x00080018)  # Study, Series, SOP Instance UID
_LEVEL_KEY = {"PATIENT": _PATIENT_ID, "STUDY": 0x0020000D, "SERIES": 0x0020000E}
_LEVEL_KEY["IMAGE"] = 0x00080018
_TRANSLATED = frozenset({_PATIENT_ID, 0x0020000D, 0x0020000E, 0x00080018})  # by the cohort


# --------------------------------------------------------------------------------------------
# The cohort


@dataclass
class Confinement:
    """What a query may answer: the answers' originals must be in these sets.

    Attributes
    ----------
    patients : set of str or None
        The original Patient IDs the query's pseudonymous Patient ID stands for (None: the
        query gave none).
    uids : dict of int to set of str
        Per UID key the query gave, the original UIDs it stands for.
    """

    patients: set[str] | None = None
    uids: dict[int, set[str]] = field(default_factory=dict)


def confine(identifier: Dataset, cohort: Cohort, project: str) -> Confinement | None:
    """Translate the query's pseudonymous keys to the cohort's originals.

    Parameters
    ----------
    identifier : Dataset
        The C-FIND identifier as the peer sent it (not changed).
    cohort : Cohort
        The gateway's cohorts.
    project : str
        The route's project (its key's fingerprint).

    Returns
    -------
    Confinement or None
        The originals the query stands for, or None when a key it gives stands for nothing
        in the cohort (then there is no answer).
    """
    out = Confinement()
    value = identifier.get(_PATIENT_ID)
    if value is not None and not _is_universal(value.value):
        out.patients = cohort.patients_matching(project, str(value.value).strip())
        if not out.patients:
            return None
    for tag in _UID_KEYS:
        value = identifier.get(tag)
        if value is None or _is_universal(value.value):
            continue
        given = value.value if isinstance(value.value, list | tuple | MultiValue) else [value.value]
        uids = [part.strip() for item in given for part in str(item).split("\\")]
        originals = cohort.original_uids(project, [uid for uid in uids if uid])
        if not originals:
            return None
        out.uids[tag] = originals
    return out


def confined_query(query: Dataset, confinement: Confinement, level: str) -> None:
    """Put the originals into the upstream query (in place), and ask for the level's key.

    A single original Patient ID is matched upstream; several are matched here, on the
    answers. UIDs are matched upstream as a list (PS3.4 C.2.2.2.2).
    """
    if confinement.patients is not None and len(confinement.patients) == 1:
        query[_PATIENT_ID] = DataElement(_PATIENT_ID, "LO", next(iter(confinement.patients)))
    for tag, originals in confinement.uids.items():
        query[tag] = DataElement(tag, "UI", sorted(originals))
    key = _LEVEL_KEY.get(level)
    if key is not None and key not in query:
        query[key] = DataElement(key, "LO" if key == _PATIENT_ID else "UI", None)


def in_cohort(
    answer: Dataset, confinement: Confinement, level: str, cohort: Cohort, project: str
) -> bool:
    """Whether an upstream answer (original values) may be answered: its level's key is in
    the cohort, and it matches what the query's pseudonymous keys stand for."""
    key = _LEVEL_KEY.get(level)
    if key is None:
        return False
    value = str(answer.get(key).value or "").strip() if key in answer else ""
    if not value:
        return False
    if key == _PATIENT_ID:
        if not cohort.has_patient(project, value):
            return False
    elif not cohort.has_uid(project, value):
        return False
    patient = str(answer[_PATIENT_ID].value or "").strip() if _PATIENT_ID in answer else None
    if confinement.patients is not None and patient not in confinement.patients:
        return False
    if patient and key != _PATIENT_ID and not cohort.has_patient(project, patient):
        # another patient's record under a cohort UID (a study UID an archive reused, a
        # study reconciled onto someone else): never shown
        return False
    for tag, originals in confinement.uids.items():
        if tag in answer and str(answer[tag].value or "").strip() not in originals:
            return False
    return True


# --------------------------------------------------------------------------------------------
# What passes upstream


def _decision_keeps(compiled: CompiledProfile, tag: int, vr: str) -> bool:
    """True when the profile keeps this attribute's value unchanged: a query value for it
    means the same upstream as in the de-identified data."""
    if tag >> 16 & 1:
        return False  # private
    code = compiled.public(tag).code
    if isinstance(code, Action):
        action: Action | None = code
    else:
        action = None if code.is_compound else code.resolve(None)
    if action is not Action.KEEP:
        return False
    if vr == "UI":
        return not compiled.replace_uids
    if vr in _DATE_VRS:
        return not compiled.shift_dates
    return vr not in ("AS",)


def sanitize_query(
    identifier: Dataset, compiled: CompiledProfile, pass_keys: frozenset[str] = frozenset()
) -> Dataset:
    """The query to send upstream: every key stays a return key, but a matching value
    passes only where it cannot identify and means the same upstream.

    A universal match (empty or ``*``) is sent empty (a return key). A value passes when
    the profile keeps the attribute unchanged (``K``; UIDs only with ``retain-uids``, dates
    only when they are not shifted), or when the route lists the keyword in
    ``pass_query_keys``. Every other
    value (patient names and IDs, dates, accession numbers, descriptions, and the
    pseudonymous UIDs of the de-identified data, which cannot be mapped back) is sent empty.
    Sequences are sanitized item by item. Private keys are sent empty.

    Parameters
    ----------
    identifier : Dataset
        The C-FIND identifier as the peer sent it (not changed).
    compiled : CompiledProfile
        The route's profile.
    pass_keys : frozenset of str
        Keywords whose values pass anyway (the route's ``pass_query_keys``).

    Returns
    -------
    Dataset
        A new identifier with the same keys.
    """
    out = Dataset()
    for tag in identifier.keys():
        elem = identifier[tag]
        keyword = keyword_for_tag(tag)
        if tag in _ALWAYS or (keyword and keyword in pass_keys):
            out[tag] = elem
        elif elem.VR == "SQ":
            items = [sanitize_query(item, compiled, pass_keys) for item in elem.value or []]
            out[tag] = DataElement(tag, "SQ", Sequence(items))
        elif _decision_keeps(compiled, tag, elem.VR) and not _is_universal(elem.value):
            out[tag] = elem
        else:  # "*" too: a return key matches every value, an empty one too (archives
            # differ on "*": dcmqrscp's skips empty values, Orthanc 1.10's QIDO-RS all)
            out[tag] = DataElement(tag, elem.VR, None)
    return out


def held_back(identifier: Dataset, upstream_query: Dataset) -> dict[int, str]:
    """The matching values of a query that could not pass upstream (sent empty by
    :func:`sanitize_query`): the de-identified answers are matched against them instead
    (:func:`matches_held_back`). The keys the cohort translates (Patient ID, the instance
    UIDs) are not among them.

    Parameters
    ----------
    identifier : Dataset
        The query as the peer sent it.
    upstream_query : Dataset
        What goes upstream.

    Returns
    -------
    dict of int to str
        Tag -> the matching value as written (multiple values joined by backslashes).
    """
    held: dict[int, str] = {}
    for tag in identifier.keys():
        element = identifier[tag]
        if int(tag) in _TRANSLATED or element.VR == "SQ" or _is_universal(element.value):
            continue
        sent = upstream_query.get(tag)
        if sent is not None and sent.value in (None, "", b""):
            value = element.value
            held[int(tag)] = (
                "\\".join(str(v) for v in value) if isinstance(value, MultiValue) else str(value)
            )
    return held


def matches_held_back(ds: Dataset, matching: dict[int, str]) -> bool:
    """Whether a de-identified answer matches the values that could not pass upstream
    (:func:`held_back`): single values, ``*`` and ``?`` wildcards, date and time ranges,
    UID lists (PS3.4 C.2.2.2).

    Parameters
    ----------
    ds : Dataset
        A de-identified answer.
    matching : dict of int to str
        Tag -> matching value.

    Returns
    -------
    bool
        True when every value matches.
    """
    for tag, wanted in matching.items():
        if wanted in ("", "*"):
            continue
        element = ds.get(tag)
        value = "" if element is None or element.value is None else element.value
        vr = _dictionary_vr(tag) or ""
        text = "\\".join(str(v) for v in value) if isinstance(value, list) else str(value)
        if vr in _DATE_VRS and "-" in wanted:
            low, _, high = wanted.partition("-")
            if not text or (low and text < low) or (high and text[: len(high)] > high):
                return False
        elif vr == "UI":
            if text not in {u for part in wanted.split(",") for u in part.split("\\")}:
                return False
        elif "*" in wanted or "?" in wanted:
            if not fnmatch.fnmatchcase(text, wanted):
                return False
        elif text != wanted:
            return False
    return True


def _is_universal(value: object) -> bool:
    if value is None or value == "" or value == b"":
        return True
    return isinstance(value, str) and bool(_UNIVERSAL.match(value.strip()))


# --------------------------------------------------------------------------------------------
# What comes back


def clean_answer(route: Route, identifier: Dataset, requested: set[int]) -> Dataset | None:
    """A de-identified C-FIND answer holding the requested keys.

    Parameters
    ----------
    route : Route
        The route the query came in on (its profile, key and query settings).
    identifier : Dataset
        An answer from the upstream node (changed in place).
    requested : set of int
        The tags of the keys the peer asked for.

    Returns
    -------
    Dataset or None
        The answer, or None if it cannot be cleaned (then it is dropped, never passed).
    """
    query = route.config.query
    issuer = query.default_issuer_of_patient_id if query is not None else ""
    if issuer and identifier.get("PatientID") and not identifier.get("IssuerOfPatientID"):
        identifier.IssuerOfPatientID = issuer
    clean = route.clean(identifier)
    if clean is None:
        return None
    out = Dataset()
    for tag in sorted(requested | _ALWAYS):
        if tag in clean:
            out[tag] = clean[tag]
        elif tag in requested:
            vr = _dictionary_vr(tag)
            if vr is not None:
                out[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else None)
    return out


def _dictionary_vr(tag: int) -> str | None:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return vr.split(" or ")[0] if vr else None


# --------------------------------------------------------------------------------------------
# Asking the upstream


class UpstreamError(Exception):
    """The upstream cannot be reached, or did not answer with success (the message names
    the node and the status, never a value)."""


def find_upstream(node: Node, query: Dataset, timeout: float) -> Iterator[Dataset]:
    """The answers of a Study Root C-FIND of ``query`` at ``node``, as they come.

    A reader that stops early (it has enough) aborts the association when the generator
    is closed; a finished query releases it.

    Parameters
    ----------
    node : Node
        The archive.
    query : Dataset
        The identifier, its QueryRetrieveLevel set.
    timeout : float
        ACSE, DIMSE, network and connection timeouts, in seconds.

    Yields
    ------
    Dataset
        Each pending answer's identifier.

    Raises
    ------
    UpstreamError
        The node cannot be reached, stops answering, or ends with a status other than
        success.
    """
    model = StudyRootQueryRetrieveInformationModelFind
    assoc = open_association(node, model, timeout)
    if assoc is None:
        raise UpstreamError(f"cannot reach {node.label}")
    finished = False
    try:
        for status, answer in assoc.send_c_find(query, model):
            code = status.get("Status") if status is not None else None
            if code is None:
                raise UpstreamError(f"{node.label} stopped answering")
            if int(code) in _PENDING:
                if answer is not None:
                    yield answer
                continue
            finished = True
            if int(code) != 0:
                raise UpstreamError(f"{node.label} answered 0x{int(code):04X}")
            return
    finally:
        with contextlib.suppress(Exception):
            if assoc.is_established and finished:
                assoc.release()
            elif assoc.is_established:
                assoc.abort()


# --------------------------------------------------------------------------------------------
# The handler


class FindHandler(Handler):
    """The C-FIND service: proxies a query upstream and yields the cleaned answers.

    Its ``cohort`` is set by the gateway when it starts (None before: no answers).
    """

    cohort: Cohort | None = None

    def __call__(
        self, event: Event, peer: Peer | None
    ) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """Answer one C-FIND request (pynetdicom's ``EVT_C_FIND``).

        Yields
        ------
        tuple
            (status, answer) pairs as pynetdicom expects them: pending statuses with the
            cleaned answers, then the final status (or a failure with an Error Comment).
        """
        model = str(event.request.AffectedSOPClassUID or "")
        query = peer.route.config.query if peer is not None else None
        if peer is None or query is None:
            yield _find_failure("no query upstream for this route")
            return
        if model == ModalityWorklistInformationFind and not query.worklist:
            yield _find_failure("worklist queries are not proxied on this route")
            return
        route = peer.route
        self.board.count(route.name, "queries")
        project = route.project
        confinement: Confinement | None = None
        try:
            identifier = event.identifier
            requested = {int(tag) for tag in identifier.keys()}
            with PIPELINE_LOCK:
                upstream_query = sanitize_query(identifier, route.compiled, query.pass_query_keys)
            level = str(upstream_query.get("QueryRetrieveLevel", "") or "").upper()
            if model != ModalityWorklistInformationFind:
                if self.cohort is None or level not in _LEVEL_KEY:
                    yield 0x0000, None  # nothing to answer for
                    return
                confinement = confine(identifier, self.cohort, project)
                if confinement is None:
                    yield 0x0000, None
                    return
                confined_query(upstream_query, confinement, level)
            # a worklist's answers are matched upstream only: the scanner's user types what
            # the RIS holds (a real name), never what the de-identified answer holds
            worklist = model == ModalityWorklistInformationFind
            held = {} if worklist else held_back(identifier, upstream_query)
        except Exception:
            yield _find_failure("the query identifier cannot be decoded", 0xA900)
            return
        if model == ModalityWorklistInformationFind or level in ("PATIENT", "STUDY"):
            # The pseudonym derives from these: ask for them, so answers match stored data.
            for tag in _IDENTITY_KEYS:
                if tag not in upstream_query:
                    upstream_query[tag] = DataElement(tag, "LO", None)
        if not isinstance(query.node, Node):
            yield _find_failure("the upstream is a DICOMweb service: query it with QIDO-RS")
            return
        assoc = open_association(query.node, model, self.config.timeout)
        if assoc is None:
            self.board.error(route.name, f"C-FIND: cannot reach {query.node.label}")
            yield _find_failure("the upstream node cannot be reached")
            return
        dropped = outside = 0
        cancelled = False
        try:
            for status, answer in assoc.send_c_find(upstream_query, model):
                if event.is_cancelled:
                    cancelled = True
                    yield 0xFE00, None
                    return
                code = status.get("Status") if status is not None else None
                if code is None:
                    yield _find_failure("the upstream node stopped answering")
                    return
                code = int(code)
                if code in _PENDING:
                    if answer is None:
                        continue
                    if confinement is not None and (
                        self.cohort is None
                        or not in_cohort(answer, confinement, level, self.cohort, project)
                    ):
                        outside += 1
                        continue  # dropped before it is de-identified
                    with PIPELINE_LOCK:
                        clean = clean_answer(route, answer, requested)
                    if clean is None:
                        dropped += 1
                        continue
                    if not matches_held_back(clean, held):
                        continue  # a value that could not pass upstream does not match
                    yield code, clean
                    continue
                yield code, None
                return
            yield _find_failure("the upstream node stopped answering")
        finally:
            if dropped:
                self.board.error(route.name, f"C-FIND: {dropped} answer(s) could not be cleaned")
            with contextlib.suppress(Exception):
                if assoc.is_established and not cancelled:
                    assoc.release()
                else:
                    assoc.abort()


def _find_failure(comment: str, code: int = 0xC000) -> tuple[Dataset, None]:
    return status_dataset(code, comment), None
