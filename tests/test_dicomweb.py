"""The gateway's DICOMweb side (issue 20), against real Orthanc peers and real files.

Orthanc (Debian's ``orthanc`` with ``orthanc-dicomweb``) is the clinical archive the
gateway proxies (over DICOMweb and over DIMSE) and the research archive it forwards to;
``dicomweb-client`` is the client. Every de-identified instance is compared byte for byte
with what ``dicomveil run`` writes for the same originals and key.
"""

from __future__ import annotations

import datetime as dt
import email.message
import email.parser
import io
import json
import logging
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.uid import UID, generate_uid
from typer.testing import CliRunner

from dicomveil import Outcome, Profile, Pseudonymizer, RunConfig, run, write_key
from dicomveil.cli import app
from dicomveil.errors import GatewayConfigError
from dicomveil.gateway import Gateway, load_config
from dicomveil.gateway.web import hash_token
from dicomveil.gateway.web.multipart import MAX_PARTS, MalformedBodyError, spool_parts
from tests.conftest import KEY
from tests.support import synthetic
from tests.support.certificates import self_signed
from tests.support.commands import PYDICOM_DATA, pydicom_data_folder
from tests.support.orthanc import Orthanc, need_orthanc
from tests.support.scratch import scratch

TOKEN = "research-token-0123456789abcdefghijklmnopqrstuv"
OTHER_TOKEN = "another-route-token-0123456789abcdefghijklmno"
REAL = [
    PYDICOM_DATA / "test_files" / "CT_small.dcm",
    PYDICOM_DATA / "test_files" / "MR_small.dcm",
    # JPEG 2000 lossless: delivered in the syntax it is kept in, never transcoded.
    (pydicom_data_folder() or PYDICOM_DATA) / "MR2_J2KR.dcm",
]


def _real_siemens() -> list[Path]:
    """A real Siemens MR with CSA headers, where the sdists were fetched."""
    from tests.realdata import real_files

    return [f.path for f in real_files() if "nicom/tests/data/0.dcm" in f.name][:1]


@dataclass
class Cohort:
    """The project's originals, what `dicomveil run` wrote for them, and an outsider."""

    root: Path
    originals: list[Path]
    key: Path
    maps: Path
    expected: dict[str, bytes]  # new SOP Instance UID -> run's output bytes
    new_uids: dict[str, str]  # original -> new (study, series, instance)
    names: set[str]  # the originals' patient names
    compressed: set[str]  # new SOP Instance UIDs of the compressed originals
    outsider: Path  # another patient, in the clinical archive, never in the cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cohort]:
    need_orthanc()
    with scratch(tmp_path_factory, "dicomweb") as root:
        folder = root / "in"
        originals = []
        for n, path in enumerate([*REAL, *_real_siemens()]):
            (folder / str(n)).mkdir(parents=True)
            originals.append(Path(shutil.copy(path, folder / str(n) / path.name)))
        write_key(root / "project.key", KEY)
        summary = run(
            [folder],
            RunConfig(
                profile=Profile.named("ps3.15-basic"),
                key=KEY,
                output=root / "run",
                map_dir=root / "maps",
                workers=1,
                today=dt.date.today(),
            ),
        )
        assert summary.count(Outcome.WRITTEN) == len(originals), summary.counts
        expected: dict[str, bytes] = {}
        new_uids: dict[str, str] = {}
        for result in summary.written:
            assert result.output is not None
            expected[str(dcmread(result.output).SOPInstanceUID)] = result.output.read_bytes()
            new_uids.update(result.uid_map)
        outsider = dcmread(REAL[0])
        outsider.PatientName = "Outsider^Olga"
        outsider.PatientID = "OUT-0001"
        outsider.StudyInstanceUID = generate_uid()
        outsider.SeriesInstanceUID = generate_uid()
        outsider.SOPInstanceUID = outsider.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        outsider.save_as(root / "outsider.dcm")
        names = {str(dcmread(p).PatientName) for p in originals}
        compressed = {
            new_uids[str(ds.SOPInstanceUID)]
            for ds in map(dcmread, originals)
            if ds.file_meta.TransferSyntaxUID.is_compressed
        }
        yield Cohort(root, originals, root / "project.key", root / "maps", expected,
                     new_uids, names, compressed, root / "outsider.dcm")  # fmt: skip


@pytest.fixture(scope="module")
def clinical(cohort: Cohort) -> Iterator[Orthanc]:
    """The clinical archive: the cohort's originals and the outsider."""
    archive = Orthanc(cohort.root / "clinical")
    try:
        archive.upload(*cohort.originals, cohort.outsider)
        yield archive
    finally:
        archive.stop()


def _config(folder: Path, cohort: Cohort, routes: str, *, max_body: int = 1 << 30) -> Path:
    text = f"""
[gateway]
state_dir = "{folder / "state"}"
port = 0
workers = 1
timeout = 20

[gateway.web]
port = 0
max_body = {max_body}
{routes}
"""
    path = folder / "gateway.toml"
    path.write_text(text.replace("@KEY@", str(cohort.key)), encoding="utf-8")
    return path


def _query_routes(clinical: Orthanc) -> str:
    return f"""
[[route]]
name = "research"
key = "@KEY@"
[route.query]
url = "{clinical.dicomweb}"
cohort_maps = ["MAPS"]
[route.web]
tokens = ["{hash_token(TOKEN)}"]

[[route]]
name = "dimse"
key = "@KEY@"
[route.query]
host = "127.0.0.1"
port = {clinical.dicom_port}
ae_title = "ORTHANC"
cohort_maps = ["MAPS"]
[route.web]
tokens = ["{hash_token(TOKEN)}"]

[[route]]
name = "other"
key = "@KEY@"
output = "other-out"
[route.web]
tokens = ["{hash_token(OTHER_TOKEN)}"]
"""


@pytest.fixture
def proxy(tmp_path: Path, cohort: Cohort, clinical: Orthanc) -> Iterator[Gateway]:
    routes = _query_routes(clinical).replace("MAPS", str(cohort.maps))
    gateway = Gateway(load_config(_config(tmp_path, cohort, routes)))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def _client(gateway: Gateway, route: str, token: str = TOKEN) -> DICOMwebClient:
    return DICOMwebClient(
        f"{gateway.web_url}/{route}", headers={"Authorization": f"Bearer {token}"}
    )


def _parts(answer: requests.Response) -> list[bytes]:
    """The parts of a multipart answer, read by the standard library's MIME parser."""
    head = f"Content-Type: {answer.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser().parsebytes(head + answer.content)
    assert message.is_multipart()
    parts = []
    for part in message.get_payload():
        assert isinstance(part, email.message.Message)
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        parts.append(data)
    return parts


def _no_phi(cohort: Cohort, text: str) -> None:
    for name in cohort.names:
        for part in str(name).split("^"):
            if len(part) > 2:
                assert part not in text, "an original name passed"


# --------------------------------------------------------------------------------------------
# QIDO-RS and WADO-RS


@pytest.mark.parametrize("route", ["research", "dimse"])
def test_search_and_retrieve_the_cohort_as_run_writes_it(
    route: str, proxy: Gateway, cohort: Cohort
) -> None:
    client = _client(proxy, route)
    studies = client.search_for_studies()
    found = {s["0020000D"]["Value"][0] for s in studies}
    original_studies = {str(dcmread(p).StudyInstanceUID) for p in cohort.originals}
    assert found == {cohort.new_uids[uid] for uid in original_studies}
    _no_phi(cohort, json.dumps(studies))
    outsider = dcmread(cohort.outsider)
    assert str(outsider.StudyInstanceUID) not in json.dumps(studies)
    for study in studies:
        assert study["00081190"]["Value"][0].startswith(f"{proxy.web_url}/{route}/studies/")
    # Search by a pseudonymous Patient ID: that patient's studies only.
    first = dcmread(cohort.originals[0])
    written = cohort.expected[cohort.new_uids[str(first.SOPInstanceUID)]]
    pseudonym = str(dcmread(io.BytesIO(written)).PatientID)
    assert pseudonym and pseudonym != str(first.PatientID)
    mine = client.search_for_studies(search_filters={"PatientID": pseudonym})
    assert {s["0020000D"]["Value"][0] for s in mine} == {
        cohort.new_uids[str(first.StudyInstanceUID)]
    }
    # Every instance, retrieved through the gateway, is what run wrote, byte for byte.
    delivered = 0
    for study in sorted(found):
        for series in client.search_for_series(study):
            series_uid = series["0020000E"]["Value"][0]
            for instance in client.search_for_instances(study, series_uid):
                sop = instance["00080018"]["Value"][0]
                url = f"{proxy.web_url}/{route}/studies/{study}/series/{series_uid}/instances/{sop}"
                answer = requests.get(
                    url,
                    headers={
                        "Authorization": f"Bearer {TOKEN}",
                        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
                    },
                    timeout=60,
                )
                assert answer.status_code == 200, answer.text
                (part,) = _parts(answer)
                expected = cohort.expected[sop]
                if route == "research":
                    assert part == expected
                else:
                    # Over C-GET the archive chooses the transfer syntax (Orthanc sends an
                    # implicit VR original in explicit VR): the same data set, not the bytes.
                    got = dcmread(io.BytesIO(part))
                    assert got == dcmread(io.BytesIO(expected))
                    # A compressed original comes in its own syntax (never transcoded).
                    compressed = got.file_meta.TransferSyntaxUID.is_compressed
                    assert compressed == (sop in cohort.compressed)
                delivered += 1
        if route == "research":  # the whole study through dicomweb-client
            media = (("application/dicom", "*"),)
            for ds in client.retrieve_study(study, media_types=media):
                assert dcmread(io.BytesIO(cohort.expected[str(ds.SOPInstanceUID)])) == ds
            metadata = client.retrieve_study_metadata(study)
            text = json.dumps(metadata)
            _no_phi(cohort, text)
            assert "7FE00010" not in text
            assert {m["00080018"]["Value"][0] for m in metadata} <= set(cohort.expected)
    assert delivered == len(cohort.expected)


def test_a_dicomweb_archive_answer_is_read_into_files_as_it_arrives(
    proxy: Gateway, cohort: Cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WADO-RS from a DICOMweb archive (the "research" route): the archive's multipart
    answer is read into one file per instance as it arrives (upstream.WebUpstream.fetch),
    never decoded into data sets by dicomweb-client (a 300 MB instance took 1.2 GB of the
    gateway's memory that way); what the gateway delivers is still what run wrote."""

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("the archive's answer was decoded by dicomweb-client")

    for name in ("iter_study", "iter_series", "retrieve_instance", "retrieve_study"):
        monkeypatch.setattr(DICOMwebClient, name, refused)
    first = dcmread(cohort.originals[0])
    study = cohort.new_uids[str(first.StudyInstanceUID)]
    answer = requests.get(
        f"{proxy.web_url}/research/studies/{study}",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
        },
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    expected = {
        cohort.expected[cohort.new_uids[str(ds.SOPInstanceUID)]]
        for ds in map(dcmread, cohort.originals)
        if ds.StudyInstanceUID == first.StudyInstanceUID
    }
    assert set(_parts(answer)) == expected


def test_concurrent_requests(proxy: Gateway, cohort: Cohort) -> None:
    """Searches and retrievals at once, from several threads: each gets its own answer."""
    instances = _client(proxy, "research").search_for_instances()
    urls = [i["00081190"]["Value"][0] for i in instances] * 3
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": accept}

    def fetch(url: str) -> tuple[str, bytes]:
        answer = requests.get(url, headers=headers, timeout=120)
        assert answer.status_code == 200, answer.text
        (part,) = _parts(answer)
        studies = _client(proxy, "research").search_for_studies()
        assert len(studies) == len({str(dcmread(p).StudyInstanceUID) for p in cohort.originals})
        return url.rsplit("/", 1)[1], part

    with ThreadPoolExecutor(6) as pool:
        for sop, part in pool.map(fetch, urls):
            assert part == cohort.expected[sop]


def test_hostile_requests(
    proxy: Gateway, cohort: Cohort, capfd: pytest.CaptureFixture[str]
) -> None:
    """Values that are not what their attribute holds, keys that contradict the path,
    UID lists, and a client that goes away: clear statuses, no value printed, no stage
    left behind."""
    client = _client(proxy, "research")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    base = f"{proxy.web_url}/research"
    studies = [s["0020000D"]["Value"][0] for s in client.search_for_studies()]
    assert len(studies) >= 2
    cases = {
        f"{base}/studies/Smith%5EJohn": 404,  # a name where a UID goes
        f"{base}/studies/Smith%5EJohn/series": 204,
        f"{base}/studies?PatientWeight=Smith": 400,
        f"{base}/studies?limit=%C2%B2": 400,  # a digit that is not an ASCII digit
        f"{base}/studies/{studies[0]}/series?StudyInstanceUID=*": 400,  # the path's key
        f"{base}/series?Scheduled.Modality=MR": 400,
        # values their attribute cannot hold (were 204; an independent black-box test)
        f"{base}/studies?StudyDate=notadate": 400,
        f"{base}/studies?StudyDate=20201345": 400,
        f"{base}/studies?StudyInstanceUID=abc.def": 400,
        f"{base}/studies?PatientID={'X' * 80}": 400,
        f"{base}/studies?StudyTime=99": 400,
        f"{base}/studies?StudyDate=20200101-20201231": 204,  # a range: fine, none in it
    }
    for url, status in cases.items():
        assert requests.get(url, headers=auth, timeout=60).status_code == status, url
    both = client.search_for_studies(search_filters={"StudyInstanceUID": ",".join(studies[:2])})
    assert {s["0020000D"]["Value"][0] for s in both} == set(studies[:2])
    # A client that goes away before the answer: the stage is removed all the same.
    for _ in range(3):
        with requests.get(f"{base}/studies/{studies[0]}", headers=auth, stream=True, timeout=60):
            pass
    deadline = time.monotonic() + 10
    while list(proxy.spool.glob("wado-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(proxy.spool.glob("wado-*"))
    printed = capfd.readouterr()
    assert "Smith" not in printed.out + printed.err


def test_a_universal_match_is_no_filter(proxy: Gateway, cohort: Cohort) -> None:
    """``*`` matches every value (PS3.4 C.2.2.2.4): the same studies as no filter, on the
    route whose archive speaks DICOMweb too (found by a black-box test: 204 there)."""
    for route in ("research", "dimse"):
        client = _client(proxy, route)
        every = {s["0020000D"]["Value"][0] for s in client.search_for_studies()}
        assert every
        for key in ("PatientID", "AccessionNumber", "StudyDescription"):
            starred = client.search_for_studies(search_filters={key: "*"})
            assert {s["0020000D"]["Value"][0] for s in starred} == every, (route, key)


def test_out_of_cohort_studies_are_invisible(proxy: Gateway, cohort: Cohort) -> None:
    client = _client(proxy, "research")
    outsider = dcmread(cohort.outsider)
    pseudonymous = Pseudonymizer(KEY).uid(str(outsider.StudyInstanceUID))
    for study in (str(outsider.StudyInstanceUID), pseudonymous):
        assert client.search_for_studies(search_filters={"StudyInstanceUID": study}) == []
        answer = requests.get(
            f"{proxy.web_url}/research/studies/{study}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 404
    assert client.search_for_studies(search_filters={"PatientID": "OUT-0001"}) == []
    names = json.dumps(client.search_for_studies(fields=["PatientName"]))
    assert "Outsider" not in names


def test_tokens(proxy: Gateway, cohort: Cohort) -> None:
    url = f"{proxy.web_url}/research/studies"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {OTHER_TOKEN}"},  # another route's
        {"Authorization": f"Basic {TOKEN}"},
    ):
        answer = requests.get(url, headers=headers, timeout=30)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
    assert requests.get(f"{proxy.web_url}/nosuchroute/studies", timeout=30).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).ok
    # The other route stores but does not search.
    other = requests.get(
        f"{proxy.web_url}/other/studies",
        headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
        timeout=30,
    )
    assert other.status_code == 404


def test_paging_fields_accept_and_what_is_not_served(
    proxy: Gateway, cohort: Cohort, clinical: Orthanc
) -> None:
    client = _client(proxy, "research")
    every = client.search_for_instances()
    assert {i["00080018"]["Value"][0] for i in every} == set(cohort.expected)
    ordered = [i["00080018"]["Value"][0] for i in every]
    page = client.search_for_instances(offset=1, limit=2)
    assert [i["00080018"]["Value"][0] for i in page] == ordered[1:3]
    series = client.search_for_series(fields=["PatientName"])
    assert all("00100010" in item for item in series)
    _no_phi(cohort, json.dumps(series))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    study = every[0]["0020000D"]["Value"][0]
    base = f"{proxy.web_url}/research/studies/{study}"
    wrong_syntax = {**auth, "Accept": 'multipart/related; type="application/dicom"; '
                    "transfer-syntax=1.2.840.10008.1.2.4.50"}  # fmt: skip
    assert requests.get(base, headers=wrong_syntax, timeout=60).status_code == 406
    as_json = {**auth, "Accept": "application/dicom+json"}
    assert requests.get(base, headers=as_json, timeout=60).status_code == 406
    assert requests.get(f"{base}/metadata", headers=as_json, timeout=60).ok
    assert requests.get(f"{base}/rendered", headers=auth, timeout=60).status_code == 501
    bad = requests.get(f"{proxy.web_url}/research/studies?NoSuchKeyword=1", headers=auth,
                       timeout=60)  # fmt: skip
    assert bad.status_code == 400
    # The upstream down: 502, never an answer from elsewhere.
    clinical.stop()
    try:
        down = requests.get(f"{proxy.web_url}/research/studies", headers=auth, timeout=60)
        assert down.status_code == 502
    finally:
        clinical.start()


# --------------------------------------------------------------------------------------------
# STOW-RS


@pytest.fixture
def research(tmp_path: Path) -> Iterator[Orthanc]:
    archive = Orthanc(tmp_path / "research")
    try:
        yield archive
    finally:
        archive.stop()


def _stow_gateway(tmp_path: Path, cohort: Cohort, research: Orthanc, retry: str = "") -> Gateway:
    routes = f"""
[[route]]
name = "ingest"
key = "@KEY@"
output = "{tmp_path / "out"}"
[route.forward]
url = "{research.dicomweb}"
[route.web]
tokens = ["{hash_token(TOKEN)}"]
"""
    config = _config(tmp_path, cohort, routes, max_body=4 << 20)
    if retry:
        config.write_text(
            config.read_text(encoding="utf-8").replace(
                "timeout = 20\n", f"timeout = 20\n{retry}\n"
            ),
            encoding="utf-8",
        )
    gateway = Gateway(load_config(config))
    gateway.start()
    return gateway


def _post(gateway: Gateway, body: bytes, content_type: str) -> requests.Response:
    return requests.post(
        f"{gateway.web_url}/ingest/studies",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type},
        timeout=60,
    )


def _multipart(parts: list[tuple[bytes, str]], boundary: str = "b0undary") -> bytes:
    out = b""
    for data, kind in parts:
        out += f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


DICOM_TYPE = 'multipart/related; type="application/dicom"; boundary=b0undary'
NO_BOUNDARY = 'multipart/related; type="application/dicom"'


def _stored(folder: Path) -> dict[str, bytes]:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return {str(dcmread(p).SOPInstanceUID): p.read_bytes() for p in files}


def test_stow_stores_and_forwards_what_run_writes(
    tmp_path: Path, cohort: Cohort, research: Orthanc
) -> None:
    gateway = _stow_gateway(tmp_path, cohort, research)
    try:
        client = _client(gateway, "ingest")
        burned = synthetic.us_burned_in(synthetic.fake_patient(7), seed=7)
        datasets = [dcmread(p) for p in cohort.originals] + [burned]
        response = client.store_instances(datasets)
        referenced = {item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence}
        assert referenced == set(cohort.expected)
        (failed,) = response.FailedSOPSequence  # the burned-in ultrasound: withheld
        assert failed.FailureReason == 0xC001
        assert failed.ReferencedSOPInstanceUID == burned.SOPInstanceUID
        for item in response.ReferencedSOPSequence:
            assert item.RetrieveURL.startswith(f"{gateway.web_url}/ingest/studies/")
        assert _stored(tmp_path / "out") == cohort.expected
        deadline = time.monotonic() + 60
        while research.count() < len(cohort.expected) and time.monotonic() < deadline:
            time.sleep(0.2)
        forwarded = {
            str(dcmread(io.BytesIO(data)).SOPInstanceUID): data
            for data in research.instance_files()
        }
        assert set(forwarded) == set(cohort.expected)
        for sop, data in forwarded.items():
            assert dcmread(io.BytesIO(data)) == dcmread(io.BytesIO(cohort.expected[sop]))
    finally:
        gateway.stop()


def test_stow_forwarding_waits_for_a_destination_that_is_down(
    tmp_path: Path, cohort: Cohort, research: Orthanc
) -> None:
    research.stop()
    gateway = _stow_gateway(
        tmp_path, cohort, research, retry="retry_initial = 0.2\nretry_max = 0.5"
    )
    try:
        answer = _client(gateway, "ingest").store_instances([dcmread(cohort.originals[0])])
        assert len(answer.ReferencedSOPSequence) == 1  # stored, queued
        queue = tmp_path / "state" / "queue" / "ingest"
        forwarder = gateway.routes["ingest"].forwarder
        assert forwarder is not None
        deadline = time.monotonic() + 30
        while forwarder.attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert forwarder.attempts >= 2 and forwarder.last_error is not None
        assert len(list(queue.glob("*.dcm*"))) == 1  # kept while the destination is down
        research.start()
        deadline = time.monotonic() + 60
        while research.count() < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        (forwarded,) = research.instance_files()
        sop = str(dcmread(io.BytesIO(forwarded)).SOPInstanceUID)
        assert sop == cohort.new_uids[str(dcmread(cohort.originals[0]).SOPInstanceUID)]
        deadline = time.monotonic() + 30
        while list(queue.glob("*.dcm*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not list(queue.glob("*.dcm*"))
    finally:
        gateway.stop()


def test_stow_checks_the_study_and_forwards_over_dimse(
    tmp_path: Path, cohort: Cohort, research: Orthanc
) -> None:
    routes = f"""
[[route]]
name = "ingest"
key = "@KEY@"
output = "{tmp_path / "out"}"
[route.forward]
host = "127.0.0.1"
port = {research.dicom_port}
ae_title = "ORTHANC"
[route.web]
tokens = ["{hash_token(TOKEN)}"]
"""
    gateway = Gateway(load_config(_config(tmp_path, cohort, routes)))
    gateway.start()
    try:
        client = _client(gateway, "ingest")
        first, second = (dcmread(p) for p in cohort.originals[:2])
        answer = client.store_instances([first, second], str(first.StudyInstanceUID))
        assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [
            cohort.new_uids[str(first.SOPInstanceUID)]
        ]
        (failed,) = answer.FailedSOPSequence  # not of the path's study
        assert failed.FailureReason == 0xA900
        deadline = time.monotonic() + 60
        while research.count() < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        (forwarded,) = research.instance_files()
        assert dcmread(io.BytesIO(forwarded)) == dcmread(
            io.BytesIO(cohort.expected[cohort.new_uids[str(first.SOPInstanceUID)]])
        )
    finally:
        gateway.stop()


@pytest.mark.parametrize("cut", [1, 7, 30, 1000])
def test_a_preamble_before_the_first_boundary_is_ignored(tmp_path: Path, cut: int) -> None:
    """RFC 2046 5.1.1: a client may write text before the first boundary (found by a
    black-box test: a 400 for a valid body); the body arrives in pieces of any size."""
    body = b"This is a preamble: ignore it.\r\n" + _multipart(
        [(b"first", "application/dicom"), (b"second", "application/dicom")]
    )
    chunks = [body[i : i + cut] for i in range(0, len(body), cut)]
    parts = spool_parts(chunks, "b0undary", tmp_path)
    assert [p.path.read_bytes() for p in parts] == [b"first", b"second"]
    with pytest.raises(MalformedBodyError):
        spool_parts([b"no boundary anywhere" * 5000], "b0undary", tmp_path / "none")


def test_stow_refuses_bad_bodies_and_stores_nothing(
    tmp_path: Path, cohort: Cohort, research: Orthanc
) -> None:
    gateway = _stow_gateway(tmp_path, cohort, research)
    good = cohort.originals[0].read_bytes()
    unknown = dcmread(cohort.originals[0])
    unknown.file_meta.TransferSyntaxUID = UID("1.2.3.4.5.6.7")
    unknown_path = tmp_path / "unknown.dcm"
    unknown.save_as(unknown_path, enforce_file_format=False)
    try:
        cases = [
            # (body, content type, status)
            (_multipart([(good, "application/dicom")])[:-10], DICOM_TYPE, 400),  # truncated
            (b"not a multipart body at all", DICOM_TYPE, 400),
            (_multipart([(good, "application/dicom")]), NO_BOUNDARY, 400),
            (_multipart([(b"x" * (5 << 20), "application/dicom")]), DICOM_TYPE, 413),
            (_multipart([(good, "application/dicom")]), "application/dicom", 415),
            (_multipart([(good, "application/dicom"), (good, "text/plain")]), DICOM_TYPE, 415),
            (_multipart([(good, "application/dicom+json")]), DICOM_TYPE, 415),
            (_multipart([(unknown_path.read_bytes(), "application/dicom")]), DICOM_TYPE, 409),
            (_multipart([(b"x", "application/dicom")] * (MAX_PARTS + 1)), DICOM_TYPE, 413),
            (
                _multipart([(good, "application/dicom; transfer-syntax=1.2.3.4.5")]),
                DICOM_TYPE,
                409,
            ),
        ]
        for body, kind, status in cases:
            answer = _post(gateway, body, kind)
            assert answer.status_code == status, (status, answer.text)
            if status == 409:
                failed = answer.json()["00081198"]["Value"]
                assert failed[0]["00081197"]["Value"] == [0xC122]
        assert _stored(tmp_path / "out") == {}
        assert not any((tmp_path / "state" / "queue").rglob("*.dcm"))
        assert not [p for p in (tmp_path / "state" / "spool").iterdir()]
        # Then a good body is taken.
        assert _post(gateway, _multipart([(good, "application/dicom")]), DICOM_TYPE).ok
        assert len(_stored(tmp_path / "out")) == 1
    finally:
        gateway.stop()
    assert research.count() <= 1


# --------------------------------------------------------------------------------------------
# HTTPS, the access log, the configuration


def test_https_and_an_access_log_without_uids_or_queries(
    tmp_path: Path, cohort: Cohort, clinical: Orthanc, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = self_signed(tmp_path)
    routes = _query_routes(clinical).replace("MAPS", str(cohort.maps))
    config = _config(tmp_path, cohort, routes).read_text(encoding="utf-8")
    config = config.replace(
        "[gateway.web]\n",
        f'[gateway.web]\ntls = {{ certificate = "{cert}", private_key = "{key}" }}\n',
    )
    (tmp_path / "gateway.toml").write_text(config, encoding="utf-8")
    gateway = Gateway(load_config(tmp_path / "gateway.toml"))
    caplog.set_level(logging.INFO, logger="dicomveil.gateway")
    gateway.start()
    try:
        assert gateway.web_url is not None and gateway.web_url.startswith("https://")
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides session.verify
        session.verify = str(cert)
        client = DICOMwebClient(
            f"{gateway.web_url}/research",
            session=session,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        first = dcmread(cohort.originals[0])
        # A client that searches by an original name and UID leaves no trace of them.
        assert (
            client.search_for_studies(search_filters={"PatientName": str(first.PatientName)}) == []
        )
        studies = client.search_for_studies()
        assert studies
        study = studies[0]["0020000D"]["Value"][0]
        assert client.search_for_series(study)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{gateway.web_url}/research/studies", timeout=10)  # unverified
        plain = gateway.web_url.replace("https://", "http://")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{plain}/research/studies", timeout=10)
    finally:
        gateway.stop()
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "/{name}/studies/{study}/series" in log
    assert study not in log
    assert str(first.StudyInstanceUID) not in log
    for part in str(first.PatientName).split("^"):
        assert part not in log


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[route.web]\ntokens = ["abc"]', "must be a token's hash"),
        ("[route.web]\ntokens = []", "name at least one token's hash"),
        (
            '[route.query]\nurl = "http://pacs/dicom-web"\nhost = "pacs"',
            "give 'url' (DICOMweb) or 'host', 'port' and 'ae_title'",
        ),
        ('[route.query]\nurl = "ftp://pacs"', "must be an http:// or https:// URL"),
        (
            '[route.query]\nurl = "http://pacs/dicom-web"\nworklist = true',
            "worklists and C-MOVE need a DIMSE upstream",
        ),
        ('[route.forward]\nhost = "pacs"\nport = 104', "route[1].forward.ae_title"),
        (
            '[route.forward]\nhost = "pacs"\nport = 104\nae_title = "A"\ntoken_env = "T"',
            "only with 'url'",
        ),
    ],
)
def test_configuration_errors(tmp_path: Path, table: str, message: str) -> None:
    text = f"""
[gateway]
state_dir = "state"
[gateway.web]
port = 0
[[route]]
name = "r"
output = "out"
{table}
"""
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(GatewayConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_a_web_route_needs_the_web_side(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "s"\n[[route]]\nname = "r"\noutput = "o"\n'
        f'[route.web]\ntokens = ["{hash_token(TOKEN)}"]\n',
        encoding="utf-8",
    )
    with pytest.raises(GatewayConfigError, match=r"needs a \[gateway.web\] table"):
        load_config(path)


def test_token_command() -> None:
    made = CliRunner().invoke(app, ["gateway", "token"])
    assert made.exit_code == 0
    token = made.stdout.split("token: ")[1].split()[0]
    assert hash_token(token) in made.stdout
    hashed = CliRunner().invoke(app, ["gateway", "token", "--hash"], input=token + "\n")
    assert hashed.stdout.strip() == hash_token(token)
