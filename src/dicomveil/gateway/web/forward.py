"""The STOW-RS forwarder: a route's queue sent to a DICOMweb service.

The queue, its claims, the backoff and the status are :class:`~dicomveil.gateway.forward
.QueueForwarder`'s (see :mod:`dicomveil.gateway.forward`: nothing is lost in a crash, an
instance may be sent twice, always with the same bytes). Each round sends up to 64 queued
files (at most 64 MiB) in one STOW-RS request with ``dicomweb-client``'s
``store_instances``; the Store Instances Response says which were stored (deleted from the
queue) and which failed (moved to ``failed/``). An unreachable service, a 5xx answer, 401,
403, 408 or 429 is transient (retried with backoff); another 4xx refuses the batch's
instances for good.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info

from dicomveil.gateway.config import WebService
from dicomveil.gateway.forward import ForwardListener, QueueForwarder, TransientError
from dicomveil.gateway.queue import RouteQueue
from dicomveil.gateway.web.client import web_client

__all__ = ["StowForwarder"]

LOGGER = logging.getLogger("dicomveil.gateway")

_BATCH = 64
_BATCH_BYTES = 64 << 20
_TRANSIENT = frozenset({401, 403, 408, 429})


class StowForwarder(QueueForwarder):
    """Sends one route's queue to a STOW-RS service.

    Parameters
    ----------
    route, queue, listener, retry_initial, retry_max
        As :class:`~dicomveil.gateway.forward.QueueForwarder`'s.
    service : WebService
        The destination.
    timeout : float
        Connection and read timeouts, in seconds.
    """

    def __init__(
        self,
        route: str,
        queue: RouteQueue,
        service: WebService,
        listener: ForwardListener,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(
            route,
            queue,
            service.label,
            listener,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )
        self.client = web_client(service, timeout)
        # One request body, not chunked transfer encoding (not every server takes it).
        self.client.set_chunk_size(2 * _BATCH_BYTES)

    def _round(self) -> bool:
        """Send up to one batch of what is queued (see the module)."""
        claims: list[tuple[Path, int, str]] = []
        total = 0
        for entry in self.queue.pending()[:_BATCH]:
            claim = self.queue.claim(entry)
            if claim is None:
                continue
            try:
                size = claim.stat().st_size
                sop = str(read_file_meta_info(claim).MediaStorageSOPInstanceUID)
            except Exception:
                self._refuse(claim, "the queued file cannot be read as DICOM")
                continue
            claims.append((claim, size, sop))
            total += size
            if total >= _BATCH_BYTES:
                break
        if not claims:
            return False
        try:
            response = self._post([claim for claim, _, _ in claims])
            failed = {
                str(item.get("ReferencedSOPInstanceUID", "")): int(item.get("FailureReason") or 0)
                for item in response.get("FailedSOPSequence", None) or []
            }
            stored = {
                str(item.get("ReferencedSOPInstanceUID", ""))
                for item in response.get("ReferencedSOPSequence", None) or []
            }
        except _RefusedError as exc:
            for claim, _, _ in claims:
                self._refuse(claim, str(exc))
            return True
        except Exception as exc:  # a transient error, or an answer that cannot be read
            for claim, _, _ in claims:
                self.queue.unclaim(claim)
            if isinstance(exc, TransientError):
                raise
            raise TransientError(f"unreadable answer ({type(exc).__name__})") from None
        # An answer without either sequence (a 200 with an empty body) stores them all;
        # otherwise only what it lists as stored is, and what it lists as failed is refused.
        listed = "FailedSOPSequence" in response or "ReferencedSOPSequence" in response
        retry = False
        for claim, size, sop in claims:
            if sop in failed:
                self._refuse(claim, f"the destination refused it (0x{failed[sop]:04X})")
            elif sop in stored or not listed:
                self._forwarded(claim, size)
            else:
                self.queue.unclaim(claim)
                retry = True
        if retry:
            raise TransientError("the destination did not say whether it stored an instance")
        return True

    def _post(self, files: list[Path]) -> Dataset:
        import requests

        try:
            # Read as they are on disk; pydicom writes them back byte for byte (the files
            # are pydicom's own output, File Meta and preamble included).
            datasets = [dcmread(path) for path in files]
            return self.client.store_instances(datasets)
        except requests.HTTPError as exc:
            answer = exc.response
            status = answer.status_code if answer is not None else 0
            if answer is not None and status == 409:
                # A Store Instances Response with failures: read which (none listed: all).
                try:
                    failures = Dataset.from_json(answer.json())
                except Exception:
                    failures = Dataset()
                if not failures.get("FailedSOPSequence"):
                    refused = f"the destination refused the request ({status})"
                    raise _RefusedError(refused) from None
                return failures
            if status >= 500 or status in _TRANSIENT:
                raise TransientError(f"the destination answered {status}") from None
            raise _RefusedError(f"the destination refused the request ({status})") from None
        except (requests.RequestException, OSError) as exc:
            raise TransientError(f"cannot reach the destination ({type(exc).__name__})") from None


class _RefusedError(Exception):
    """The destination refused a whole request for good."""
