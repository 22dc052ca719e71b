"""Running :func:`verify`: the inputs read, the output's files checked (in worker processes for
large sets), and the checks across the whole set."""

from __future__ import annotations

import contextlib
import csv
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import sys
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import IO, Any, Final

from dicomveil.profiles import Profile
from dicomveil.qc.verify.context import _Context, _Outcome
from dicomveil.qc.verify.elements import _well_known
from dicomveil.qc.verify.expectations import _Rules
from dicomveil.qc.verify.files import _FileCheck
from dicomveil.qc.verify.inputs import _input_facts, _InputFacts
from dicomveil.qc.verify.needles import _build_needles
from dicomveil.qc.verify.references import _read_uid_map, _UidMap, _whole_set
from dicomveil.qc.verify.report import Category, IodCheck, VerifyReport
from dicomveil.qc.verify.sources import _files, _pixel_digest, _sources
from dicomveil.qc.verify.validity import _INPUT_IOD, _IOD_BY_STRUCTURE

_PARALLEL_FROM: Final = 48  # files; below this, worker start-up costs more than it saves

_CONTEXT: _Context | None = None
_RULES: _Rules | None = None


def _init_worker(ctx: _Context | None, rules: _Rules | None) -> None:
    global _CONTEXT, _RULES
    _CONTEXT, _RULES = ctx, rules
    _INPUT_IOD.clear()
    _IOD_BY_STRUCTURE.clear()


def _check_chunk(paths: list[Path]) -> list[_Outcome]:
    assert _CONTEXT is not None
    return [_FileCheck(_CONTEXT, path).run() for path in paths]


def _facts_chunk(sources: list[tuple[int, str]]) -> list[_InputFacts | None]:
    assert _RULES is not None
    return [_input_facts(source, _RULES, order) for order, source in sources]


def _map_parallel(
    function: Callable[[list[Any]], list[Any]],
    items: list[Any],
    workers: int,
    init: tuple[_Context | None, _Rules | None],
) -> list[Any]:
    """``function`` over chunks of ``items``, in order, with ``workers`` processes.

    The calling process is one of them: it works through its chunks file by file, and
    between files hands the pool a chunk whenever one of its processes has none queued.
    That is a process fewer to start for each of verify's two passes, its results never
    pickled, and caches (keywords, decisions, values) that stay warm from one pass to the
    next. Each process takes a run of consecutive chunks (the pool the first, the calling
    process the last), so that the files of one patient and series, which repeat each
    other's values, meet one process's memos; whoever runs out takes the other's last
    chunks. Near the end the pool is handed one chunk at a time, so that no process is left
    alone with a queue. The order chunks are taken in does not matter (see
    :class:`_InputFacts`): results come back in the order of ``items``.
    """
    pool_size = workers - 1
    # Small enough that the processes finish together (a last long chunk leaves a core
    # idle), large enough that sending the paths and results costs little.
    chunk = max(1, min(8, -(-len(items) // (max(workers, 1) * 4))))
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    _init_worker(*init)
    try:
        if pool_size < 1 or len(items) < _PARALLEL_FROM:
            return [r for c in chunks for r in function(c)]
        if _FORK:
            return [r for c in _forked(function, chunks, pool_size) for r in c]
        results: list[list[Any]] = [[] for _ in chunks]
        split = len(chunks) * pool_size // workers
        theirs, mine = deque(range(split)), deque(range(split, len(chunks)))
        with ProcessPoolExecutor(pool_size, initializer=_init_worker, initargs=init) as pool:
            pending: dict[Future[list[Any]], int] = {}

            def tend() -> None:
                for future in [f for f in pending if f.done()]:
                    results[pending.pop(future)] = future.result()
                ahead = pool_size * (2 if len(theirs) + len(mine) > 4 * workers else 1)
                while (theirs or mine) and len(pending) < ahead:
                    index = theirs.popleft() if theirs else mine.pop()
                    pending[pool.submit(function, chunks[index])] = index

            while True:
                tend()
                if mine or theirs:
                    index = mine.popleft() if mine else theirs.pop()
                    for item in chunks[index]:
                        results[index].extend(function([item]))
                        tend()
                elif pending:
                    wait(pending, return_when=FIRST_COMPLETED)
                else:
                    break
        return [r for c in results for r in c]
    finally:
        _init_worker(None, None)


# Where the calling process can fork (Linux): see _forked. Elsewhere a process pool is used.
_FORK: Final = sys.platform.startswith("linux") and hasattr(os, "fork")


def _forked(
    function: Callable[[list[Any]], list[Any]], chunks: list[list[Any]], children: int
) -> list[list[Any]]:
    """``function`` of every chunk, in ``children`` forked processes and the calling one.

    A process pool costs more than verify's passes can spare: a manager thread in the
    calling process (it competes with the work there for the interpreter), the tasks and
    the code sent to the workers, a wait at start and at shutdown. A forked child has all
    it needs already (the chunks, the context), starts at once and needs no thread here.
    The children take chunks from the front (a shared counter), the calling process from
    the back: each meets consecutive files (one patient's, one series'), whose values its
    memos then know. A child pickles its results into a temporary file read when it exits.
    A chunk a child took but gave no result for (it failed, or was killed) is worked here,
    so that what fails fails here, as it would without children.
    """
    context = multiprocessing.get_context("fork")
    lock = context.Lock()
    bounds = context.RawArray("q", [0, len(chunks)])  # the next from the front, the back end

    def take(front: bool) -> int | None:
        with lock:
            if bounds[0] >= bounds[1]:
                return None
            if front:
                bounds[0] += 1
                return int(bounds[0] - 1)
            bounds[1] -= 1
            return int(bounds[1])

    results: list[list[Any] | None] = [None] * len(chunks)
    running: list[tuple[int, IO[bytes]]] = []
    with contextlib.ExitStack() as files:
        try:
            for _ in range(children):
                sink: IO[bytes] = files.enter_context(
                    tempfile.TemporaryFile(prefix="dicomveil-verify-")
                )
                for stream in (sys.stdout, sys.stderr):  # nothing buffered twice
                    with contextlib.suppress(Exception):
                        stream.flush()
                try:
                    pid = os.fork()
                except OSError:
                    break  # no more processes: fewer children, the rest is worked here
                if pid == 0:  # the child: its share, then out, whatever happens
                    status = 1
                    try:
                        while (index := take(front=True)) is not None:
                            pickle.dump((index, function(chunks[index])), sink, protocol=5)
                        sink.flush()
                        status = 0
                    finally:
                        os._exit(status)
                running.append((pid, sink))
            while (index := take(front=False)) is not None:
                results[index] = function(chunks[index])
            while running:
                pid, sink = running.pop()
                os.waitpid(pid, 0)
                sink.seek(0)
                while True:
                    try:  # what this process's own child wrote, nothing from outside
                        index, result = pickle.load(sink)  # noqa: S301
                    except Exception:  # the end, or what a failing child left
                        break
                    results[index] = result
        finally:
            for pid, _sink in running:  # an error here: the children go too
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
                    os.waitpid(pid, 0)
    return [r if r is not None else function(c) for r, c in zip(results, chunks, strict=True)]


def verify(
    output: Path,
    *,
    against: Path | Sequence[Path] | None = None,
    profile: Profile,
    map_dir: Path | None = None,
    show_values: bool = False,
    workers: int = 0,
    iod: IodCheck | str = IodCheck.STRUCTURE,
) -> VerifyReport:
    """Check a de-identified output folder (see :mod:`dicomveil.qc.verify` for the checks).

    Nothing in the data makes it raise: what could not be checked is in
    :attr:`VerifyReport.problems`.

    Parameters
    ----------
    output : pathlib.Path
        The de-identified output folder.
    against : pathlib.Path or sequence of pathlib.Path, optional
        The original inputs (files, folders or zip archives), as the run was given them:
        their identifying values are searched for, and what they already had is not
        reported. Each output file is compared with its input, matched through the UID map
        (``map_dir``) or, without one, by its pixel data.
    profile : Profile
        The profile the output was de-identified with.
    map_dir : pathlib.Path, optional
        The ``--map-dir`` of the run: its ``uids.csv`` matches the files.
    show_values : bool, default False
        Let messages hold the identifying values found (PHI).
    workers : int, default 0
        Processes used for large sets (0: one per core).
    iod : IodCheck or str, default IodCheck.STRUCTURE
        How ``dciodvfy`` runs where it is installed (see :class:`IodCheck`).

    Returns
    -------
    VerifyReport
        The findings, risk flags, notes and problems.

    Raises
    ------
    ValueError
        ``iod`` is not an :class:`IodCheck` mode.
    """
    iod = IodCheck(iod)
    roots = _roots(against)
    rules = _Rules.of(profile)
    notes: list[str] = []
    problems: list[str] = []
    output = Path(output)
    try:
        files = list(_files(output)) if output.exists() else []
    except OSError as exc:
        files = []
        problems.append(f"cannot read the output folder ({exc.strerror})")
    if not output.exists():
        problems.append("the output folder does not exist")
    elif not files and not problems:
        problems.append("the output folder holds no files")
    problems.extend(
        f"input {n} of --against does not exist"
        for n, root in enumerate(roots, 1)
        if not root.exists()
    )
    uid_map = _UidMap()
    if map_dir is not None:
        try:
            uid_map = _read_uid_map(Path(map_dir))
        except (OSError, ValueError, csv.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            problems.append(f"cannot read uids.csv in the map folder ({reason})")
    if problems:
        return VerifyReport(rules.name, len(files), problems=tuple(problems))
    count = workers or os.cpu_count() or 1

    needles: dict[str, Category] = {}
    kept: set[str] = set()
    inputs_by_sop: dict[str, str] = {}
    replaced: dict[str, dict[tuple[int, ...], tuple[str, str]]] = {}
    input_defined: set[str] = set()
    inputs_by_pixels: dict[str, str] = {}
    if roots:
        try:
            sources = [source for root in roots for source in _sources(root)]
        except OSError as exc:
            return VerifyReport(
                rules.name, len(files), problems=(f"cannot read the inputs ({exc.strerror})",)
            )
        unreadable = 0
        numbered = list(enumerate(sources, start=1))
        for facts in _map_parallel(_facts_chunk, numbered, count, (None, rules)):
            if facts is None:
                unreadable += 1
                continue
            inputs_by_sop.setdefault(facts.sop_uid, facts.source)
            replaced[facts.source] = facts.replaced
            input_defined.update(facts.defined)
            for text, category in facts.needles.items():
                needles.setdefault(text, category)
            kept.update(facts.kept)
        if unreadable:
            notes.append(f"{unreadable} input file(s) are not DICOM objects: not used")
        if not inputs_by_sop:
            notes.append("no DICOM input found under --against: nothing to compare with")
        elif map_dir is None and rules.replace_uids:
            dicom = sorted(set(inputs_by_sop.values()))
            inputs_by_pixels = _by_pixels(dicom, count)
    original_uids = {u for u, c in needles.items() if c is Category.UID}
    if rules.replace_uids:
        for old in uid_map.old_to_new:
            # A "UID" such as "0" (invalid, but real files hold it) identifies nothing and
            # would be found in any number: the originals of the map need two components.
            if not _well_known(old) and "." in old:
                needles.setdefault(old, Category.UID)
                original_uids.add(old)
    program = shutil.which("dciodvfy") if iod is not IodCheck.OFF else None
    if iod is not IodCheck.OFF and program is None:
        notes.append("dciodvfy (dicom3tools) is not installed: the IOD check was skipped")
    ctx = _Context(
        root=output,
        rules=rules,
        needles=_build_needles(needles, kept | _token_words(profile)),
        original_uids=frozenset(original_uids - kept),
        map_new_to_old={new: old for old, new in uid_map.old_to_new.items()},
        inputs_by_sop=inputs_by_sop,
        replaced=replaced,
        against=bool(roots),
        has_map=map_dir is not None,
        inputs_by_pixels=inputs_by_pixels,
        show_values=show_values,
        dciodvfy=program,
        iod=iod,
    )
    outcomes: list[_Outcome] = _map_parallel(_check_chunk, files, count, (ctx, None))
    findings = [f for o in outcomes for f in o.findings]
    findings.extend(uid_map.findings)
    across, inherited_references = _whole_set(ctx, outcomes, uid_map, input_defined)
    findings.extend(across)
    if inherited_references:
        notes.append(
            f"{inherited_references} reference(s) to instances outside the set were already "
            "unresolved in the inputs: not reported"
        )
    if roots and map_dir is None and rules.replace_uids and inputs_by_sop:
        matched = sum(o.matched_by_pixels for o in outcomes)
        others = (
            "; the others cannot be: values kept where the profile replaces them, and errors "
            "their inputs already had, are not compared for them"
            if matched < len(files)
            else ""  # there are no others (the note said so all the same)
        )
        notes.append(
            f"without --map-dir, {matched} of {len(files)} file(s) were matched to their input "
            f"by their pixel data{others}"
        )
    inherited = sum(o.inherited_invalid for o in outcomes)
    if inherited:
        notes.append(f"{inherited} invalid value(s) were already in the inputs: not reported")
    return VerifyReport(
        profile=rules.name,
        files=len(files),
        findings=tuple(findings),
        risk_flags=tuple(r for o in outcomes for r in o.flags),
        notes=tuple(notes),
    )


def _roots(against: Path | Sequence[Path] | None) -> list[Path]:
    if against is None:
        return []
    if isinstance(against, (str, os.PathLike)):
        return [Path(against)]
    return [Path(root) for root in against]


def _digest_chunk(sources: list[str]) -> list[str | None]:
    return [_pixel_digest(source) for source in sources]


def _by_pixels(sources: list[str], workers: int) -> dict[str, str]:
    """Pixel data digest -> input, for the digests one input alone has (a blank image
    repeated in a series matches nothing)."""
    digests = _map_parallel(_digest_chunk, sources, workers, (None, None))
    counts = Counter(d for d in digests if d is not None)
    return {d: source for d, source in zip(digests, sources, strict=True) if d and counts[d] == 1}


def _token_words(profile: Profile) -> set[str]:
    """What a de-identifier writes whatever the input: the words of the tokens the profile's
    free-text cleaner writes (``[NAME]``, ``[DATE]``, ...: a name part such as "Name" found
    in them is the token, not a leak) and the code values of PS3.16 CID 7050 that record
    the method (``113100``, ...: an original time of 11:31:00 is not found in them)."""
    from dicomveil.cleaners.text import Category as TextCategory
    from dicomveil.standard.options import BASIC_PROFILE_CODE, Option

    words: set[str] = set()
    for category in TextCategory:
        words.update(re.findall(r"[A-Za-z]{2,}", profile.clean.token(category)))
    words.add(BASIC_PROFILE_CODE[0])
    words.update(code[0] for option in Option if (code := option.code) is not None)
    return words
