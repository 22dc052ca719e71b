"""``dicomveil review``: the lab's review and sign-off as a web application.

A second person opens every de-identified subject, checks each changed element and that
nothing else changed, and passes or fails it; the tracking sheet records who did what.
Pages: the queue of subjects (filterable by QC status, the lab's columns editable), a
subject (runs, studies and series with the first file of each checked by
:mod:`~dicomveil.review.checks`, thumbnails, withheld files, verification findings,
history, sign-off), a file (every change and its rule, original values on request,
dciodvfy), exports of the tracking sheet.

Rules the application keeps:

* **Four eyes**: nobody signs off a subject whose files they de-identified (the operators
  of the runs that wrote them, as the audit trail records them: name the accounts like the
  ``--operator`` names).
* **Everything is recorded** in ``review_events`` with who and when (logins, original
  values shown, sign-offs and refusals, edits, exports); sign-offs also in the audit
  trail's QC history.
* **Originals stay back**: values and images only for reviewing roles, values only when a
  reviewer asks (recorded); original patient IDs and dates scanned only in the separate
  export, for admins, with a confirmation; input paths only for reviewers.
* **No PHI in the server's log**: URLs hold pseudonyms and record numbers only, and the
  application logs nothing else.

Modules: :mod:`~dicomveil.review.store` (its tables), :mod:`~dicomveil.review.subjects`
(what the pages show), :mod:`~dicomveil.review.checks` (a file's changes and their rules),
:mod:`~dicomveil.review.images` (thumbnails), :mod:`~dicomveil.review.app` (the
application and its security), :mod:`~dicomveil.review.routes` (pages and actions).
"""

from dicomveil.review.app import ReviewSettings, create_app
from dicomveil.review.store import ReviewStore, Role, User

__all__ = ["ReviewSettings", "ReviewStore", "Role", "User", "create_app"]
