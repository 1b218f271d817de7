"""Errors raised by the data readers, and the bookkeeping behind ``on_error="skip"``.

Every reader reports bad input as a :class:`DataFormatError` that names the file, the record index and the field, so a
user can find the broken record in a multi-gigabyte file. With ``on_error="skip"`` the reader drops the record instead,
counts it in an :class:`ErrorReport` and logs a summary: never a silent drop, never a crash mid-training.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


class DataFormatError(ValueError):
    """A record that cannot be turned into a unified example.

    Args:
        message: What is wrong, in words.
        file: The file the record comes from (``None`` when there is no file, e.g. generated data).
        record: The 0-based index of the record in that file (array element or JSON Lines line).
        field: A dotted path to the offending field, e.g. ``"dialogue[3].share_photo"``.
    """

    def __init__(self, message: str, file: str | None = None, record: int | None = None, field: str | None = None):
        self.message = message
        self.file = file
        self.record = record
        self.field = field
        where = []
        if file is not None:
            where.append(f"file {file!s}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class MissingImageError(DataFormatError):
    """An image that the example refers to is not available locally (e.g. PhotoChat loaded without ``image_dir``)."""


@dataclass
class ErrorReport:
    """Records skipped under ``on_error="skip"``.

    Pass one to a loader to inspect what was dropped; ``count`` is the number of skipped records and ``errors`` keeps
    the first ``max_kept`` errors verbatim (a 1M-record file with a systematic problem must not fill memory).
    """

    max_kept: int = 100
    count: int = 0
    errors: list[DataFormatError] = field(default_factory=list)
    by_field: Counter = field(default_factory=Counter)

    def add(self, error: DataFormatError) -> None:
        self.count += 1
        self.by_field[error.field or "<record>"] += 1
        if len(self.errors) < self.max_kept:
            self.errors.append(error)

    def reset(self) -> None:
        """Forget what was recorded (e.g. between two passes over a streamed dataset, which both add to it)."""
        self.count = 0
        self.errors.clear()
        self.by_field.clear()

    def summary(self) -> str:
        fields = ", ".join(f"{name}: {n}" for name, n in self.by_field.most_common(5))
        return f"skipped {self.count} malformed record(s) ({fields})" if self.count else "skipped 0 records"


def check_on_error(on_error: str) -> None:
    """Validate the ``on_error`` argument early, before any file is read."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def handle(error: DataFormatError, on_error: str, report: ErrorReport | None) -> None:
    """Raise ``error`` or record it, according to ``on_error``."""
    if on_error == "raise":
        raise error
    if report is not None:
        report.add(error)


def log_summary(source: str, report: ErrorReport) -> None:
    """Warn once per load when records were skipped, so the drop is visible even without inspecting the report."""
    if report.count:
        logger.warning("%s: %s; first: %s", source, report.summary(), report.errors[0] if report.errors else "")
