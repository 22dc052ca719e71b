"""The pages and actions of the review application (see :mod:`dicomveil.review`).

Every handler takes its account from :func:`~dicomveil.review.app.current_user` (or the
stricter :func:`~dicomveil.review.app.reviewer` and :func:`~dicomveil.review.app.admin`),
and every POST its fields from :func:`~dicomveil.review.app.checked_form` (CSRF). Path
parameters are a pseudonym (looked up in the audit trail) or a file record's number; no
request ever names a path on disk.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from dicomveil.errors import DicomveilError
from dicomveil.identity.crosswalk import Crosswalk
from dicomveil.qc.audit import AuditTrail, FileRecord, RunRecord
from dicomveil.qc.audit.sheets import Sheet, tracking_sheet, write_sheet
from dicomveil.qc.audit.trail import QcStatus
from dicomveil.review.checks import check_file
from dicomveil.review.images import ImagesUnavailableError, changed_regions, thumbnail
from dicomveil.review.security import (
    ForbiddenError,
    admin,
    checked_form,
    close_session,
    csrf_token,
    current_user,
    open_session,
    reviewer,
)
from dicomveil.review.store import ReviewStore, SheetRow, User
from dicomveil.review.subjects import (
    input_file,
    output_file,
    queue,
    subject_view,
    when,
)
from dicomveil.review.sweep import Sweeps, summary
from dicomveil.runs.batch import Outcome

__all__ = ["page", "router"]

router = APIRouter()
Account = Annotated[User, Depends(current_user)]
Reviewer = Annotated[User, Depends(reviewer)]
Admin = Annotated[User, Depends(admin)]
Form = Annotated[dict[str, str], Depends(checked_form)]

_MEDIA: Final = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_DCIODVFY_LINES: Final = 40


def page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A page rendered from a template (autoescaped), with the session's CSRF token.

    Parameters
    ----------
    request : Request
        The request.
    template : str
        The template's name.
    context : dict
        Its variables (``user``, ``csrf`` and ``when`` are added).
    status_code : int
        The HTTP status.

    Returns
    -------
    HTMLResponse
        The page.
    """
    env = request.app.state.templates
    text = env.get_template(template).render(
        {"csrf": csrf_token(request), "when": when, "user": None, **context}
    )
    return HTMLResponse(text, status_code=status_code)


def _trail(request: Request) -> AuditTrail:
    trail: AuditTrail = request.app.state.trail
    return trail


def _store(request: Request) -> ReviewStore:
    store: ReviewStore = request.app.state.store
    return store


# ------------------------------------------------------------------------------ logging in


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    """The login form."""
    return page(request, "login.html", {"error": ""})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, form: Form) -> Response:
    """Log in: a new session (and CSRF token) for the account, or the form again."""
    store = _store(request)
    user = store.authenticate(form.get("name", ""), form.get("password", ""))
    if user is None:
        store.log("-", "login-refused")  # never the name typed: it may be anything
        return page(request, "login.html", {"error": "wrong name or password"}, 401)
    open_session(request, user.name)
    csrf_token(request)
    store.log(user.name, "login", detail=user.role.value)
    return RedirectResponse("/", status_code=303)


@router.post("/logout")
def logout(request: Request, user: Account, form: Form) -> Response:
    """Log out."""
    _store(request).log(user.name, "logout")
    close_session(request)
    return RedirectResponse("/login", status_code=303)


# ------------------------------------------------------------------------------ the queue


@router.get("/", response_class=HTMLResponse)
def queue_page(request: Request, user: Account, status: str = "all") -> HTMLResponse:
    """The subjects, filterable by QC status."""
    wanted = None if status == "all" else _status(status)
    rows = queue(_trail(request), _store(request), wanted)
    return page(
        request,
        "queue.html",
        {"user": user, "rows": rows, "status": status, "statuses": [s.value for s in QcStatus]},
    )


def _status(text: str) -> QcStatus:
    try:
        return QcStatus(text)
    except ValueError:
        raise ForbiddenError(f"no QC status {text!r}", 400) from None


# ------------------------------------------------------------------------------ a subject


@router.get("/subjects/{pseudonym}", response_class=HTMLResponse)
def subject_page(request: Request, pseudonym: str, user: Account) -> HTMLResponse:
    """A subject: runs, studies and series with the first file of each checked, withheld
    files, findings, history; sign-off for reviewers."""
    view = subject_view(_trail(request), _store(request), pseudonym)
    if view is None:
        found = {"user": user, "message": "no such subject", "heading": "Not found"}
        return page(request, "error.html", found, 404)
    checks = {}
    for study in view.studies:
        for series in study.series:
            entry = series.first
            output = output_file(entry.run, entry.record)
            if output is not None:
                checks[series.uid] = check_file(
                    entry.run, input_file(entry.run, entry.record), output
                )
    sweeps: Sweeps = request.app.state.sweeps
    files = [(f.record, f.run) for study in view.studies for s in study.series for f in s.files]
    files += [(f.record, f.run) for f in view.unindexed]
    swept = summary(_store(request), files, sweeps.running(pseudonym))
    return page(
        request,
        "subject.html",
        {
            "user": user,
            "view": view,
            "checks": checks,
            "swept": swept,
            "own": user.name in view.operators or user.name == view.subject.deidentified_by,
        },
    )


@router.post("/subjects/{pseudonym}/sheet")
def edit_sheet(request: Request, pseudonym: str, user: Account, form: Form) -> Response:
    """The lab's columns of a subject: study ID, date scanned, notes."""
    trail, store = _trail(request), _store(request)
    if trail.subject(pseudonym) is None:
        raise ForbiddenError("no such subject", 404)
    row = SheetRow(form.get("study_id", "").strip()[:64], form.get("date_scanned", "").strip()[:32])
    store.set_sheet(pseudonym, row, user.name)
    if "notes" in form:
        trail.set_notes(pseudonym, form["notes"].strip()[:2000])
    store.log(user.name, "sheet-edit", pseudonym, "study ID, date scanned, notes")
    back = "/" if form.get("back") == "queue" else f"/subjects/{pseudonym}"
    return RedirectResponse(back, status_code=303)


@router.post("/subjects/{pseudonym}/check-all")
def check_all(request: Request, pseudonym: str, user: Account, form: Form) -> Response:
    """Check every written file of the subject, in the background."""
    trail, store = _trail(request), _store(request)
    if trail.subject(pseudonym) is None:
        raise ForbiddenError("no such subject", 404)
    sweeps: Sweeps = request.app.state.sweeps
    if sweeps.start(trail, store, pseudonym):
        store.log(user.name, "check-all", pseudonym)
    return RedirectResponse(f"/subjects/{pseudonym}#every-file", status_code=303)


@router.post("/subjects/{pseudonym}/sign-off", response_class=HTMLResponse)
def sign_off(request: Request, pseudonym: str, user: Reviewer, form: Form) -> Response:
    """A reviewer passes or fails a subject (never one they de-identified)."""
    trail, store = _trail(request), _store(request)
    subject = trail.subject(pseudonym)
    if subject is None:
        raise ForbiddenError("no such subject", 404)
    decision = form.get("status", "")
    if decision not in (QcStatus.PASSED.value, QcStatus.FAILED.value):
        raise ForbiddenError("sign off as passed or failed", 400)
    if user.name in trail.subject_operators(pseudonym) or user.name == subject.deidentified_by:
        store.log(user.name, "four-eyes-refused", pseudonym)
        raise ForbiddenError(
            "four-eyes rule: you de-identified this subject, so another reviewer must sign it off"
        )
    note = form.get("note", "").strip()[:2000]
    # the sign-off's note goes after the lab's notes, never in their place (it replaced them)
    if note and subject.notes:
        note = f"{subject.notes}\n{decision} by {user.name}: {note}"[:2000]
    trail.set_qc(pseudonym, decision, who=user.name, notes=note or subject.notes)
    store.log(user.name, "sign-off", pseudonym, decision)
    return RedirectResponse(f"/subjects/{pseudonym}", status_code=303)


# ------------------------------------------------------------------------------ a file


def _file(request: Request, file_id: int) -> tuple[FileRecord, RunRecord]:
    trail = _trail(request)
    found = trail.file(file_id)
    if found is None or found.outcome is not Outcome.WRITTEN:
        raise ForbiddenError("no such written file", 404)
    run = trail.runs(run_id=found.run_id)[0]
    return found, run


@router.get("/files/{file_id}", response_class=HTMLResponse)
def file_page(request: Request, file_id: int, user: Account) -> HTMLResponse:
    """One written file: every change and its rule; values hidden."""
    return _file_page(request, file_id, user, reveal=False)


@router.post("/files/{file_id}/reveal", response_class=HTMLResponse)
def reveal(request: Request, file_id: int, user: Reviewer, form: Form) -> HTMLResponse:
    """The same page with original and new values, for a reviewer who asks (logged)."""
    record, _run = _file(request, file_id)
    _store(request).log(user.name, "reveal", record.subject, f"original values of file {file_id}")
    return _file_page(request, file_id, user, reveal=True)


def _file_page(request: Request, file_id: int, user: User, *, reveal: bool) -> HTMLResponse:
    record, run = _file(request, file_id)
    output = output_file(run, record)
    original = input_file(run, record)
    checked = check_file(run, original, output) if output is not None else None
    index = _store(request).indexed([file_id]).get(file_id)
    return page(
        request,
        "file.html",
        {
            "user": user,
            "record": record,
            "run": run,
            "output": output,
            "original": original,
            "check": checked,
            "reveal": reveal,
            "frames": index.frames if index is not None else 1,
            "dciodvfy": _dciodvfy(output) if output is not None else None,
        },
    )


def _dciodvfy(path: Any) -> list[str] | None:
    """dciodvfy's errors and warnings on a written file (None when it is not installed)."""
    program = shutil.which("dciodvfy")
    if program is None:
        return None
    try:
        done = subprocess.run(
            [program, "-new", str(path)], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"dciodvfy could not run ({type(exc).__name__})"]
    lines = [
        line.strip()
        for line in (done.stdout + done.stderr).splitlines()
        if line.startswith(("Error", "Warning"))
    ]
    return lines[:_DCIODVFY_LINES] or ["no errors or warnings"]


@router.get("/files/{file_id}/{side}.png")
def frame_image(
    request: Request, file_id: int, side: str, user: Reviewer, frame: int = 0
) -> Response:
    """A frame's thumbnail, original or de-identified, with the regions that differ
    between them outlined."""
    if side not in ("original", "deidentified"):
        raise ForbiddenError("no such image", 404)
    record, run = _file(request, file_id)
    output, original = output_file(run, record), input_file(run, record)
    path = output if side == "deidentified" else original
    if path is None:
        return Response("not available", status_code=404, media_type="text/plain")
    try:
        boxes = changed_regions(original, output, frame) if original and output else []
        data = thumbnail(path, frame, boxes)
    except ImagesUnavailableError as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    return Response(data, media_type="image/png")


# ------------------------------------------------------------------------------ exports


def _tracking(request: Request, original_ids: Crosswalk | None) -> Sheet:
    """The lab's tracking sheet (:func:`tracking_sheet`) with the lab's columns after the
    subject: the study ID, and the date scanned only in the export with original IDs."""
    base = tracking_sheet(_trail(request).subjects(), original_ids)
    lab = _store(request).sheet()
    at = 2 if original_ids is not None else 1  # after the subject (and its original ID)
    added = ("date_scanned", "study_id") if original_ids is not None else ("study_id",)
    rows = []
    for row in base.rows:
        own = lab.get(str(row[0]), SheetRow())
        values = (own.date_scanned, own.study_id) if original_ids is not None else (own.study_id,)
        rows.append((*row[:at], *values, *row[at:]))
    return Sheet(base.title, (*base.columns[:at], *added, *base.columns[at:]), rows)


def _download(sheet: Sheet, name: str, kind: str) -> Response:
    buffer = io.BytesIO()
    write_sheet(sheet, buffer, kind)
    return Response(
        buffer.getvalue(),
        media_type=_MEDIA[kind],
        headers={"Content-Disposition": f'attachment; filename="{name}.{kind}"'},
    )


@router.post("/export/tracking.{kind}")
def export_tracking(request: Request, kind: str, user: Account, form: Form) -> Response:
    """The tracking sheet as CSV or XLSX (no original IDs, no dates scanned)."""
    if kind not in _MEDIA:
        raise ForbiddenError("export as csv or xlsx")
    _store(request).log(user.name, "export", detail=f"tracking sheet ({kind})")
    return _download(_tracking(request, None), "tracking", kind)


@router.post("/export/original-ids.{kind}")
def export_original_ids(request: Request, kind: str, user: Admin, form: Form) -> Response:
    """The tracking sheet with original patient IDs and dates scanned: asked for
    explicitly (a confirmation box), admins only, logged."""
    if kind not in _MEDIA:
        raise ForbiddenError("export as csv or xlsx")
    if form.get("confirm") != "yes":
        raise ForbiddenError("tick the box to confirm that you need the original IDs")
    path = request.app.state.settings.crosswalk
    if path is None:
        raise ForbiddenError("the application was started without --crosswalk")
    try:
        crosswalk = Crosswalk.from_csv(path)
    except DicomveilError as exc:
        raise ForbiddenError(f"the crosswalk cannot be read: {exc}") from None
    _store(request).log(user.name, "export-original-ids", detail=f"tracking sheet ({kind})")
    return _download(_tracking(request, crosswalk), "tracking-original-ids", kind)
