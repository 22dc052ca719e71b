"""The command line as pydicom and dcmtk users expect it (issue 13): per-file lines on a
terminal, tables that are not cut in a pipe, ``--version``, ``-q``/``-v``, ``--dry-run``,
``--json`` reports with their schemas, readable help, shell completion, one key per output
folder, an owner-only ``diff.html``, and ``--redact-paths``.

The commands run in-process through :class:`typer.testing.CliRunner`; a terminal is simulated
with ``TTY_COMPATIBLE=1`` (Rich then treats stderr as one), a pipe by leaving ``COLUMNS``
unset (the runner's streams are no terminals).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from pydicom import dcmread
from rich.progress import Progress
from typer.testing import CliRunner, Result

import dicomveil.cli._progress as progress_module
from dicomveil._version import __version__
from dicomveil.cli import app
from dicomveil.cli._json import schema_path
from dicomveil.errors import DicomveilError
from dicomveil.identity.keys import read_key
from dicomveil.profiles import Profile, preset_names
from dicomveil.runs.output_key import MARKER_PREFIX, check_output_key, output_keys
from tests.support.commands import ENV, cli, keygen, validate

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "sample"
WITHHELD = SAMPLE / "us" / "IM0001"
NOT_DICOM = SAMPLE / "notes.txt"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keygen(tmp_path)


@pytest.fixture
def other_key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "other.key"
    assert cli("keygen", path).exit_code == 0
    return path


def invoke(env: dict[str, str | None], *args: str | Path) -> Result:
    """The command line with more environment (a terminal, no COLUMNS)."""
    runner = CliRunner(env={**ENV, **env})
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def lines_about(text: str, path: Path) -> list[str]:
    """The lines of ``text`` (control sequences removed) that name ``path``."""
    return [ln for ln in ANSI.sub("", text).splitlines() if str(path) in ln]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --------------------------------------------------------------------------------------------
# 1. A terminal shows each withheld, skipped and failed file, above the progress bar


def test_terminal_prints_each_withheld_and_skipped_file(
    tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars: list[Any] = []

    class SpyProgress(Progress):
        def update(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("total") is not None:  # told once the walk of the inputs ends
                bars.append(kwargs["total"])
            super().update(*args, **kwargs)

    monkeypatch.setattr(progress_module, "Progress", SpyProgress)
    source = tmp_path / "input"
    shutil.copytree(SAMPLE, source)
    broken = source / "ct1" / "IM0009"
    broken.write_bytes((source / "ct1" / "IM0001").read_bytes()[:1000])

    result = invoke(
        {"TTY_COMPATIBLE": "1"}, "run", "--key", key, "--workers", "1", source, tmp_path / "o"
    )

    assert result.exit_code == 1, result.output
    assert bars == [11], "a progress bar, counting the 11 inputs"
    for path, outcome in (
        (source / "us" / "IM0001", "withheld"),
        (source / "notes.txt", "skipped"),
        (broken, "failed"),
    ):
        found = lines_about(result.stderr, path)
        assert len(found) == 1 and found[0].startswith(f"{outcome} {path}: "), result.stderr


# --------------------------------------------------------------------------------------------
# 2. Without a terminal, tables are as wide as they need


def test_tables_are_not_cut_in_a_pipe(tmp_path: Path, key: Path) -> None:
    no_columns: dict[str, str | None] = {"COLUMNS": None, "LINES": None}
    profiles = invoke(no_columns, "profiles")
    assert profiles.exit_code == 0
    for name in preset_names():
        description = Profile.named(name).description
        assert any(description in line for line in profiles.stdout.splitlines()), name

    out = tmp_path / "out"
    assert cli("run", "--key", key, "--workers", "1", SAMPLE, out).exit_code == 0
    stray = out / ("a-file-name-long-enough-to-be-cut-at-eighty-columns-" * 2 + "notes.txt")
    stray.write_text("not DICOM\n", encoding="utf-8")
    verified = invoke(no_columns, "verify", "--iod", "off", out)
    assert verified.exit_code == 1
    assert stray.name in verified.stdout

    state = tmp_path / "state"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nae_title = "DICOMVEIL"\nport = 11112\nstate_dir = "{state}"\n\n'
        f'[[route]]\nname = "research"\ncalling_ae = ["SCANNER"]\nprofile = "ps3.15-basic"\n'
        f'key = "{key}"\noutput = "{tmp_path / "gw-out"}"\n',
        encoding="utf-8",
    )
    status = invoke(no_columns, "gateway", "status", "--config", config)
    assert status.exit_code == 0, status.output
    header = next(ln for ln in status.stdout.splitlines() if "route" in ln)
    cells = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert cells[:3] == ["route", "received", "written"]
    assert "written/s (1 min)" in cells and "…" not in header


# --------------------------------------------------------------------------------------------
# 3. --version, -q, -v, --dry-run, --json


def test_version_option() -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"dicomveil {__version__}\n"


def test_quiet_prints_only_errors_and_the_counts(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "input"
    shutil.copytree(SAMPLE, source)
    broken = source / "ct1" / "IM0009"
    broken.write_bytes((source / "ct1" / "IM0001").read_bytes()[:1000])

    result = cli("run", "-q", "--key", key, "--workers", "1", source, tmp_path / "o")

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"failed {broken}: ")
    assert lines[1:] == ["summary: written 8, withheld 1, skipped 1, failed 1"]


def test_verbose_names_every_written_file(tmp_path: Path, key: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", "-v", "--key", key, "--workers", "1", SAMPLE, out)
    assert result.exit_code == 0, result.output
    written = [ln for ln in result.stderr.splitlines() if ln.startswith("written ")]
    assert len(written) == 8
    targets = {Path(ln.split(" -> ", 1)[1]) for ln in written}
    assert targets == set(files_under(out))  # named below OUTPUT as typed
    assert lines_about(result.stderr, WITHHELD)[0].startswith("withheld ")
    assert cli("run", "-q", "-v", SAMPLE, tmp_path / "o2").exit_code == 2


def test_dry_run_decides_every_file_and_writes_nothing(tmp_path: Path, key: Path) -> None:
    out, maps = tmp_path / "out", tmp_path / "maps"
    dry_report, real_report = tmp_path / "dry.json", tmp_path / "real.json"
    common = ("--key", key, "--workers", "1", "--map-dir", maps, "--dicomdir")

    dry = cli("run", "--dry-run", "-v", *common, "--json", dry_report, SAMPLE, out)

    assert dry.exit_code == 0, dry.output
    assert not out.exists() and not maps.exists()
    assert "nothing is written" in dry.stderr
    assert "summary (dry run, nothing written): written 8, withheld 1, skipped 1" in dry.stderr
    assert len([ln for ln in dry.stderr.splitlines() if ln.startswith("would write ")]) == 8
    assert lines_about(dry.stderr, NOT_DICOM)[0].startswith("skipped ")
    decided = json.loads(dry_report.read_text(encoding="utf-8"))
    validate(decided, "run")
    assert decided["dry_run"] is True

    real = cli("run", *common, "--json", real_report, SAMPLE, out)

    assert real.exit_code == 0, real.output
    done = json.loads(real_report.read_text(encoding="utf-8"))
    assert done["dry_run"] is False
    assert sorted(map(json.dumps, decided["files"])) == sorted(map(json.dumps, done["files"]))


def test_dry_run_with_two_inputs_of_one_uid_fails_one(tmp_path: Path, key: Path) -> None:
    source = tmp_path / "input"
    (source / "a").mkdir(parents=True)
    (source / "b").mkdir()
    for folder in ("a", "b"):
        shutil.copy(SAMPLE / "ct1" / "IM0001", source / folder / "IM0001")
    result = cli("run", "--dry-run", "--key", key, source, tmp_path / "out")
    assert result.exit_code == 1
    assert "same SOP Instance UID" in result.stderr
    assert not (tmp_path / "out").exists()


def test_explain_json_matches_its_schema(tmp_path: Path, key: Path) -> None:
    path = SAMPLE / "ct1" / "IM0001"
    report = tmp_path / "explain.json"
    result = cli("explain", "--key", key, "--json", report, path)
    assert result.exit_code == 0, result.output
    document = json.loads(report.read_text(encoding="utf-8"))
    validate(document, "explain")
    assert document["file"] == str(path) and document["show_values"] is False
    keywords = {e["element"]: e for e in document["elements"]}
    assert keywords["PatientName"]["tag"] == "(0010,0010)"
    assert "before" not in keywords["PatientName"]
    assert str(dcmread(path).PatientName) not in report.read_text(encoding="utf-8")
    assert stat.S_IMODE(report.stat().st_mode) == 0o644

    valued = tmp_path / "values.json"
    result = cli("explain", "--key", key, "--show-values", "--json", valued, path)
    assert result.exit_code == 0
    validate(json.loads(valued.read_text(encoding="utf-8")), "explain")
    assert str(dcmread(path).PatientName) in valued.read_text(encoding="utf-8")
    assert stat.S_IMODE(valued.stat().st_mode) == 0o600


def test_explain_json_of_the_pixel_step(tmp_path: Path, key: Path) -> None:
    pytest.importorskip("numpy", reason="the pixels extra is not installed: numpy")
    pytest.importorskip("PIL", reason="the pixels extra is not installed: Pillow")
    from dicomveil.cleaners.pixels import ocr

    if ocr.unavailable() is not None:
        pytest.skip(ocr.unavailable() or "")
    report = tmp_path / "explain.json"
    result = cli("explain", "--key", key, "-o", "clean-pixel-data", "--json", report, WITHHELD)
    assert result.exit_code == 0, result.output
    document = json.loads(report.read_text(encoding="utf-8"))
    validate(document, "explain")
    pixels = document["pixels"]
    assert pixels["signals"] and pixels["frames"][0]["frame"] == 1
    assert pixels["frames"][0]["found"] and pixels["frames"][0]["redacted"]
    assert all("text" not in found for found in pixels["frames"][0]["found"])


def test_profiles_json_matches_its_schema(tmp_path: Path) -> None:
    report = tmp_path / "profiles.json"
    result = cli("profiles", "--json", report)
    assert result.exit_code == 0
    document = json.loads(report.read_text(encoding="utf-8"))
    validate(document, "profiles")
    assert [p["name"] for p in document["profiles"]] == list(preset_names())
    assert "retain-uids" in {o["option"] for o in document["options"]}


def test_diff_json_matches_its_schema_and_is_owner_only(tmp_path: Path, key: Path) -> None:
    out, maps, report = tmp_path / "out", tmp_path / "maps", tmp_path / "diff.json"
    ran = cli(
        "run", "--key", key, "--workers", "1", "--map-dir", maps,
        "-o", "retain-long-modified-dates", SAMPLE, out,
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output

    result = cli("diff", "--map-dir", maps, "--json", report, SAMPLE, out)

    assert result.exit_code == 0, result.output
    document = json.loads(report.read_text(encoding="utf-8"))
    validate(document, "diff")
    assert len(document["pairs"]) == 8
    assert {p["matched_by"] for p in document["pairs"]} == {"uid map"}
    assert document["changes"]["shifted"] > 0
    assert all(p["date_offset_days"] for p in document["pairs"])
    assert {n["file"] for n in document["not_compared"]} == {str(NOT_DICOM)}
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    names = {str(ds.PatientName) for ds in map(dcmread, (SAMPLE / "ct1").iterdir())}
    assert not any(name in report.read_text(encoding="utf-8") for name in names)


def test_verify_json_matches_its_schema(tmp_path: Path, key: Path) -> None:
    out, maps, report = tmp_path / "out", tmp_path / "maps", tmp_path / "verify.json"
    ran = cli("run", "--key", key, "--workers", "1", "--map-dir", maps, SAMPLE, out)
    assert ran.exit_code == 0, ran.output
    first = sorted(out.rglob("*.dcm"))[0]
    ds = dcmread(first)
    ds.InstitutionName = str(dcmread(SAMPLE / "ct1" / "IM0001").PatientName)  # a leak
    ds.save_as(first)
    args = ("verify", out, "--against", SAMPLE, "--map-dir", maps, "--iod", "off", "--json")

    result = cli(*args, report)

    assert result.exit_code == 1, result.output
    document = json.loads(report.read_text(encoding="utf-8"))
    validate(document, "verify")
    assert document["result"] == "findings" and document["schema"] == "verify"
    assert any(f["check"] == "leak" for f in document["findings"])
    assert stat.S_IMODE(report.stat().st_mode) == 0o644
    shown = cli(*args, report, "--show-values")
    assert shown.exit_code == 1
    validate(json.loads(report.read_text(encoding="utf-8")), "verify")
    assert stat.S_IMODE(report.stat().st_mode) == 0o600  # values: owner only

    missing = cli("verify", tmp_path / "nothing", "--json", report)
    assert missing.exit_code == 2
    document = json.loads(report.read_text(encoding="utf-8"))
    validate(document, "verify")
    assert document["result"] == "could-not-check" and document["problems"]


def test_the_schemas_name_every_value_the_code_can_write() -> None:
    """The enumerations of the verify and gateway-status schemas are the code's own."""
    from dicomveil.gateway.events import EventKind
    from dicomveil.qc.verify import Category, Check, RiskKind, Verdict

    verify = json.loads(schema_path("verify").read_text(encoding="utf-8"))["properties"]
    finding = verify["findings"]["items"]["properties"]
    assert finding["category"]["enum"] == [c.value for c in Category]
    assert finding["check"]["enum"] == [c.value for c in Check]
    assert verify["risk_flags"]["items"]["properties"]["flag"]["enum"] == [
        r.value for r in RiskKind
    ]
    assert verify["result"]["enum"] == [v.value for v in Verdict]
    status = json.loads(schema_path("gateway-status").read_text(encoding="utf-8"))
    route = status["properties"]["routes"]["additionalProperties"]["properties"]
    assert {k.value for k in EventKind} <= set(route)


def test_a_json_file_that_cannot_be_written_exits_2(tmp_path: Path) -> None:
    result = cli("profiles", "--json", tmp_path / "no" / "such" / "profiles.json")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot write ")


# --------------------------------------------------------------------------------------------
# 4. Help and shell completion


def _commands() -> Iterator[tuple[str, ...]]:
    group = typer.main.get_command(app)
    yield ()
    ctx = group.make_context("dicomveil", ["--help"], resilient_parsing=True)
    for name in group.list_commands(ctx):  # type: ignore[attr-defined]
        yield (name,)
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        if hasattr(command, "list_commands"):
            sub_ctx = command.make_context(name, [], resilient_parsing=True, parent=ctx)
            for sub in command.list_commands(sub_ctx):
                yield (name, sub)


@pytest.mark.parametrize("words", list(_commands()), ids=lambda w: " ".join(w) or "dicomveil")
def test_help_shows_metavars_not_python_types(words: tuple[str, ...]) -> None:
    result = cli(*words, "--help")
    assert result.exit_code == 0, result.output
    types = re.findall(r"<[a-z][^<>\s]*>", result.stdout)
    assert not types, f"Python types in the help: {types}"
    for line in result.stdout.splitlines():
        if "--help" in line:
            after = line.split("--help", 1)[1].strip(" │")
            assert after == "Show this message and exit.", "--help takes no value"


def test_run_help_names_what_each_option_takes() -> None:
    text = cli("run", "--help").stdout
    assert " run [OPTIONS] INPUT... OUTPUT" in " ".join(text.split())
    rows = {}
    for line in text.splitlines():
        if line.startswith("│ --"):
            name, *rest = line.strip("│ ").split()
            rows[name] = rest[1:] if re.fullmatch(r"-[a-z]", rest[0]) else rest
    assert rows["--workers"][0] == "N"
    assert rows["--map-dir"][0] == "DIR"
    assert rows["--key"][0] == "KEYFILE"
    assert rows["--dry-run"][0] == "Decide", "a flag takes no value"


def test_shell_completion() -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["--show-completion", "bash"], prog_name="dicomveil")
    assert shown.exit_code == 0
    assert "_DICOMVEIL_COMPLETE=complete_bash" in shown.stdout
    completed = runner.invoke(
        app,
        [],
        prog_name="dicomveil",
        env={"_DICOMVEIL_COMPLETE": "complete_bash", "COMP_WORDS": "dicomveil run --dr",
             "COMP_CWORD": "2"},
    )  # fmt: skip
    assert completed.stdout.split() == ["--dry-run"]
    assert "--install-completion" in cli("--help").stdout


# --------------------------------------------------------------------------------------------
# 5. One key per output folder


def test_another_key_is_refused_unless_allowed(
    tmp_path: Path, key: Path, other_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("out")  # relative: messages name it as typed
    first = cli("run", "--key", key, "--workers", "1", SAMPLE, out)
    assert first.exit_code == 0, first.output
    fingerprint = read_key(key).fingerprint
    markers = [p for p in out.iterdir() if p.name.startswith(".")]
    assert [p.name for p in markers] == [f"{MARKER_PREFIX}{fingerprint}"]
    assert markers[0].is_dir() and not list(markers[0].iterdir())
    assert stat.S_IMODE(markers[0].stat().st_mode) == 0o700
    before = files_under(out)

    again = cli("run", "--key", key, "--workers", "1", SAMPLE, out)
    assert again.exit_code == 0, again.output

    other = read_key(other_key).fingerprint
    refused = cli("run", "--key", other_key, "--workers", "1", SAMPLE, "out")
    assert refused.exit_code == 2
    message = refused.stderr.splitlines()[-1]
    assert message.startswith("error: the output folder out holds files de-identified with")
    assert fingerprint in message and other in message and "--allow-other-key" in message
    assert files_under(out) == before
    dry = cli("run", "--dry-run", "--key", other_key, SAMPLE, out)
    assert dry.exit_code == 2

    allowed = cli("run", "--allow-other-key", "--key", other_key, "--workers", "1", SAMPLE, out)
    assert allowed.exit_code == 0, allowed.output
    assert len(files_under(out)) == 16  # two sets of pseudonyms, as asked
    assert output_keys(out) == sorted([fingerprint, other])
    assert cli("run", "--key", other_key, "--workers", "1", SAMPLE, out).exit_code == 0


def test_the_key_record_is_invisible_to_verify_diff_and_a_later_run(
    tmp_path: Path, key: Path
) -> None:
    out, maps = tmp_path / "out", tmp_path / "maps"
    assert cli("run", "--key", key, "--workers", "1", "--map-dir", maps, SAMPLE, out).exit_code == 0
    assert output_keys(out)

    verified = cli("verify", "--iod", "off", "--map-dir", maps, out)
    assert verified.exit_code == 0, verified.output
    assert "8 file(s), 0 finding(s)" in verified.stdout

    compared = cli("diff", "--map-dir", maps, SAMPLE, out)
    assert compared.exit_code == 0
    assert MARKER_PREFIX not in compared.output

    again = cli("run", "--key", key, "--workers", "1", out, tmp_path / "again")
    assert again.exit_code == 0
    assert "summary: written 8, withheld 0, skipped 0, failed 0" in again.stderr


def test_check_output_key(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    check_output_key(out, "0123456789abcdef", allow_other=False, record=False)
    assert not out.exists(), "checking alone writes nothing"
    check_output_key(out, "0123456789abcdef", allow_other=False)
    check_output_key(out, "0123456789abcdef", allow_other=False)  # twice: harmless
    assert output_keys(out) == ["0123456789abcdef"]
    with pytest.raises(DicomveilError, match="another key"):
        check_output_key(out, "fedcba9876543210", allow_other=False)
    assert output_keys(out) == ["0123456789abcdef"]
    check_output_key(out, "fedcba9876543210", allow_other=True)
    assert output_keys(out) == ["0123456789abcdef", "fedcba9876543210"]
    with pytest.raises(ValueError, match="fingerprint"):
        check_output_key(out, "../escape", allow_other=True)
    blocked = tmp_path / "a-file"
    blocked.write_text("", encoding="utf-8")
    with pytest.raises(DicomveilError, match="exists and is not a folder"):
        check_output_key(blocked, "0123456789abcdef", allow_other=False)


# --------------------------------------------------------------------------------------------
# 7. diff.html is readable by its owner only


def test_diff_html_is_owner_only(tmp_path: Path, key: Path) -> None:
    out, maps, page = tmp_path / "out", tmp_path / "maps", tmp_path / "diff.html"
    assert cli("run", "--key", key, "--workers", "1", "--map-dir", maps, SAMPLE, out).exit_code == 0
    page.write_text("an older page\n", encoding="utf-8")
    page.chmod(0o644)
    result = cli("diff", "--map-dir", maps, "--html", page, SAMPLE, out)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert page.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------
# 8. --redact-paths: folder and file names that hold identifiers are never printed


PLANTED = "SMITH^JOHN-MRN4471902"


def test_redact_paths_names_inputs_by_keyed_labels(
    tmp_path: Path, key: Path, other_key: Path
) -> None:
    root = tmp_path / f"study {PLANTED}"
    shutil.copytree(SAMPLE, root / PLANTED)
    shutil.copy(SAMPLE / "ct1" / "IM0001", root / f"{PLANTED}.dcm")  # same UID: one fails
    with zipfile.ZipFile(root / f"{PLANTED}.zip", "w") as archive:
        archive.write(NOT_DICOM, f"{PLANTED}/notes.txt")
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    out, maps, audit, report = (tmp_path / n for n in ("out", "maps", "audit.db", "run.json"))
    args = ("--key", key, "--workers", "2", "--map-dir", maps, "--redact-paths", "-v")

    result = cli("run", *args, "--audit", audit, "--json", report, root, out)

    assert result.exit_code == 1, result.output  # the second file of one SOP Instance UID
    assert "same SOP Instance UID as input-" in result.stderr
    for text in (result.stdout, result.stderr, report.read_text(encoding="utf-8")):
        assert PLANTED.split("^")[0] not in text and "MRN4471902" not in text
    assert b"MRN4471902" not in audit.read_bytes()
    done = json.loads(report.read_text(encoding="utf-8"))
    validate(done, "run")
    labels = [f["input"] for f in done["files"]]
    assert len(labels) == len(set(labels)) == 12
    assert all(re.fullmatch(r"input-[0-9a-f]{16}", label) for label in labels)
    assert stat.S_IMODE((maps / "paths.csv").stat().st_mode) == 0o600
    with (maps / "paths.csv").open(encoding="utf-8", newline="") as fh:
        table = {row["label"]: row["input"] for row in csv.DictReader(fh)}
    assert set(table) == set(labels)
    assert f"{root}/{PLANTED}.zip!{PLANTED}/notes.txt" in table.values()
    assert str(root / PLANTED / "us" / "IM0001") in table.values()
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before

    # the same key names an input alike in every run; another key, otherwise
    again = cli("run", *args, "--dry-run", "--json", tmp_path / "again.json", root, out)
    redone = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))
    assert again.exit_code == 1 and sorted(f["input"] for f in redone["files"]) == sorted(labels)
    other = ("--key", other_key, "--redact-paths", "--allow-other-key", "--dry-run")
    cli("run", *other, "--json", tmp_path / "other.json", root, tmp_path / "out2")
    foreign = json.loads((tmp_path / "other.json").read_text(encoding="utf-8"))
    assert not {f["input"] for f in foreign["files"]} & set(labels)


def test_redact_paths_names_a_missing_input_by_its_place(tmp_path: Path, key: Path) -> None:
    missing = tmp_path / PLANTED
    result = cli("run", "--key", key, "--redact-paths", SAMPLE, missing, tmp_path / "out")
    assert result.exit_code == 2
    assert "input 2: no such file or folder" in result.stderr
    assert "MRN4471902" not in result.output
    plain = cli("run", "--key", key, SAMPLE, missing, tmp_path / "out")
    assert plain.exit_code == 2 and f"{missing}: no such file or folder" in plain.stderr
