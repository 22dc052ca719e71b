"""C-FIND: queries proxied to the route's upstream node, answers de-identified.

Patient Root and Study Root queries, and Modality Worklist queries where the route allows
them, go to the route's ``[route.query]`` node with their matching values sanitized (see
:func:`sanitize_query`). Each answer goes through the engine with the route's profile and
key (nothing withheld, no pixels) and keeps the requested keys; an answer the engine cannot
clean is dropped, never passed. At PATIENT and STUDY level (and for worklists) the
upstream is asked for PatientID and IssuerOfPatientID, so that the pseudonyms of the
answers match the stored data.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pynetdicom.events import Event

from dicomveil.gateway.route import PIPELINE_LOCK, Handler, Peer, Route, status_dataset
from dicomveil.gateway.transport import open_association
from dicomveil.profiles import CompiledProfile
from dicomveil.standard.actions import Action

__all__ = [
    "FIND_MODELS",
    "FindHandler",
    "ModalityWorklistInformationFind",
    "PatientRootQueryRetrieveInformationModelFind",
    "StudyRootQueryRetrieveInformationModelFind",
    "clean_answer",
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

    A value passes when it is a universal match (empty or ``*``), when the profile keeps
    the attribute unchanged (``K``; UIDs only with ``retain-uids``, dates only when they
    are not shifted), or when the route lists the keyword in ``pass_query_keys``. Every other
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
        elif _is_universal(elem.value) or _decision_keeps(compiled, tag, elem.VR):
            out[tag] = elem
        else:
            out[tag] = DataElement(tag, elem.VR, None)
    return out


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
# The handler


class FindHandler(Handler):
    """The C-FIND service: proxies a query upstream and yields the cleaned answers."""

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
        try:
            identifier = event.identifier
            requested = {int(tag) for tag in identifier.keys()}
            with PIPELINE_LOCK:
                upstream_query = sanitize_query(identifier, route.compiled, query.pass_query_keys)
        except Exception:
            yield _find_failure("the query identifier cannot be decoded", 0xA900)
            return
        level = str(upstream_query.get("QueryRetrieveLevel", "") or "").upper()
        if model == ModalityWorklistInformationFind or level in ("PATIENT", "STUDY"):
            # The pseudonym derives from these: ask for them, so answers match stored data.
            for tag in _IDENTITY_KEYS:
                if tag not in upstream_query:
                    upstream_query[tag] = DataElement(tag, "LO", None)
        assoc = open_association(query.node, model, self.config.timeout)
        if assoc is None:
            self.board.error(route.name, f"C-FIND: cannot reach {query.node.label}")
            yield _find_failure("the upstream node cannot be reached")
            return
        dropped = 0
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
                    with PIPELINE_LOCK:
                        clean = clean_answer(route, answer, requested)
                    if clean is None:
                        dropped += 1
                        continue
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
