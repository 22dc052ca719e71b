"""Statuses of batch runs and of subjects' quality control, shared by the audit trail
(:mod:`dicomveil.qc.audit`) and the command line without loading the database layer."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A batch run's status in the audit trail: running, finished, or interrupted (its
    process ended without finishing it)."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


class QcStatus(StrEnum):
    """A subject's quality-control status: pending until a verification or a person passes
    or fails it; new output puts it back to pending."""

    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"
