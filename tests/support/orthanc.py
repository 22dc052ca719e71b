"""Orthanc from Debian (packages ``orthanc`` and ``orthanc-dicomweb``) as a real peer.

Each :class:`Orthanc` is its own process on loopback with its own storage folder: a
clinical archive for the gateway to proxy (DICOMweb and DIMSE), or a research archive to
forward to. The tests skip without it, and fail where ``DICOMVEIL_REQUIRE_TEST_DATA=1``
(CI installs both packages).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

__all__ = ["PLUGIN", "Orthanc", "need_orthanc"]

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
_BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


def need_orthanc() -> None:
    """Skip (or fail in CI) when Orthanc or its DICOMweb plugin is not installed."""
    if Path(_BINARY).is_file() and PLUGIN.is_file():
        return
    message = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if os.environ.get("DICOMVEIL_REQUIRE_TEST_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Orthanc:
    """A running Orthanc: REST on :attr:`http_port`, DICOMweb at :attr:`dicomweb`, DIMSE
    (AE title ``ORTHANC``) on :attr:`dicom_port`, accepting C-FIND and C-GET from anyone.

    Parameters
    ----------
    folder : Path
        Its storage, index, configuration and log.
    """

    def __init__(self, folder: Path) -> None:
        need_orthanc()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.http_port = _free_port()
        self.dicom_port = _free_port()
        config: dict[str, Any] = {
            "Name": folder.name,
            "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomCheckCalledAet": False,
            "StorageCompression": False,
            "OverwriteInstances": True,
            "UnknownSopClassAccepted": True,
        }
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config), encoding="utf-8")
        self.start()

    def start(self) -> None:
        """Start the process (again, after :meth:`stop`: same ports, same storage)."""
        folder = self.folder
        with (folder / "orthanc.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [_BINARY, str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.rest + "/system", timeout=2).ok:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = (folder / "orthanc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc did not start:\n{log_text}")
            time.sleep(0.1)

    @property
    def rest(self) -> str:
        """Its REST API's base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        """Its DICOMweb service's base URL."""
        return f"{self.rest}/dicom-web"

    def upload(self, *paths: Path) -> None:
        """Store files through the REST API (as they are: Orthanc keeps their bytes)."""
        for path in paths:
            answer = requests.post(self.rest + "/instances", data=path.read_bytes(), timeout=30)
            assert answer.ok, answer.text

    def instance_files(self) -> list[bytes]:
        """The bytes of every instance it holds."""
        ids = requests.get(self.rest + "/instances", timeout=30).json()
        return [requests.get(f"{self.rest}/instances/{i}/file", timeout=30).content for i in ids]

    def count(self) -> int:
        """How many instances it holds."""
        return len(requests.get(self.rest + "/instances", timeout=30).json())

    def stop(self) -> None:
        """Stop the process."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
