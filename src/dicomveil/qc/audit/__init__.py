"""The audit trail: who de-identified which files, how, and who checked the result."""

from dicomveil.qc.audit.trail import (
    SCHEMA_VERSION,
    TABLES,
    AuditError,
    AuditRecorder,
    AuditTrail,
    FileRecord,
    QcEvent,
    RunRecord,
    SubjectRecord,
    VerificationRecord,
    current_user,
    input_sha256,
    recording,
)

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
