"""Record-by-record reading of JSON files that are either one top-level array or JSON Lines.

Both PhotoChat (arrays) and MMDialog (JSON Lines, possibly arrays) go through :func:`iter_json_records`, which holds
at most one record plus one read chunk in memory, so a multi-gigabyte file can be streamed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any

from .errors import DataFormatError

_CHUNK = 1 << 20
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _detect_array(handle: IO[str]) -> bool:
    """True when the first non-whitespace character is ``[`` (then the handle is left just after it)."""
    while True:
        char = handle.read(1)
        if char == "" or not char.isspace():
            break
    if char == "[":
        return True
    handle.seek(0)
    return False


def _iter_array(handle: IO[str], path: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    buffer, pos, eof = "", 0, False

    def more() -> bool:
        nonlocal buffer, pos, eof
        chunk = "" if eof else handle.read(_CHUNK)
        if not chunk:
            eof = True
            return False
        buffer, pos = buffer[pos:] + chunk, 0
        return True

    def skip_whitespace() -> None:
        nonlocal pos
        while True:
            pos = _WHITESPACE.match(buffer, pos).end()  # type: ignore[union-attr]
            if pos < len(buffer) or not more():
                return

    index = 0
    skip_whitespace()
    if pos < len(buffer) and buffer[pos] == "]":
        pos += 1
    else:
        while True:
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError as error:
                    if more():
                        continue  # the record may only be cut by the chunk boundary
                    raise DataFormatError(f"malformed JSON: {error.msg}", path, index) from error
                if end == len(buffer) and more():
                    continue  # a scalar cut at the boundary would decode short: re-read with more text
                break
            pos = end
            yield index, value
            index += 1
            skip_whitespace()
            separator = buffer[pos] if pos < len(buffer) else ""
            pos += 1
            if separator == "]":
                break
            if separator != ",":
                raise DataFormatError(f"malformed JSON: expected ',' or ']' after record, found {separator!r}",
                                      path, index)
            skip_whitespace()
    skip_whitespace()
    if pos < len(buffer):
        raise DataFormatError("malformed JSON: data after the closing ']'", path, index)


def _iter_lines(handle: IO[str], path: str) -> Iterator[tuple[int, Any]]:
    index = 0
    for line_number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            value: Any = json.loads(line)
        except json.JSONDecodeError as error:
            value = DataFormatError(f"malformed JSON on line {line_number}: {error.msg}", path, index)
        yield index, value
        index += 1


def iter_json_records(path: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(record_index, record)`` from a JSON array file or a JSON Lines file.

    In JSON Lines a malformed line is yielded as a :class:`DataFormatError` *value* (the caller may skip it and go
    on); in an array a malformed record is raised, since nothing after it can be located reliably.
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:
            if _detect_array(handle):
                yield from _iter_array(handle, path)
            else:
                yield from _iter_lines(handle, path)
    except UnicodeDecodeError as error:
        raise DataFormatError(f"not UTF-8 text: {error}", path) from error
    except FileNotFoundError as error:
        raise DataFormatError("file not found", path) from error
