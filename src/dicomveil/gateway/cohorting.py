"""Retrieved originals kept to the project's cohort and de-identified, for C-GET and C-MOVE
(:mod:`~dicomveil.gateway.retrieve`) and WADO-RS (:mod:`~dicomveil.gateway.web.proxy`)
through the gateway.

An original outside the cohort is deleted before it is de-identified. The others go
through the pipeline of ``dicomveil run`` and the storing routes (the release gate
included): in the gateway's worker processes when it has some, as each original arrives
(:class:`Cohorting`), else in the gateway's process, one at a time.
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread

from dicomveil.errors import InputError
from dicomveil.gateway.cohort import Cohort
from dicomveil.gateway.query import Confinement, in_cohort
from dicomveil.gateway.route import PIPELINE_LOCK, Route
from dicomveil.io import read_source
from dicomveil.runs.batch import deidentify_source
from dicomveil.runs.maps import gated

if TYPE_CHECKING:
    from dicomveil.gateway.pool import WorkerPool

__all__ = ["Cohorting", "deidentify_cohort", "deidentify_retrieved"]

LOGGER = logging.getLogger("dicomveil.gateway")


def deidentify_cohort(
    route: Route,
    originals: Path,
    confinement: Confinement,
    cohort: Cohort,
    out: Path,
    pool: WorkerPool | None = None,
) -> list[Path | None]:
    """De-identify the retrieved originals that are the cohort's; delete every original.

    Parameters
    ----------
    route : Route
        The route (profile, key, gate, project).
    originals : Path
        The folder of retrieved originals (emptied).
    confinement : Confinement
        The originals the request's keys stand for.
    cohort : Cohort
        The gateway's cohorts.
    out : Path
        Where the de-identified files are written (see :func:`deidentify_retrieved`).
    pool : WorkerPool or None, optional
        The gateway's workers (see :class:`Cohorting`); None: here, one at a time.

    Returns
    -------
    list of Path or None
        In the order of the originals' names, each cohort instance's de-identified file,
        or None when it was withheld; instances outside the cohort are dropped before they
        are de-identified, and not counted.
    """
    cohorting = Cohorting(route, confinement, cohort, out, pool)
    try:
        for path in sorted(originals.iterdir()):
            cohorting.arrived(path)
        return cohorting.files()
    finally:
        cohorting.close()


class Cohorting:
    """Retrieved originals, each dropped or de-identified as it arrives.

    An original outside the cohort is deleted at once. With worker processes, a cohort
    original goes to them as soon as it arrives (two in hand per worker, the next waiting
    in its pipe), so that they de-identify while the archive is still sending; without,
    the originals are de-identified here, one at a time, when :meth:`files` is called.

    Parameters
    ----------
    route : Route
        The route (profile, key, gate, project).
    confinement : Confinement
        The originals the request's keys stand for.
    cohort : Cohort
        The gateway's cohorts.
    out : Path
        Where the de-identified files are written (see :func:`deidentify_retrieved`).
    pool : WorkerPool or None
        The gateway's workers, if any.
    """

    def __init__(
        self,
        route: Route,
        confinement: Confinement,
        cohort: Cohort,
        out: Path,
        pool: WorkerPool | None,
    ) -> None:
        self.route, self.confinement, self.cohort, self.out = route, confinement, cohort, out
        self._pool = pool if pool is not None and pool.workers else None
        self._executor = (
            ThreadPoolExecutor(2 * self._pool.workers, thread_name_prefix="dicomveil-retrieve")
            if self._pool is not None
            else None
        )
        self._found: list[tuple[str, Path | Future[Path | None]]] = []
        self._lock = threading.Lock()
        self.names = itertools.count()  # the numbers of the originals' file names (fetch)
        self._error: Exception | None = None  # the first original whose place was not known

    def arrived(self, path: Path) -> None:
        """One original has arrived (whole): drop it, or have it de-identified.

        Parameters
        ----------
        path : Path
            The original; deleted once it is dropped or de-identified.
        """
        try:
            inside = _in_cohort(path, self.confinement, self.cohort, self.route.project)
        except Exception as exc:  # the cohort cannot say (its database): the request fails
            path.unlink(missing_ok=True)
            with self._lock:
                self._error = self._error or exc
            return
        if not inside:
            path.unlink(missing_ok=True)
            return
        item: Path | Future[Path | None] = path
        if self._executor is not None:
            item = self._executor.submit(self._in_worker, path)
        with self._lock:
            self._found.append((path.name, item))

    def _in_worker(self, path: Path) -> Path | None:
        assert self._pool is not None
        try:
            return self._pool.retrieve(self.route, path, self.out)
        finally:
            path.unlink(missing_ok=True)

    def files(self) -> list[Path | None]:
        """Every cohort original's de-identified file (None: withheld), in the order of
        the originals' names, once all are done."""
        with self._lock:
            found = sorted(self._found, key=lambda pair: pair[0])
            if self._error is not None:
                raise self._error  # as when the originals were sorted after they all came
        files: list[Path | None] = []
        for _name, item in found:
            if isinstance(item, Path):
                try:
                    files.append(deidentify_retrieved(self.route, item, self.out))
                finally:
                    item.unlink(missing_ok=True)
            else:
                files.append(item.result())
        return files

    def close(self) -> None:
        """Wait for what the workers have in hand, and give up what they have not begun."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _in_cohort(path: Path, confinement: Confinement, cohort: Cohort, project: str) -> bool:
    """Whether a retrieved original is the cohort's and matches the request's keys (see
    :func:`~dicomveil.gateway.query.in_cohort`); False when it cannot be read."""
    try:
        ds = dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=[0x00100020, 0x0020000D, 0x0020000E, 0x00080018],
        )
    except Exception:
        return False
    return in_cohort(ds, confinement, "IMAGE", cohort, project)


def deidentify_retrieved(route: Route, original: Path, out: Path) -> Path | None:
    """One retrieved original de-identified as the storing routes do (release gate
    included).

    Parameters
    ----------
    route : Route
        The route (profile, key, gate).
    original : Path
        The retrieved original.
    out : Path
        The folder the de-identified file is written to (in the route's layout).

    Returns
    -------
    Path or None
        The de-identified file; None when it is withheld or fails.
    """
    try:
        source = read_source(original)
    except InputError:
        return None
    try:
        with PIPELINE_LOCK:
            done = deidentify_source(
                route.engine(), source, lambda ds, pseudonym: route.staged(out, ds, pseudonym)
            )
        if isinstance(done, str) or done.result is None:
            return None
        if route.gate is not None and not route.compiled.copy:
            with PIPELINE_LOCK:
                reason = gated(route.gate, done.output, out, original, done.result.uid_map, None)
            if reason is not None:
                return None
    except Exception as exc:  # no traceback: a library's message may quote a value
        LOGGER.warning(
            "route %s: a retrieved instance could not be de-identified (%s)",
            route.name,
            type(exc).__name__,
        )
        return None
    return done.output
