"""Keyed pseudonyms: UIDs, patient IDs and date offsets from HMAC-SHA256 of a project key.

One :class:`Pseudonymizer` serves every rule, so the same original always maps to the same
replacement: in every file, every run and every machine that uses the same key. Each kind of
value has its own domain string, so a UID and an ID with the same text never collide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from dicomveil.identity.keys import Key

# A UID under the 2.25 root (ITU-T X.667) holds a 128-bit integer: at most 44 characters.
_UID_ROOT = "2.25."
DATE_OFFSET_MIN_DAYS = 366
DATE_OFFSET_MAX_DAYS = 3652


class Pseudonymizer:
    """Deterministic keyed replacements for one key."""

    def __init__(self, key: Key) -> None:
        self._secret = key.secret
        self.fingerprint = key.fingerprint
        self.uid = lru_cache(maxsize=65536)(self._uid)

    def digest(self, domain: str, value: str) -> bytes:
        """The keyed HMAC-SHA256 of a value in one domain.

        Parameters
        ----------
        domain : str
            What the digest is for (``uid``, ``patient``, ``date-offset``, ...): the same
            value gives unrelated digests in different domains.
        value : str
            The value.

        Returns
        -------
        bytes
            32 bytes.
        """
        message = domain.encode("ascii") + b"\x00" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def _uid(self, original: str) -> str:
        """A 2.25 UID for an original UID (trailing NUL/space padding ignored)."""
        value = original.strip("\x00 ")
        number = int.from_bytes(self.digest("uid", value)[:16], "big")
        return f"{_UID_ROOT}{number}"

    def patient_pseudonym(self, patient_key: str) -> str:
        """A short pseudonymous patient ID such as ``DV7Q2M4K9XA3B``.

        Parameters
        ----------
        patient_key : str
            What identifies the patient (issuer and PatientID, or name and birth date).

        Returns
        -------
        str
            ``DV`` and 12 base-32 characters (valid for LO, SH and PN).
        """
        raw = self.digest("patient", patient_key)
        return "DV" + base64.b32encode(raw).decode("ascii")[:12]

    def patient_id_hash(self, issuer: str, patient_id: str) -> str:
        """A keyed hash of PatientID and its issuer (dcm4chee-arc's Retain Patient ID Hash).

        Parameters
        ----------
        issuer : str
            IssuerOfPatientID ('' when absent).
        patient_id : str
            PatientID.

        Returns
        -------
        str
            32 upper-case hexadecimal characters.
        """
        return self.digest("patient-id-hash", f"{issuer}\x00{patient_id}").hex()[:32].upper()

    def issuer_hash(self, issuer: str) -> str:
        """A keyed hash of IssuerOfPatientID (see :meth:`patient_id_hash`).

        Parameters
        ----------
        issuer : str
            IssuerOfPatientID.

        Returns
        -------
        str
            32 upper-case hexadecimal characters.
        """
        return self.digest("issuer-hash", issuer).hex()[:32].upper()

    def date_offset_days(self, patient_key: str) -> int:
        """The patient's date shift: into the past, 1 to 10 years, never zero.

        Parameters
        ----------
        patient_key : str
            What identifies the patient (see :meth:`patient_pseudonym`).

        Returns
        -------
        int
            Days to add to every date (negative).
        """
        raw = int.from_bytes(self.digest("date-offset", patient_key)[:8], "big")
        span = DATE_OFFSET_MAX_DAYS - DATE_OFFSET_MIN_DAYS + 1
        return -(DATE_OFFSET_MIN_DAYS + raw % span)
