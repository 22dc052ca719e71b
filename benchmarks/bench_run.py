#!/usr/bin/env python
"""Throughput of ``dicomveil run`` next to ``cp -r`` and plain pydicom, on the same files.

Usage::

    python benchmarks/bench_run.py [--files N] [--size 512] [--rounds 3] [--workers 0]
                                   [--corpus DIR] [--scratch DIR] [--no-cli] [--json OUT]
    python benchmarks/bench_run.py --verify-pixels [--sample 25] [--files N] [--size 512]

A deterministic corpus (CT series, and an MR series for every third patient, built with
:mod:`dicomveil.synthetic`: full PHI headers, private groups, nested sequences) is generated
once and cached; then every contender runs ``--rounds`` times, the contenders alternating
round by round, each into a fresh output folder removed afterwards. The table gives, per
contender, the median wall time, files/s, MB/s, the ratio of its files/s to ``cp -r``'s,
CPU time (this process and its children) and peak resident memory.

Performance targets belong here (and in the README next to this file), never as thresholds
in the test suite. ``--verify-pixels`` is a sanity check, not a timing: it de-identifies a
sample and checks that every output's pixel data is byte-identical to its input's.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import multiprocessing
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom import dcmread, dcmwrite

import dicomveil
from dicomveil import Key, Outcome, Profile, RunConfig, run, synthetic, write_key

# --------------------------------------------------------------------------------------------
# Settings that define the corpus (any change gives a new cache fingerprint)

CORPUS_FORMAT = "dicomveil-bench-corpus/1"
SLICES_PER_SERIES = 4  # "a few slices each"
MR_EVERY = 3  # every third patient also has an MR series
PATIENT_SEED_BASE = 50_000  # fake_patient(PATIENT_SEED_BASE + i) for patient i = 1, 2, ...

PROFILE_NAME = "ps3.15-basic"
KEY = Key(bytes(range(32)))  # a fixed, public key: benchmark only
TODAY = dt.date(2025, 1, 15)  # fixed, so that the library runs are reproducible
CHUNK = 8  # files per task for the plain-pydicom pool (dicomveil's RunConfig default)
WARMUP_FILES = 8
MB = 1_000_000


class BenchError(Exception):
    """A contender failed or the corpus is unusable: the numbers would be meaningless."""


# --------------------------------------------------------------------------------------------
# The corpus


@dataclass(frozen=True)
class Corpus:
    root: Path  # holds manifest.json and dicom/
    files: tuple[Path, ...]  # absolute, sorted
    total_bytes: int
    modalities: dict[str, int]
    digest: str  # sha256 over names and bytes of every file, in order
    generated: bool  # False: reused from the cache
    seconds: float  # time to generate (or to validate the cache)

    @property
    def dicom(self) -> Path:
        return self.root / "dicom"

    def relative(self, path: Path) -> Path:
        return path.relative_to(self.dicom)


def _corpus_fingerprint(n_files: int, size: int) -> str:
    synthetic_source = Path(synthetic.__file__).read_bytes()
    params = {
        "format": CORPUS_FORMAT,
        "files": n_files,
        "size": size,
        "slices": SLICES_PER_SERIES,
        "mr_every": MR_EVERY,
        "seed_base": PATIENT_SEED_BASE,
        "synthetic_sha256": hashlib.sha256(synthetic_source).hexdigest(),
        "pydicom": pydicom.__version__,
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:20]


def default_corpus_dir(n_files: int, size: int) -> Path:
    return Path(tempfile.gettempdir()) / "dicomveil-bench" / f"corpus-{n_files}x{size}"


def _read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != CORPUS_FORMAT:
        return None
    return data


def _manifest_valid(root: Path, manifest: dict[str, Any], fingerprint: str) -> bool:
    if manifest.get("fingerprint") != fingerprint:
        return False
    for rel, size in manifest["files"]:
        try:
            if (root / "dicom" / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _remove_listed(root: Path, manifest: dict[str, Any]) -> None:
    """Remove the files an earlier (stale) generation wrote, and folders left empty."""
    (root / "manifest.json").unlink(missing_ok=True)
    folders: set[Path] = set()
    for rel, _size in manifest.get("files", []):
        path = root / "dicom" / rel
        path.unlink(missing_ok=True)
        folders.update(p for p in path.parents if root in p.parents)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty: holds something we did not write


def _generate(dicom: Path, n_files: int, size: int) -> dict[str, int]:
    """Write n_files files under dicom/pNNNN/{ct,mr}/IMnnnn; returns counts per modality."""
    counts = {"CT": 0, "MR": 0}
    written = 0
    patient_index = 0
    while written < n_files:
        patient_index += 1
        patient = synthetic.fake_patient(PATIENT_SEED_BASE + patient_index)
        folder = dicom / f"p{patient_index:04d}"
        slices = min(SLICES_PER_SERIES, n_files - written)
        ct = synthetic.ct_series(
            patient, seed=patient_index, n_slices=slices, rows=size, columns=size
        )
        written += len(synthetic.write_series(ct, folder / "ct"))
        counts["CT"] += slices
        slices = min(SLICES_PER_SERIES, n_files - written)
        if patient_index % MR_EVERY == 0 and slices > 0:
            mr = synthetic.mr_series(
                patient, seed=patient_index, n_slices=slices, rows=size, columns=size
            )
            written += len(synthetic.write_series(mr, folder / "mr"))
            counts["MR"] += slices
    return counts


def prepare_corpus(root: Path, n_files: int, size: int) -> Corpus:
    """Reuse the corpus cached in root if it matches; (re)generate it otherwise."""
    started = time.perf_counter()
    fingerprint = _corpus_fingerprint(n_files, size)
    manifest = _read_manifest(root)
    generated = False
    if manifest is None or not _manifest_valid(root, manifest, fingerprint):
        if manifest is not None:
            _remove_listed(root, manifest)
        elif root.exists() and any(root.iterdir()):
            raise BenchError(
                f"{root} is not empty and was not written by this benchmark; "
                "give a new or empty folder to --corpus"
            )
        dicom = root / "dicom"
        if dicom.exists():
            shutil.rmtree(dicom)  # only our own leftovers can be here (checked above)
        counts = _generate(dicom, n_files, size)
        digest = hashlib.sha256()
        entries: list[list[Any]] = []
        for path in sorted(p for p in dicom.rglob("*") if p.is_file()):
            rel = path.relative_to(dicom).as_posix()
            data = path.read_bytes()
            digest.update(rel.encode() + b"\0" + data)
            entries.append([rel, len(data)])
        manifest = {
            "format": CORPUS_FORMAT,
            "fingerprint": fingerprint,
            "files": entries,
            "modalities": counts,
            "sha256": digest.hexdigest(),
            "bytes": sum(size for _rel, size in entries),
            "dicomveil": dicomveil.__version__,
            "pydicom": pydicom.__version__,
        }
        temp = root / "manifest.json.tmp"
        temp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        temp.replace(root / "manifest.json")  # written last: its presence means complete
        generated = True
    files = tuple(root / "dicom" / rel for rel, _size in manifest["files"])
    if len(files) != n_files:
        raise BenchError(f"corpus in {root} holds {len(files)} files, not {n_files}")
    return Corpus(
        root=root,
        files=files,
        total_bytes=int(manifest["bytes"]),
        modalities={str(k): int(v) for k, v in manifest["modalities"].items()},
        digest=str(manifest["sha256"]),
        generated=generated,
        seconds=time.perf_counter() - started,
    )


def warm_page_cache(corpus: Corpus) -> None:
    """Read every input once so that no contender pays for the first disk read."""
    for path in corpus.files:
        with path.open("rb") as fh:
            while fh.read(1 << 20):
                pass


# --------------------------------------------------------------------------------------------
# Memory and CPU measurement (Linux /proc where available)

_PROC = Path("/proc")
_HWM = re.compile(rb"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


def _vm_hwm_kb(pid: int | str) -> int | None:
    """A process's peak resident set size in kB (None: gone, zombie or no /proc)."""
    try:
        found = _HWM.search((_PROC / str(pid) / "status").read_bytes())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def reset_own_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False if impossible."""
    try:
        (_PROC / "self" / "clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


class TreeSampler:
    """Polls /proc for every descendant of this process and keeps each one's peak RSS.

    VmHWM only grows, so a process's last sample before it exits is its peak up to then;
    with pool workers that reach their peak on their first files, this is accurate.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peaks_kb: dict[int, int] = {}
        self.ignored: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self.enabled = (_PROC / "self" / "status").exists()

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sweep()
        self.sweep()

    def sweep(self) -> None:
        children: dict[int, list[int]] = {}
        with os.scandir(_PROC) as entries:
            for entry in entries:
                if not entry.name.isdigit():
                    continue
                try:
                    raw = (_PROC / entry.name / "stat").read_bytes()
                    ppid = int(raw[raw.rindex(b")") + 2 :].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        stack = list(children.get(os.getpid(), []))
        while stack:
            pid = stack.pop()
            stack.extend(children.get(pid, []))
            if pid in self.ignored:
                continue
            hwm = _vm_hwm_kb(pid)
            if hwm is not None and hwm > self.peaks_kb.get(pid, 0):
                self.peaks_kb[pid] = hwm


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _gnu_time() -> str | None:
    """/usr/bin/time if it is GNU time (``-v`` reports the maximum resident set size)."""
    path = shutil.which("time", path=os.pathsep.join(["/usr/bin", "/bin"]))
    if path is None:
        return None
    try:
        probe = subprocess.run(
            [path, "-v", sys.executable, "-c", "pass"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "Maximum resident set size" in probe.stderr else None


_TIME_MAXRSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


# --------------------------------------------------------------------------------------------
# Contenders


def _pydicom_copy(src_root: Path, out_root: Path, rels: Sequence[Path]) -> int:
    for rel in rels:
        ds = dcmread(src_root / rel)
        destination = out_root / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        dcmwrite(destination, ds)
    return len(rels)


def _pydicom_chunk(job: tuple[Path, Path, list[Path]]) -> int:
    return _pydicom_copy(*job)


def _pydicom_pool(corpus: Corpus, out: Path, workers: int) -> None:
    rels = [corpus.relative(p) for p in corpus.files]
    jobs = [(corpus.dicom, out, rels[i : i + CHUNK]) for i in range(0, len(rels), CHUNK)]
    with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
        done = sum(pool.map(_pydicom_chunk, jobs))
    if done != len(rels):
        raise BenchError(f"plain pydicom pool wrote {done} of {len(rels)} files")


def _dicomveil(corpus: Corpus, out: Path, workers: int, profile: Profile) -> None:
    config = RunConfig(profile=profile, key=KEY, output=out, workers=workers, today=TODAY)
    summary = run([corpus.dicom], config)
    written = summary.count(Outcome.WRITTEN)
    if written != len(corpus.files):
        reasons = {o.value: dict(summary.reasons(o)) for o in Outcome if summary.count(o)}
        raise BenchError(f"dicomveil wrote {written} of {len(corpus.files)} files: {reasons}")


def _dicomveil_command() -> list[str]:
    """The ``dicomveil`` script next to this interpreter, else on PATH, else via -c."""
    beside = Path(sys.executable).parent / "dicomveil"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("dicomveil")
    if found:
        return [found]
    return [sys.executable, "-c", "from dicomveil.cli import main; main()"]


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    call: Callable[[Path], None] | None = None  # in this process
    command: Callable[[Path], list[str]] | None = None  # as a subprocess
    spawns: bool = False  # starts worker processes (sample their memory)
    check_output: Callable[[Path], None] | None = None


def _expect_files(n: int) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        found = sum(1 for p in out.rglob("*") if p.is_file())
        if found != n:
            raise BenchError(f"expected {n} output files in {out}, found {found}")

    return check


def build_contenders(
    corpus: Corpus, workers: int, key_file: Path, include_cli: bool
) -> list[Contender]:
    profile = Profile.named(PROFILE_NAME)
    n_workers = workers or os.cpu_count() or 1
    all_cores = f"{n_workers} workers" + (" (all cores)" if workers == 0 else "")
    rels = [corpus.relative(p) for p in corpus.files]
    check = _expect_files(len(corpus.files))
    contenders = [
        Contender(
            "cp -r",
            "cp -r of the input folder (subprocess): the floor of copying the bytes",
            command=lambda out: ["cp", "-r", str(corpus.dicom), str(out)],
            check_output=check,
        ),
        Contender(
            "pydicom, 1 process",
            "dcmread + dcmwrite of every file, in this process",
            call=lambda out: None if _pydicom_copy(corpus.dicom, out, rels) else None,
            check_output=check,
        ),
        Contender(
            f"pydicom, {n_workers} procs",
            f"dcmread + dcmwrite, ProcessPoolExecutor with {all_cores}, {CHUNK} files a task",
            call=lambda out: _pydicom_pool(corpus, out, n_workers),
            spawns=True,
            check_output=check,
        ),
        Contender(
            "dicomveil, 1 worker",
            f"dicomveil.run, {PROFILE_NAME}, workers=1 (in this process)",
            call=lambda out: _dicomveil(corpus, out, 1, profile),
            check_output=check,
        ),
        Contender(
            f"dicomveil, {n_workers} workers",
            f"dicomveil.run, {PROFILE_NAME}, workers={workers} ({all_cores})",
            call=lambda out: _dicomveil(corpus, out, workers, profile),
            spawns=True,
            check_output=check,
        ),
    ]
    if include_cli:
        cli = _dicomveil_command()
        contenders.append(
            Contender(
                "dicomveil CLI",
                f"`dicomveil run -p {PROFILE_NAME} --workers {workers}` as a subprocess "
                f"({all_cores}; includes interpreter start-up and imports)",
                command=lambda out: [
                    *cli,
                    "run",
                    "--profile",
                    PROFILE_NAME,
                    "--key",
                    str(key_file),
                    "--workers",
                    str(workers),
                    str(corpus.dicom),
                    str(out),
                ],
                spawns=True,
                check_output=check,
            )
        )
    return contenders


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Sample:
    seconds: float
    cpu_seconds: float
    peak_rss_kb: int | None  # the largest single process
    sum_rss_kb: int | None  # sum of every process's peak (an upper bound: shared pages)
    processes: int


@dataclass
class Result:
    contender: Contender
    samples: list[Sample] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def cpu_s(self) -> float:
        return statistics.median(s.cpu_seconds for s in self.samples)

    @property
    def peak_rss_kb(self) -> int | None:
        values = [s.peak_rss_kb for s in self.samples if s.peak_rss_kb is not None]
        return max(values) if values else None

    @property
    def sum_rss_kb(self) -> int | None:
        values = [s.sum_rss_kb for s in self.samples if s.sum_rss_kb is not None]
        return max(values) if values else None


def measure(contender: Contender, out: Path, gnu_time: str | None) -> Sample:
    """One timed run into out (which must not exist yet)."""
    gc.collect()
    os.sync()  # earlier rounds' dirty pages are not charged to this one
    in_process = contender.call is not None
    own_peak = in_process and reset_own_peak_rss()
    sampler = TreeSampler() if contender.spawns or not in_process else None
    time_file = out.parent / f".{out.name}.time"
    if sampler is not None:
        sampler.start()
    self0, children0 = _cpu_seconds(resource.RUSAGE_SELF), _cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        if contender.call is not None:
            contender.call(out)
        else:
            assert contender.command is not None
            argv = contender.command(out)
            if gnu_time is not None:
                argv = [gnu_time, "-v", "-o", str(time_file), *argv]
            with subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ) as proc:
                if sampler is not None and gnu_time is not None:
                    sampler.ignored.add(proc.pid)  # the wrapper, not the contender
                stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                raise BenchError(
                    f"{contender.name} exited with status {proc.returncode}:\n"
                    f"{stdout[-2000:]}{stderr[-2000:]}"
                )
        seconds = time.perf_counter() - started
    finally:
        if sampler is not None:
            sampler.stop()
    cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - children0
    if in_process:
        cpu += _cpu_seconds(resource.RUSAGE_SELF) - self0
    peaks = dict(sampler.peaks_kb) if sampler is not None and sampler.enabled else {}
    if own_peak:
        own = _vm_hwm_kb("self")
        if own is not None:
            peaks[os.getpid()] = own
    if not in_process and gnu_time is not None:
        text = time_file.read_text(encoding="utf-8", errors="replace")
        time_file.unlink()
        found = _TIME_MAXRSS.search(text)
        if found:  # exact, where polling may miss a short-lived process's last pages
            biggest = max(peaks.values(), default=0)
            peaks.setdefault(-1, 0)
            if int(found.group(1)) > biggest:
                peaks[-1] = int(found.group(1)) - (biggest if peaks else 0)
    peak = max(peaks.values()) if peaks else None
    if not in_process and gnu_time is not None and found_max(time_file_text=None) is None:
        pass
    if contender.check_output is not None:
        contender.check_output(out)
    return Sample(seconds, cpu, peak, sum(peaks.values()) if peaks else None, len(peaks))


def found_max(time_file_text: str | None) -> int | None:
    return None
