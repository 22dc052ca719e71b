"""The audit trail: who de-identified which files, how, and who checked the result."""

from dicomveil.errors import AuditError
from dicomveil.qc.audit.recorder import AuditRecorder, input_sha256, recording
from dicomveil.qc.audit.records import (
    FileRecord,
    QcEvent,
    RunRecord,
    SubjectRecord,
    VerificationRecord,
    current_user,
)
from dicomveil.qc.audit.store import SCHEMA_VERSION, TABLES
from dicomveil.qc.audit.trail import AuditTrail

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "AuditError",
    "AuditRecorder",
    "AuditTrail",
    "FileRecord",
    "QcEvent",
    "RunRecord",
    "SubjectRecord",
    "VerificationRecord",
    "current_user",
    "input_sha256",
    "recording",
]
