"""The black-box fuzz campaign (``tests/fuzz.py``): 2,000 deterministic cases through
``dicomveil run``, every one of which must pass.

A case passes when the run neither hangs nor prints a traceback, exits 0, 1 or 2 (2 only for
usage errors), accounts for every input (written and readable by pydicom with ``force=False``,
withheld, skipped or failed with a reason), leaves the inputs unchanged and no temporary file in
the output, and shows the planted name and ID nowhere: not in stdout/stderr, not in an output
file's name or bytes, not in the names of the map files. On failure the message is a short
table (class, case id, kind, what went wrong) that never holds the planted values; rebuild one
case with ``python -m tests.fuzz --seed 20261205 --index N --judge DIR``.

The larger campaign is ``benchmarks/bench_fuzz.py``.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz import KINDS, Judge, Verdict, control_case, failure_table, make_cases, seeds
from tests.realdata import REQUIRE
from tests.support.scratch import scratch

SEED = 20261205
CASES = 3000


def _no_seeds() -> None:
    message = "no seed files: pydicom's test files are missing"
    if REQUIRE:  # CI: missing data is a failure, never a silent skip
        pytest.fail(message)
    pytest.skip(message)


def _judge(folder: Path) -> Judge:
    if not seeds():
        _no_seeds()
    # at most 40 halvings, in the first 100 s: the test stays under 3 minutes
    return Judge(folder, batch_size=100, workers=2, jobs=2, bisect_limit=40, bisect_budget=100)


def _explain(verdicts: list[Verdict], judge: Judge, seconds: float) -> str:
    lines = [
        f"{len(verdicts)} cases in {seconds:.0f} s, {judge.runs} runs of dicomveil, "
        f"{judge.bisections} halvings to isolate run-level problems"
    ]
    failed = [v for v in verdicts if v.problems]
    if failed:
        lines.append(failure_table(verdicts))
    if judge.findings:
        lines.append("found in runs, no single input to blame:")
        lines += [f"  {what} ({n} runs)" for what, n in judge.findings.most_common()]
    skipped = sorted({f"{v.case.cls}/{v.case.kind}: {v.skipped}" for v in verdicts if v.skipped})
    lines += [f"not run: {s}" for s in skipped]
    return "\n".join(lines)


# A stand-in for the dicomveil command, to check the judge itself: it skips every input with a
# reason, except that the inputs of the case folder named by FAKE_CULPRIT make it crash, hang or
# copy the input (planted values and all) into the output, as FAKE_MODE says.
_FAKE_CLI = """\
import json, os, shutil, sys, time
args = sys.argv[1:]
if args[0] == "keygen":
    open(args[1], "w").write("fake key")
    sys.exit(0)
if "--help" in args:
    print("--json FILE")
    sys.exit(0)
positional, options, i = [], {}, 1
while i < len(args):
    if args[i].startswith("--"):
        options[args[i]] = args[i + 1]
        i += 2
    else:
        positional.append(args[i])
        i += 1
*inputs, out = positional
mode, culprit = os.environ["FAKE_MODE"], os.environ["FAKE_CULPRIT"]
hit = any(culprit in path for path in inputs)
if hit and mode == "crash":
    print("Traceback (most recent call last):", file=sys.stderr)
    print("ValueError: boom", file=sys.stderr)
    sys.exit(1)
if hit and mode == "hang":
    time.sleep(60)
os.makedirs(out, exist_ok=True)
files = []
for top in inputs:
    for folder, _, names in os.walk(top):
        for name in sorted(names):
            path = os.path.join(folder, name)
            entry = {"input": path, "outcome": "skipped", "reason": "fake", "output": None}
            if mode == "leak" and culprit in path:
                target = os.path.join(out, "leak.dcm")
                shutil.copyfile(path, target)
                entry.update(outcome="written", reason="", output=target)
            files.append(entry)
with open(options["--json"], "w") as fh:
    json.dump({"files": files}, fh)
"""


@pytest.mark.parametrize(
    ("mode", "problem", "halvings"),
    [("crash", "traceback", 4), ("hang", "hang", 4), ("leak", "phi-output", 0)],
)
def test_judge_isolates_the_culprit(tmp_path: Path, mode: str, problem: str, halvings: int) -> None:
    """The judge against a fake CLI: one bad case among 16 in one batch is found (a crash or a
    hang by halving the batch, a leak by the output's owner), and the 15 others pass."""
    if not seeds():
        _no_seeds()
    fake = tmp_path / "fake-dicomveil"
    fake.write_text(f"#!{sys.executable}\n" + textwrap.dedent(_FAKE_CLI), encoding="utf-8")
    fake.chmod(0o755)
    cases = [c for c in make_cases(200, SEED) if c.cls == "parse"][:16]
    culprit = cases[5]
    judge = Judge(
        tmp_path / "work",
        batch_size=16,
        timeout=1.5,
        per_case_timeout=0,
        exe=str(fake),
        env={"FAKE_MODE": mode, "FAKE_CULPRIT": culprit.key},
    )
    verdicts = judge.judge(cases)
    failing = {v.case.key: sorted({p.kind for p in v.problems}) for v in verdicts if v.problems}
    assert list(failing) == [culprit.key]
    assert problem in failing[culprit.key]
    assert judge.bisections == halvings


def test_seeds_pass_unmutated(tmp_path: Path) -> None:
    """The judge's control: the planted seeds, unmutated, must come out clean."""
    judge = _judge(tmp_path)
    verdict = judge.judge([control_case(SEED)])[0]
    assert verdict.passed, "; ".join(str(p) for p in verdict.problems)


def test_read_only_output_parent(tmp_path: Path) -> None:
    """The output-path case that needs permissions to bind: skipped as root, and says so."""
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder does not stop root, case not run")
    index = next(
        i for i, case in enumerate(make_cases(100, SEED)) if case.kind == "read-only-parent"
    )
    judge = _judge(tmp_path)
    verdict = judge.judge([make_cases(index + 1, SEED)[index]])[0]
    assert verdict.passed, "; ".join(str(p) for p in verdict.problems)


@pytest.fixture(scope="module")
def campaign(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[Verdict], Judge, float]]:
    """Every case judged once; the tests below read the verdicts of their class."""
    cases = make_cases(CASES, SEED)
    with scratch(tmp_path_factory, "fuzz") as folder:
        judge = _judge(folder)
        start = time.monotonic()
        verdicts = judge.judge(cases)
        assert [v.case for v in verdicts] == cases
        yield verdicts, judge, time.monotonic() - start


def test_the_cases_cover_every_kind() -> None:
    cases = make_cases(CASES, SEED)
    assert {(c.cls, c.kind) for c in cases} == {(c, k) for c, ks in KINDS.items() for k in ks}


@pytest.mark.parametrize("cls", sorted(KINDS))
def test_fuzz_campaign(campaign: tuple[list[Verdict], Judge, float], cls: str) -> None:
    verdicts, judge, seconds = campaign
    mine = [v for v in verdicts if v.case.cls == cls]
    assert mine, f"no case of class {cls}"
    if any(v.problems for v in mine):
        pytest.fail(_explain(mine, judge, seconds), pytrace=False)


def test_no_run_level_problem(campaign: tuple[list[Verdict], Judge, float]) -> None:
    """Problems of a whole run that no single input is to blame for."""
    _, judge, seconds = campaign
    assert not judge.findings, _explain([], judge, seconds)
