"""The real-data matrix: every real file under every preset and option combination.

Used by ``tests/test_real_matrix.py`` (one test per file and profile) and by
``benchmarks/bench_matrix.py`` (the table of outcomes). Each case runs the real command
path: :func:`dicomveil.run` on the one file (in its own folders, with ``--map-dir``), then
the checks of the outcome against facts about the file (:mod:`tests.oracles`), and for a
written file :func:`dicomveil.qc.verify.verify` against its input and ``dciodvfy`` against the
input's own errors. The release gate (``run --verify``) is on for every configuration whose
verify findings are failures: a file it stops is a false alarm the judge reports.

Configurations: ``ps3.15-basic``; each option alone on ps3.15-basic; all clean options
together; all retain options together (with retain-long-full-dates); every option at once
(with retain-long-modified-dates: the two date options exclude each other); and the other
presets. clean-pixel-data reads every frame with OCR: alone and with the clean options it
runs on the files of at most :data:`OCR_SAMPLE_PIXELS` pixels (all frames); every file runs
with it under "all options".
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dicomveil import Key, Option, Profile, RunConfig, run
from dicomveil.identity.envelope import Recipient
from dicomveil.qc.verify import verify

from .oracles import DCIODVFY, Config, Facts, facts, judge, new_iod_errors
from .realdata import RealFile, place, real_files
from .support.certificates import holder

KEY = Key(b"matrix-key-0123456789abcdef-0123")
TODAY = dt.date(2026, 11, 30)
OCR_SAMPLE_PIXELS = 1_000_000

_CLEAN = ("clean-descriptors", "clean-structured-content", "clean-graphics", "clean-pixel-data")
_RETAIN = tuple(
    o.value
    for o in Option
    if o.value.startswith("retain-") and o is not Option.RETAIN_LONG_MODIFIED_DATES
)
_ALL = tuple(o.value for o in Option if o is not Option.RETAIN_LONG_FULL_DATES)
PRESETS = ("original", "nidb-anonymize", "nidb-anonymize-full", "qmenta", "lab-dicombrowser")

CONFIGS: tuple[Config, ...] = (
    Config("ps3.15-basic", "ps3.15-basic"),
    *(Config(f"+{o.value}", "ps3.15-basic", (o.value,)) for o in Option),
    Config("all-clean", "ps3.15-basic", _CLEAN),
    Config("all-retain", "ps3.15-basic", _RETAIN),
    Config("all-options", "ps3.15-basic", _ALL),
    Config("neuro-research", "neuro-research"),
    *(Config(name, name) for name in PRESETS),
)


def sampled(config: Config, file: RealFile) -> bool:
    """Whether the case runs (see the module docstring)."""
    if config.has("clean-pixel-data") and config.name != "all-options":
        return facts(file.path).pixel_count <= OCR_SAMPLE_PIXELS
    return True


def cases() -> Iterator[tuple[Config, RealFile]]:
    for file in real_files():
        for config in CONFIGS:
            yield config, file


# The presets that reproduce another tool's list keep, by their definition, elements that can
# hold identifying values (StudyID, AccessionNumber, descriptions, private groups); verify's
# leak findings on them are counted (the table's "kept leaks"), not failures. Everything else
# is checked as for the PS3.15 profiles: outcome, conformance to their own rules, references,
# validity and dciodvfy.
LIST_PRESETS = ("nidb-anonymize", "nidb-anonymize-full", "qmenta", "lab-dicombrowser")


@dataclass
class CaseResult:
    outcome: str
    reason: str
    problems: list[str] = field(default_factory=list)
    kept_leaks: list[str] = field(default_factory=list)  # list presets only (see above)


def _recipients(config: Config) -> tuple[Recipient, ...]:
    """The reversible option's recipient (a certificate made for the matrix)."""
    return (holder("matrix").recipient,) if config.has("reversible") else ()


def profile_of(config: Config) -> Profile:
    return Profile.named(config.profile).with_options(config.options)


def run_case(config: Config, file: RealFile, workdir: Path | None = None) -> CaseResult:
    """De-identify one file under one configuration and check everything about it."""
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="dv-matrix-")) if workdir is None else workdir
    try:
        return _run_case(config, file, root)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _run_case(config: Config, file: RealFile, root: Path) -> CaseResult:
    source = root / "in"
    target = place(file.path, source)
    output, maps = root / "out", root / "maps"
    profile = profile_of(config)
    # The release gate (run --verify) is on wherever verify's findings are failures: a file
    # it stops is withheld, which the judge reports (a false alarm: verify found it clean).
    gated = not config.copy and config.profile not in LIST_PRESETS
    summary = run(
        [source],
        RunConfig(
            profile=profile, key=KEY, output=output, map_dir=maps, workers=1, today=TODAY,
            verify=gated, recipients=_recipients(config),
        ),
    )  # fmt: skip
    results = summary.results
    problems: list[str] = []
    if len(results) != 1:
        # A zip archive holds one member in deid-data; more would need a case each.
        problems.append(f"{len(results)} results for one input")
    result = results[0]
    outcome, reason = result.outcome.value, result.reason
    f = facts(file.path) if not file.is_zip else _zip_facts(target, root)
    verdict = judge(f, config, outcome, reason)
    if verdict:
        problems.append(verdict)
    kept: list[str] = []
    if outcome == "written" and result.output is not None:
        found = _check_written(config, file, source, output, maps, result.output)
        for problem in found:
            if config.profile in LIST_PRESETS and problem.startswith("verify: leak:"):
                kept.append(problem)
            else:
                problems.append(problem)
    return CaseResult(outcome, reason, problems, kept)


def _zip_facts(archive: Path, root: Path) -> Facts:
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        member = next(i for i in zf.infolist() if not i.is_dir())
        extracted = root / "member.dcm"
        with zf.open(member) as src, extracted.open("wb") as out:
            shutil.copyfileobj(src, out)
    return facts(extracted)


def _check_written(
    config: Config,
    file: RealFile,
    source: Path,
    output: Path,
    maps: Path,
    written: Path,
) -> list[str]:
    problems: list[str] = []
    if not config.copy:
        report = verify(
            output, against=source, profile=profile_of(config), map_dir=maps, workers=1,
            iod="off",
        )  # fmt: skip
        problems.extend(f"verify could not check: {p}" for p in report.problems)
        for finding in report.findings:
            if finding.check.value not in ("leak", "conformance", "reference", "validity"):
                continue
            key = f"{finding.check.value}:{finding.category.value}:{finding.path.split('>')[-1]}"
            problems.append(f"verify: {key} {finding.message}")
    if DCIODVFY is not None and not file.is_zip:
        problems.extend(f"dciodvfy: {e}" for e in new_iod_errors(file.path, written))
    return problems
