"""``dicomveil review`` end to end (issue 17): the real server (``dicomveil review`` in its
own process) on loopback, driven by a real Chromium (Debian's ``chromium`` through Debian's
``chromium-driver`` and Selenium; nothing downloads a browser), over an audit trail that a
real ``dicomveil run`` wrote for real files: pydicom's CT and MR, and deid-data's RGB
ultrasound with burned-in text cleaned by clean-pixel-data.

The exported sheet is read back with openpyxl; requests without a session or without the
form's CSRF token are sent with httpx. The same application runs on a real PostgreSQL
server. Screenshots of the queue and a subject page go to ``docs/images/`` (the README
shows them).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import openpyxl.worksheet.worksheet
import pytest
from pydicom import dcmread

from dicomveil.qc.audit import AuditTrail
from dicomveil.review import ReviewStore, Role
from dicomveil.review.images import changed_regions
from tests.support.commands import PYDICOM_DATA, cli, keygen
from tests.support.postgres import PostgresServer

DICOMVEIL = str(Path(sys.executable).with_name("dicomveil"))
# The README's screenshots are refreshed with DICOMVEIL_SCREENSHOTS=1 (else they go to the
# test's folder: a test run leaves the repository as it was).
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
PASSWORDS = {"ada": "ada-password", "bob": "bob-password", "olga": "olga-password"}
PASSWORDS["root"] = "root-password"
DEADLINE = 60.0


def _deid_ultrasound() -> Path | None:
    try:
        import deid_data
    except ImportError:
        return None
    path = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "RGB_IMAGE.dcm"
    return path if path.is_file() else None


@dataclass(frozen=True)
class Audited:
    """A run recorded in an audit database, and what the tests compare with."""

    db: str
    inputs: Path
    output: Path
    crosswalk: Path  # the run's map folder's patients.csv
    original_ids: dict[str, str]  # pseudonym -> original PatientID
    original_names: dict[str, str]  # pseudonym -> original PatientName


def audited_run(folder: Path, db: str, *, pixels: bool = True) -> Audited:
    """``dicomveil run --audit`` by operator ada on real files; accounts for ada, bob
    (reviewers), olga (operator) and root (admin)."""
    inputs = folder / "in"
    inputs.mkdir(parents=True)
    shutil.copyfile(PYDICOM_DATA / "test_files" / "CT_small.dcm", inputs / "ct.dcm")
    shutil.copyfile(PYDICOM_DATA / "test_files" / "MR_small.dcm", inputs / "mr.dcm")
    options: list[str] = []
    ultrasound = _deid_ultrasound()
    if pixels and ultrasound is not None and shutil.which("tesseract"):
        shutil.copyfile(ultrasound, inputs / "us.dcm")
        options = ["--option", "clean-pixel-data"]
    output, maps = folder / "out", folder / "maps"
    done = cli(
        "run", inputs, output, "--audit", db, "--operator", "ada", "--map-dir", maps,
        "--key", keygen(folder), *options,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    store = ReviewStore(db)
    try:
        for name, role in (("ada", "reviewer"), ("bob", "reviewer"), ("olga", "operator")):
            store.add_user(name, PASSWORDS[name], Role(role))
        store.add_user("root", PASSWORDS["root"], Role.ADMIN)
    finally:
        store.close()
    ids: dict[str, str] = {}
    names: dict[str, str] = {}
    for original in inputs.iterdir():
        ds = dcmread(original, stop_before_pixels=True)
        with AuditTrail.open(db, create=False) as trail:
            record = next(f for f in trail.files() if Path(f.input_path).name == original.name)
        assert record.subject is not None
        ids[record.subject] = str(ds.PatientID)
        names[record.subject] = str(ds.PatientName)
    return Audited(db, inputs, output, maps / "patients.csv", ids, names)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def text_of_log(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def review_server(
    audited: Audited, folder: Path, tls: tuple[Path, Path] | None = None
) -> Iterator[Server]:
    """``dicomveil review`` in its own process, on a free loopback port (HTTPS with a
    certificate and its key)."""
    port = free_port()
    extra = ["--certificate", str(tls[0]), "--private-key", str(tls[1])] if tls else []
    log = folder / "review-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [DICOMVEIL, "review", "--audit", audited.db, "--port", str(port),
             "--crosswalk", str(audited.crosswalk), *extra],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    scheme = "https" if tls else "http"
    server = Server(f"{scheme}://127.0.0.1:{port}", process, log)
    try:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if process.poll() is not None:
                pytest.fail(f"dicomveil review ended: {server.text_of_log()}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(server.url + "/login", timeout=2, verify=False)
                if answer.status_code == 200:
                    break
            time.sleep(0.2)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


_CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def client_of(server: Server) -> httpx.Client:
    """An httpx client of the server (closed after the test)."""
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=60)
    _CLIENTS.append(client)
    return client


def login(server: Server, name: str) -> httpx.Client:
    """An httpx session logged in as ``name`` (with the login form's CSRF token)."""
    client = client_of(server)
    token = csrf_of(client.get("/login").text)
    done = client.post("/login", data={"name": name, "password": PASSWORDS[name], "csrf": token})
    assert done.status_code == 303, done.text
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "a form without a CSRF token"
    return found.group(1)


# --------------------------------------------------------------------------------------------
# The browser


def _chrome() -> tuple[str, str] | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


needs_browser = pytest.mark.skipif(
    _chrome() is None,
    reason="Chromium and its driver are not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = _chrome()
    assert found is not None
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1700"):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads  # type: ignore[attr-defined]
    driver.implicitly_wait(10)  # a page being loaded after a click
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], object], what: str) -> object:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def browser_login(driver: object, server: Server, name: str, password: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    d: object = driver
    d.get(server.url + "/")  # type: ignore[attr-defined]
    assert d.current_url.endswith("/login")  # type: ignore[attr-defined]  # redirected
    d.find_element(By.ID, "name").send_keys(name)  # type: ignore[attr-defined]
    d.find_element(By.ID, "password").send_keys(password or PASSWORDS[name])  # type: ignore[attr-defined]
    submit(d, "login")


def submit(driver: Any, element_id: str) -> None:
    """Click a form's button and wait until the next page replaced this one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, element_id).click()

    def replaced() -> bool:
        try:
            page.is_enabled()
        except WebDriverException:  # stale, or "does not belong to the document"
            return True
        return False

    wait_for(replaced, "the next page")


def text_of(driver: object, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)  # type: ignore[attr-defined]


def images_loaded(driver: object) -> list[int]:
    """The natural widths of the page's images (0: not loaded)."""
    widths = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0);"
    )
    return [int(w) for w in widths]


def _input_names(audited: Audited, pseudonym: str) -> str:
    """The input file names of a subject (for choosing one in a test)."""
    with AuditTrail.open(audited.db, create=False) as trail:
        return " ".join(Path(f.input_path).stem for f in trail.files(subject=pseudonym))


def _events(db: str, action: str) -> list[tuple[str, str | None]]:
    store = ReviewStore(db)
    try:
        return [(e.who, e.subject) for e in store.events() if e.action == action]
    finally:
        store.close()


def _download(driver: object, suffix: str) -> Path:
    folder: Path = driver.downloads  # type: ignore[attr-defined]

    def done() -> Path | None:
        # Chromium reserves the name with an empty file and writes to NAME.crdownload, then
        # renames it over: the download is there once no .crdownload is left and it has bytes.
        files = list(folder.iterdir())
        if any(p.suffix == ".crdownload" for p in files):
            return None
        found = [p for p in files if p.suffix == suffix and p.stat().st_size > 0]
        return found[0] if found else None

    path = wait_for(done, f"the {suffix} download")
    assert isinstance(path, Path)
    return path


@needs_browser
def test_review_in_chromium(tmp_path: Path, browser: object) -> None:
    """Log in, see the queue, open a subject, reveal an original value, edit the sheet,
    sign off, see the four-eyes refusal, export the sheet (XLSX and CSV) and read its
    cells back; an operator cannot see originals."""
    from selenium.webdriver.common.by import By

    d: Any = browser
    audited = audited_run(tmp_path, str(tmp_path / "audit.sqlite"))
    subjects = sorted(audited.original_ids)
    shots = DOCS_IMAGES if os.environ.get("DICOMVEIL_SCREENSHOTS") else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    with review_server(audited, tmp_path) as server:
        # A wrong password: refused, said so.
        browser_login(d, server, "bob", "not-the-password")
        assert "wrong name or password" in text_of(d, "error")
        # The queue: every subject of the run, pending.
        browser_login(d, server, "bob")
        queue = d.find_element(By.ID, "queue")
        assert [a.text for a in queue.find_elements(By.CLASS_NAME, "subject")] == subjects
        assert queue.text.count("pending") == len(subjects)

        # A subject (the cleaned ultrasound's when there is one: thumbnails side by side).
        us = next((p for p in subjects if "us" in _input_names(audited, p).split()), subjects[0])
        d.find_element(By.LINK_TEXT, us).click()
        assert text_of(d, "pseudonym") == us
        verdicts = [e.text for e in d.find_elements(By.CLASS_NAME, "verdict")]
        assert verdicts, "each series shows its check"
        assert all(v.startswith("nothing else changed") for v in verdicts), verdicts
        widths = images_loaded(d)
        assert widths and all(widths), "every thumbnail is served to a reviewer"
        if (audited.inputs / "us.dcm").exists():  # the painted text: regions outlined
            with AuditTrail.open(audited.db, create=False) as trail:
                record = next(f for f in trail.files(subject=us) if f.output_path)
            regions = changed_regions(
                audited.inputs / "us.dcm", audited.output / str(record.output_path)
            )
            assert regions, "the regions painted over are found by comparing the frames"
        assert d.save_screenshot(str(shots / "review-subject.png"))
        assert audited.original_names[us] not in d.page_source  # values hidden by default

        # A file: original values only when asked; the asking is recorded.
        d.find_element(By.CSS_SELECTOR, "details summary").click()  # the series' files
        d.find_element(By.CSS_SELECTOR, "ol.files a").click()
        assert audited.original_names[us] not in d.page_source
        submit(d, "reveal")
        assert audited.original_names[us] in d.page_source
        assert ("bob", us) in _events(audited.db, "reveal")

        # The sign-off.
        d.back()
        d.back()
        d.find_element(By.ID, "status-passed").click()
        d.find_element(By.ID, "sign-off-note").send_keys("checked every series")
        submit(d, "sign-off")
        assert text_of(d, "qc-status") == "passed"
        assert text_of(d, "checked-by").startswith("bob")
        with AuditTrail.open(audited.db, create=False) as trail:
            last = trail.qc_events(us)[-1]
        assert (last.who, last.status.value, last.notes) == (
            "bob",
            "passed",
            "checked every series",
        )
        # The lab's columns (after the sign-off: the status stays).
        d.find_element(By.ID, "study-id").send_keys("SUB-001")
        d.find_element(By.ID, "date-scanned").send_keys("2026-11-02")
        notes = d.find_element(By.ID, "notes")
        notes.clear()
        notes.send_keys('=HYPERLINK("http://example.org")')
        submit(d, "save-sheet")
        assert d.find_element(By.ID, "study-id").get_attribute("value") == "SUB-001"
        assert text_of(d, "qc-status") == "passed"

        # The sheet, exported, read back.
        def indexed() -> bool:  # the study counts, once the outputs are indexed
            d.get(server.url + "/")
            return "…" not in d.find_element(By.ID, "queue").text

        wait_for(indexed, "the queue's study counts")
        assert "SUB-001" in d.find_element(By.ID, "queue").text
        assert d.save_screenshot(str(shots / "review-queue.png"))
        d.find_element(By.ID, "export-xlsx").click()
        book = openpyxl.load_workbook(_download(d, ".xlsx"))
        sheet = book["tracking"]
        assert isinstance(sheet, openpyxl.worksheet.worksheet.Worksheet)
        rows: list[tuple[Any, ...]] = list(sheet.iter_rows(values_only=True))
        header = rows[0]
        assert "date_scanned" not in header and "original_id" not in header
        by_subject = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
        assert sorted(by_subject) == subjects
        assert by_subject[us]["qc_status"] == "passed"
        assert by_subject[us]["checked_by"] == "bob"
        assert by_subject[us]["study_id"] == "SUB-001"
        assert by_subject[us]["deidentified_by"] == "ada"
        cell = next(c for c in sheet.iter_rows(min_row=2) if c[0].value == us)
        notes_cell = cell[header.index("notes")]
        assert notes_cell.data_type == "s"  # text, never a formula
        assert str(notes_cell.value).startswith("=HYPERLINK")
        d.find_element(By.ID, "export-csv").click()
        text = _download(d, ".csv").read_text(encoding="utf-8")
        row = next(r for r in csv.DictReader(io.StringIO(text)) if r["subject"] == us)
        assert row["notes"].startswith("'=HYPERLINK")  # quoted: a spreadsheet will not run it

        # The four-eyes rule: ada ran the de-identification, so ada cannot sign off.
        submit(d, "logout")
        browser_login(d, server, "ada")
        other = next(p for p in subjects if p != us)
        d.find_element(By.LINK_TEXT, other).click()
        assert "four-eyes" in text_of(d, "four-eyes-note")
        d.find_element(By.ID, "status-passed").click()
        submit(d, "sign-off")
        assert "four-eyes rule" in text_of(d, "error")
        with AuditTrail.open(audited.db, create=False) as trail:
            status = next(s for s in trail.subjects() if s.pseudonym == other).qc_status
        assert status.value == "pending"
        assert ("ada", other) in _events(audited.db, "four-eyes-refused")

        # An operator: no originals, no images, no sign-off.
        submit(d, "logout")
        browser_login(d, server, "olga")
        d.find_element(By.LINK_TEXT, us).click()
        assert text_of(d, "pseudonym") == us
        d.implicitly_wait(0)  # the page is there: what it lacks is missing at once
        assert not d.find_elements(By.ID, "sign-off")
        assert not d.find_elements(By.TAG_NAME, "img")
        assert audited.original_names[us] not in d.page_source
    log = server.text_of_log()
    for pseudonym in subjects:  # the server's log: no original name or ID
        assert audited.original_names[pseudonym] not in log
        assert audited.original_ids[pseudonym] not in log


# --------------------------------------------------------------------------------------------
# Without a browser: refusals, the admin's export, PostgreSQL, several reviewers


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Audited, Server]]:
    """One run (CT and MR, no pixel cleaning) and its review server, for this module's
    request-level tests."""
    folder = tmp_path_factory.mktemp("served")
    audited = audited_run(folder, str(folder / "audit.sqlite"), pixels=False)
    with review_server(audited, folder) as server:
        yield audited, server
    shutil.rmtree(folder, ignore_errors=True)


def test_requests_without_a_session_or_its_csrf_token_are_refused(
    served: tuple[Audited, Server],
) -> None:
    audited, server = served
    subject = sorted(audited.original_ids)[0]
    anonymous = client_of(server)
    page = anonymous.get("/", headers={"accept": "text/html"})
    assert (page.status_code, page.headers["location"]) == (303, "/login")
    assert anonymous.get(f"/subjects/{subject}").status_code == 401
    assert anonymous.get("/files/1/original.png").status_code == 401
    assert anonymous.post("/export/tracking.csv", data={"csrf": "x"}).status_code in (401, 403)

    def status() -> str:
        with AuditTrail.open(audited.db, create=False) as trail:
            return next(s for s in trail.subjects() if s.pseudonym == subject).qc_status.value

    before = status()
    bob = login(server, "bob")
    sign_off = f"/subjects/{subject}/sign-off"
    assert bob.post(sign_off, data={"status": "passed"}).status_code == 403  # no token
    root = login(server, "root")
    others = csrf_of(root.get("/").text)
    refused = bob.post(sign_off, data={"status": "passed", "csrf": others})  # not bob's token
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert status() == before
    # The session cookie: signed, HttpOnly, SameSite=Strict; pages: no scripts, no caching.
    cookie = client_of(server).get("/login").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    headers = bob.get(f"/subjects/{subject}").headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    # Nothing a request names is a path: unknown records and subjects are just unknown.
    assert bob.get("/files/999999").status_code == 404
    assert bob.get("/subjects/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert bob.get("/files/1/..%2F..%2Fetc.png").status_code == 404


def test_operators_see_no_originals(served: tuple[Audited, Server]) -> None:
    audited, server = served
    olga = login(server, "olga")
    token = csrf_of(olga.get("/").text)
    assert olga.post("/files/1/reveal", data={"csrf": token}).status_code == 403
    assert olga.get("/files/1/deidentified.png").status_code == 403
    subject = sorted(audited.original_ids)[0]
    refused = olga.post(f"/subjects/{subject}/sign-off", data={"csrf": token, "status": "passed"})
    assert refused.status_code == 403
    page = olga.get(f"/subjects/{subject}").text
    assert audited.original_names[subject] not in page


def test_the_export_with_original_ids_is_separate_confirmed_and_for_admins(
    served: tuple[Audited, Server],
) -> None:
    audited, server = served
    bob = login(server, "bob")
    token = csrf_of(bob.get("/").text)
    url = "/export/original-ids.csv"
    assert bob.post(url, data={"csrf": token, "confirm": "yes"}).status_code == 403
    plain = bob.post("/export/tracking.csv", data={"csrf": token}).text
    for original in audited.original_ids.values():
        assert original not in plain
    root = login(server, "root")
    token = csrf_of(root.get("/").text)
    assert root.post(url, data={"csrf": token}).status_code == 403  # not confirmed
    done = root.post(url, data={"csrf": token, "confirm": "yes"})
    assert done.status_code == 200
    rows = list(csv.DictReader(io.StringIO(done.text)))
    assert {r["subject"]: r["original_id"] for r in rows} == audited.original_ids
    assert "date_scanned" in rows[0]
    assert ("root", None) in _events(audited.db, "export-original-ids")


def test_a_change_no_rule_explains_is_named(served: tuple[Audited, Server]) -> None:
    """The verdict can fail: an output changed after the run (a kept element altered, an
    element added) is checked again and each change is named."""
    audited, server = served
    with AuditTrail.open(audited.db, create=False) as trail:
        record = next(f for f in trail.files() if Path(f.input_path).name == "mr.dcm")
        run = trail.runs(run_id=record.run_id)[0]
    assert record.output_path is not None and record.subject is not None
    output = Path(run.output) / record.output_path
    ds = dcmread(output)
    ds.SliceThickness = "9.5"  # the profile keeps it
    ds.PatientComments = "ADDED AFTER THE RUN"
    ds.save_as(output)
    bob = login(server, "bob")
    page = bob.get(f"/subjects/{record.subject}").text
    assert "2 change(s) no rule explains" in page
    assert "SliceThickness" in page and "PatientComments" in page


def test_several_reviewers_at_once(served: tuple[Audited, Server]) -> None:
    audited, server = served
    subjects = sorted(audited.original_ids)
    clients = [login(server, "bob"), login(server, "root")]

    def sign(index: int) -> int:
        client = clients[index]
        token = csrf_of(client.get(f"/subjects/{subjects[index]}").text)
        form = {"csrf": token, "status": "failed", "note": f"reviewer {index}"}
        return client.post(f"/subjects/{subjects[index]}/sign-off", data=form).status_code

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(sign, range(2))) == [303, 303]
    with AuditTrail.open(audited.db, create=False) as trail:
        done = {s.pseudonym: (s.qc_status.value, s.verified_by) for s in trail.subjects()}
    assert done[subjects[0]] == ("failed", "bob")
    assert done[subjects[1]] == ("failed", "root")


def test_review_on_postgres(tmp_path: Path, postgres_server: PostgresServer) -> None:
    audited = audited_run(tmp_path, postgres_server.new_database(), pixels=False)
    subject = sorted(audited.original_ids)[0]
    with review_server(audited, tmp_path) as server:
        bob = login(server, "bob")
        queue = bob.get("/").text
        for pseudonym in audited.original_ids:
            assert pseudonym in queue
        page = bob.get(f"/subjects/{subject}").text
        assert "nothing else changed" in page
        token = csrf_of(page)
        form = {"csrf": token, "status": "passed", "note": "on PostgreSQL"}
        assert bob.post(f"/subjects/{subject}/sign-off", data=form).status_code == 303
    with AuditTrail.open(audited.db, create=False) as trail:
        last = trail.qc_events(subject)[-1]
    assert (last.who, last.status.value, last.notes) == ("bob", "passed", "on PostgreSQL")


def test_accounts_on_the_command_line(tmp_path: Path) -> None:
    audited = tmp_path / "audit.sqlite"
    done = cli("run", PYDICOM_DATA / "test_files" / "CT_small.dcm", tmp_path / "out",
               "--audit", audited, "--key", keygen(tmp_path))  # fmt: skip
    assert done.exit_code == 0, done.output
    served = subprocess.run(
        [DICOMVEIL, "review", "--audit", str(audited), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert served.returncode != 0 and "no accounts yet" in served.stderr
    added = subprocess.run(
        [DICOMVEIL, "review", "adduser", "eve", "--audit", str(audited), "--password-stdin"],
        input="short\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode != 0 and "at least 8" in added.stderr
    added = subprocess.run(
        [DICOMVEIL, "review", "adduser", "eve", "--audit", str(audited), "--password-stdin",
         "--role", "reviewer"],
        input="long-enough\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    store = ReviewStore(str(audited))
    try:
        assert store.users() == [("eve", Role.REVIEWER, True)]
        assert store.authenticate("eve", "long-enough") is not None
        assert store.authenticate("eve", "wrong-password") is None
        assert store.authenticate("nobody", "long-enough") is None
    finally:
        store.close()
    raw = audited.read_bytes()
    assert b"long-enough" not in raw  # argon2 hashes only


def test_https_with_a_secure_cookie(tmp_path: Path) -> None:
    """--certificate and --private-key: the application over TLS (a certificate made here,
    trusted by the client), its session cookie marked Secure."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "review.crt", tmp_path / "review.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    audited = audited_run(tmp_path, str(tmp_path / "audit.sqlite"), pixels=False)
    with review_server(audited, tmp_path, tls=(cert_path, key_path)) as server:
        assert server.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(cert_path))
        with httpx.Client(base_url=server.url, verify=trusted, timeout=60) as client:
            page = client.get("/login")
            assert page.status_code == 200
            cookie = page.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie
            form = {"name": "bob", "password": PASSWORDS["bob"], "csrf": csrf_of(page.text)}
            assert client.post("/login", data=form).status_code == 303
            assert client.get("/").status_code == 200


def test_withheld_files_findings_filters_and_dciodvfy(tmp_path: Path) -> None:
    """The bundled sample (a withheld ultrasound, CT and MR of two patients) verified by
    ``dicomveil verify --audit``: the subject page names the withheld file's reason and the
    verification; the queue filters by status; a file's page shows dciodvfy's verdict."""
    sample = Path(__file__).resolve().parents[1] / "examples" / "sample"
    db, out, maps = tmp_path / "audit.sqlite", tmp_path / "out", tmp_path / "maps"
    done = cli("run", sample, out, "--audit", db, "--operator", "ada", "--map-dir", maps,
               "--key", keygen(tmp_path))  # fmt: skip
    assert done.exit_code == 0, done.output
    checked = cli("verify", out, "--against", sample, "--map-dir", maps, "--audit", db,
                  "--operator", "carl")  # fmt: skip
    assert checked.exit_code == 0, checked.output
    store = ReviewStore(str(db))
    try:
        store.add_user("bob", PASSWORDS["bob"], Role.REVIEWER)
    finally:
        store.close()
    with AuditTrail.open(db, create=False) as trail:
        withheld = next(f for f in trail.files() if f.outcome.value == "withheld")
    assert withheld.subject is not None
    audited = Audited(str(db), sample, out, maps / "patients.csv", {}, {})
    with review_server(audited, tmp_path) as server:
        bob = login(server, "bob")
        page = bob.get(f"/subjects/{withheld.subject}").text
        assert "BurnedInAnnotation" in page and "withheld" in page  # the reason
        assert "carl" in page and "pass" in page  # the verification
        # verify passed the subjects it checked: the queue's filter
        assert withheld.subject in bob.get("/?status=passed").text
        assert withheld.subject not in bob.get("/?status=pending").text
        file_id = re.search(r'href="/files/(\d+)"', page)
        assert file_id is not None
        file_page = bob.get(f"/files/{file_id.group(1)}").text
        if shutil.which("dciodvfy"):
            assert 'id="dciodvfy"' in file_page
        assert "nothing else changed" in file_page


def test_check_every_file(tmp_path: Path) -> None:
    """ "Check every file" checks each written file in the background; a file altered
    afterwards counts as unchecked until it is checked again, then is named."""
    audited = audited_run(tmp_path, str(tmp_path / "audit.sqlite"), pixels=False)
    with AuditTrail.open(audited.db, create=False) as trail:
        record = next(f for f in trail.files() if Path(f.input_path).name == "ct.dcm")
        run = trail.runs(run_id=record.run_id)[0]
    assert record.subject is not None and record.output_path is not None
    subject = f"/subjects/{record.subject}"

    def summary_of(client: httpx.Client) -> str:
        found = re.search(r'<p id="sweep-summary">(.*?)</p>', client.get(subject).text, re.S)
        assert found is not None
        return " ".join(found.group(1).split())

    def check_all(client: httpx.Client) -> None:
        token = csrf_of(client.get(subject).text)
        assert client.post(f"{subject}/check-all", data={}).status_code == 403  # no token
        assert client.post(f"{subject}/check-all", data={"csrf": token}).status_code == 303
        wait_for(lambda: "Checking" not in summary_of(client), "the check of every file")

    with review_server(audited, tmp_path) as server:
        olga = login(server, "olga")  # an operator may ask for it too
        assert summary_of(olga).startswith("0 of 1 file(s) checked")
        check_all(olga)
        assert summary_of(olga).startswith("1 of 1 file(s) checked as they are now: 1 with nothing")
        output = Path(run.output) / record.output_path
        ds = dcmread(output)
        ds.SliceThickness = "9.5"  # kept by the profile: now changed
        ds.save_as(output)
        os.utime(output, (time.time() + 5, time.time() + 5))  # a new mtime, whatever the clock
        assert summary_of(olga).startswith("0 of 1 file(s) checked")
        check_all(olga)
        assert "1 with changes no rule explains" in summary_of(olga)
        assert "SliceThickness" in olga.get(subject).text
    assert ("olga", record.subject) in _events(audited.db, "check-all")


def test_a_database_that_is_not_an_audit_trail_is_left_alone(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    added = subprocess.run(
        [DICOMVEIL, "review", "adduser", "eve", "--audit", str(other), "--password-stdin"],
        input="long-enough\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 2 and "not a dicomveil audit database" in added.stderr
    with sqlite3.connect(other) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}  # no review table joined it


def test_what_cannot_be_checked_is_said(tmp_path: Path) -> None:
    """Originals moved away, or a profile file changed since the run: the pages say "cannot
    tell" and why, and still list the changes the comparison can show."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copyfile(PYDICOM_DATA / "test_files" / "CT_small.dcm", inputs / "ct.dcm")
    shutil.copyfile(PYDICOM_DATA / "test_files" / "MR_small.dcm", inputs / "mr.dcm")
    profile = tmp_path / "lab.toml"
    profile.write_text('name = "lab"\nextends = "ps3.15-basic"\n', encoding="utf-8")
    db = tmp_path / "audit.sqlite"
    done = cli("run", inputs, tmp_path / "out", "--audit", db, "--profile", profile,
               "--key", keygen(tmp_path))  # fmt: skip
    assert done.exit_code == 0, done.output
    store = ReviewStore(str(db))
    try:
        store.add_user("bob", PASSWORDS["bob"], Role.REVIEWER)
    finally:
        store.close()
    with AuditTrail.open(db, create=False) as trail:
        by_name = {Path(f.input_path).name: f for f in trail.files()}
    audited = Audited(str(db), inputs, tmp_path / "out", tmp_path / "none.csv", {}, {})
    with review_server(audited, tmp_path) as server:
        bob = login(server, "bob")
        page = bob.get(f"/files/{by_name['ct.dcm'].id}").text
        assert "nothing else changed" in page  # the profile file as it was: rules known
        (inputs / "ct.dcm").rename(tmp_path / "moved.dcm")
        page = bob.get(f"/files/{by_name['ct.dcm'].id}").text
        assert "cannot tell: the original file is not available here" in page
    # The profile file changed: a server started since cannot rebuild the run's profile.
    profile.write_text(
        'name = "lab"\nextends = "ps3.15-basic"\noptions = ["retain-device-identity"]\n',
        encoding="utf-8",
    )
    with review_server(audited, tmp_path) as server:
        bob = login(server, "bob")
        page = bob.get(f"/files/{by_name['mr.dcm'].id}").text
        assert "profile cannot be rebuilt here (its digest differs)" in page
        assert "SOPInstanceUID" in page  # the changes, without rules


def test_without_the_review_extra_the_command_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.modules['argon2'] = None\n"
        "from dicomveil.cli import main\n"
        "main(['review', 'adduser', 'eve', '--audit', 'x.sqlite'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'dicomveil[review]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_file_check_holds_each_change_to_its_rule(tmp_path: Path) -> None:
    """Found by an independent black-box test. (1) An element the profile removes (X) or
    empties (Z), put back with a value after the run, was 'replaced | X': explained. It is
    now a change no rule explains. (2) pydicom's RT Plan, as written: its kept sequences
    (beams, dose references), changed only where their items' elements changed, each with
    its rule, were named as changes no rule explains."""
    from dicomveil.review.checks import check_file

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("CT_small.dcm", "rtplan.dcm"):
        shutil.copyfile(PYDICOM_DATA / "test_files" / name, inputs / name)
    db = str(tmp_path / "audit.sqlite")
    done = cli("run", inputs, tmp_path / "out", "--audit", db, "--key", keygen(tmp_path))
    assert done.exit_code == 0, done.output
    with AuditTrail.open(db, create=False) as trail:
        records = {Path(f.input_path).name: f for f in trail.files()}
        run = trail.runs(run_id=records["rtplan.dcm"].run_id)[0]

    def checked(name: str) -> Any:
        record = records[name]
        assert record.output_path is not None
        return check_file(run, inputs / name, Path(run.output) / record.output_path)

    plan = checked("rtplan.dcm")
    assert plan.ok is True, plan.verdict
    assert plan.verdict.startswith("nothing else changed")
    ct_record = records["CT_small.dcm"]
    assert ct_record.output_path is not None
    output = Path(run.output) / ct_record.output_path
    ds = dcmread(output)
    ds.InstitutionName = "St Elsewhere Hospital"  # X in the Basic Profile
    ds.PatientSex = "M"  # Z
    ds.save_as(output)
    ct = checked("CT_small.dcm")
    assert ct.ok is False, ct.verdict
    assert "InstitutionName" in ct.verdict and "PatientSex" in ct.verdict


def test_numbers_larger_than_a_row_number_name_nothing(served: tuple[Audited, Server]) -> None:
    """A file or run number past SQLite's integers: a 404 and 'no files recorded', not a 500
    with a traceback in the log and an audit command's traceback (found by an independent
    black-box test)."""
    audited, server = served
    bob = login(server, "bob")
    for number in ("9223372036854775808", "999999999999999999999999999"):
        assert bob.get(f"/files/{number}").status_code == 404
    done = cli("audit", "--audit", audited.db, "files", "--run", "99999999999999999999999")
    assert done.exit_code == 0, done.output
    assert "Traceback" not in done.output


def test_logging_out_ends_the_session_on_the_server(served: tuple[Audited, Server]) -> None:
    """A copy of the session cookie taken before logging out lets no one in after it (it
    did, for the cookie's 8 hours: found by an independent black-box test)."""
    _, server = served
    bob = login(server, "bob")
    assert bob.get("/").status_code == 200
    stolen = dict(bob.cookies)
    done = bob.post("/logout", data={"csrf": csrf_of(bob.get("/").text)})
    assert done.status_code == 303
    replay = client_of(server)
    replay.cookies.update(stolen)
    assert replay.get("/", headers={"Accept": "application/json"}).status_code == 401
    assert login(server, "bob").get("/").status_code == 200  # a new login works


def test_a_subject_of_withheld_files_only_is_in_the_queue(tmp_path: Path) -> None:
    """The bundled sample's ultrasound alone (burned-in text): its only file withheld, its
    subject was missing from the review's queue and from ``track`` (found by an independent
    black-box test); it is listed, pending, and its page names the withheld file."""
    sample = Path(__file__).resolve().parents[1] / "examples" / "sample" / "us"
    (withheld_only,) = [p for p in sample.iterdir() if p.is_file()]
    audited, record = _one_file_reviewed(tmp_path, withheld_only)
    with AuditTrail.open(audited.db, create=False) as trail:
        assert record.outcome.value == "withheld" and record.subject is not None
        assert [s.pseudonym for s in trail.subjects()] == [record.subject]
    with review_server(audited, tmp_path) as server:
        bob = login(server, "bob")
        assert record.subject in bob.get("/").text
        page = bob.get(f"/subjects/{record.subject}")
        assert page.status_code == 200 and "withheld" in page.text


def test_signing_off_keeps_the_lab_notes_and_errors_say_what_they_are(
    served: tuple[Audited, Server],
) -> None:
    """A sign-off's note goes after the lab's notes (it replaced them); a subject or file
    that is not there is 'Not found' (404), a status that is none 'Not understood' (400),
    not 'Not allowed' (found by an independent black-box test)."""
    audited, server = served
    with AuditTrail.open(audited.db, create=False) as trail:
        subject = next(s for s in trail.subjects() if s.deidentified_by == "ada")
    bob = login(server, "bob")
    token = csrf_of(bob.get("/").text)
    sheet = bob.post(f"/subjects/{subject.pseudonym}/sheet",
                     data={"csrf": token, "notes": "scanner swapped mid-session"})  # fmt: skip
    assert sheet.status_code == 303, sheet.text
    decision = {"csrf": token, "status": "passed", "note": "all series seen"}
    signed = bob.post(f"/subjects/{subject.pseudonym}/sign-off", data=decision)
    assert signed.status_code == 303, signed.text
    with AuditTrail.open(audited.db, create=False) as trail:
        notes = trail.subject(subject.pseudonym).notes  # type: ignore[union-attr]
    assert "scanner swapped mid-session" in notes and "all series seen" in notes
    missing = bob.get("/subjects/NOPE")
    assert missing.status_code == 404 and "Not found" in missing.text
    bogus = bob.get("/?status=bogus")
    assert bogus.status_code == 400 and "Not understood" in bogus.text


def test_an_object_without_pixel_data_shows_no_frame(tmp_path: Path) -> None:
    """pydicom's RT Plan: '0 frame(s)' and no thumbnail (it showed '1 frame(s)' and an
    image that answered 404: found by an independent black-box test)."""
    audited, record = _one_file_reviewed(tmp_path, PYDICOM_DATA / "test_files" / "rtplan.dcm")
    with review_server(audited, tmp_path) as server:
        page = login(server, "bob").get(f"/subjects/{record.subject}").text
    assert "0 frame(s)" in page and "deidentified.png" not in page


def _one_file_reviewed(tmp_path: Path, source: Path) -> tuple[Audited, Any]:
    """``dicomveil run --audit`` on one file, with bob as a reviewer: the run and the file's
    record."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copyfile(source, inputs / source.name)
    db = tmp_path / "audit.sqlite"
    done = cli("run", inputs, tmp_path / "out", "--audit", db, "--key", keygen(tmp_path))
    assert done.exit_code == 0, done.output
    with AuditTrail.open(db, create=False) as trail:
        (record,) = trail.files()
    store = ReviewStore(str(db))
    try:
        store.add_user("bob", PASSWORDS["bob"], Role.REVIEWER)
    finally:
        store.close()
    return Audited(str(db), inputs, tmp_path / "out", tmp_path / "none.csv", {}, {}), record
