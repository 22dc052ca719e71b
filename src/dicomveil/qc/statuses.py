"""Statuses of batch runs and of subjects' quality control, shared by the audit trail
(:mod:`dicomveil.qc.audit`) and the command line without loading the database layer."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


class QcStatus(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"
