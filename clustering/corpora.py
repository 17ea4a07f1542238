"""Loaders for labelled corpora (benchmarks and evaluation sets).

A labelled corpus is a file of documents, each with a gold label (the story or
topic it belongs to).  Three layouts are read, chosen by the file's suffix:

* ``.jsonl`` / ``.json``: one JSON object per line (a ``.json`` file holding a
  single JSON array of objects is accepted too);
* ``.tsv`` / ``.csv`` with a header row: fields are column names;
* ``.tsv`` / ``.csv`` without a header: every field is given as a 0-based
  column index (``"0"``, ``"1"``), as for the AG News file, which is
  ``label<TAB>text``.  Giving all fields as digit strings is what selects
  this layout; mixing indices and names is an error.

TSV is split on tabs without quote processing (tabs and newlines cannot occur
inside a field, and a stray ``"`` in a headline is text, not a quote); CSV
follows the usual quoting rules, so a quoted field may span lines.  Files are
read as UTF-8; a byte-order mark is skipped.

Every field named by the caller must be present in every record; a missing
field, unreadable line or bad date raises :class:`~clustering.errors.ConfigError`
naming the file, the line and the field.  JSON ``null`` in an optional field
reads as ``None``; the text and label must not be null.  Labels and ids are
converted to ``str`` (ECB+ topics are integers).  Dates are ISO 8601 strings or
Unix timestamps and come back timezone-aware UTC (naive ones are taken as UTC).

Only the standard library is imported here.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from clustering.errors import ConfigError

__all__ = ["LabelledDoc", "load_labelled", "split_headline"]

HEADLINE_MAX_CHARS = 200
"""A first line at least this long is a paragraph, not a headline.

Headlines in ECB+ and BBC are under 120 characters; first paragraphs of
articles with no headline line run to several hundred.
"""


@dataclass(frozen=True)
class LabelledDoc:
    """One document of a labelled corpus; ``label`` is its gold cluster."""

    text: str
    label: str
    title: str | None = None
    time: datetime | None = None
    source: str | None = None
    topic_label: str | None = None
    doc_id: str | None = None
    line: int | None = field(default=None, compare=False)  # where it starts in its file (JSON array: record number)

    def describe(self, index: int) -> str:
        """How a message names this document: its position, line and id."""
        where = [f"line {self.line}"] if self.line is not None else []
        where += [f"id {self.doc_id!r}"] if self.doc_id is not None else []
        return f"document {index}" + (f" ({', '.join(where)})" if where else "")


def split_headline(text: str) -> tuple[str, str]:
    """Split ``text`` into (headline, body) when its first line looks like one.

    The first line is a headline when the text has at least two non-blank
    lines and the first is shorter than :data:`HEADLINE_MAX_CHARS`.  Otherwise
    the result is ``("", text)``.  Blank lines between headline and body are
    dropped (BBC texts are ``title\\n\\nbody``).
    """
    stripped = text.strip()
    first, _, rest = stripped.partition("\n")
    body = rest.strip()
    if not body or len(first.strip()) >= HEADLINE_MAX_CHARS:
        return "", text
    return first.strip(), body


def load_labelled(
    path: Path,
    *,
    text_field: str,
    label_field: str,
    title_field: str | None = None,
    time_field: str | None = None,
    topic_field: str | None = None,
    source_field: str | None = None,
    id_field: str | None = None,
) -> list[LabelledDoc]:
    """Read a labelled corpus; see the module docstring for the layouts."""
    path = Path(path)
    fields = {
        "text": text_field,
        "label": label_field,
        "title": title_field,
        "time": time_field,
        "topic_label": topic_field,
        "source": source_field,
        "doc_id": id_field,
    }
    named = {role: name for role, name in fields.items() if name is not None}
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        records = _json_records(path)
    elif suffix in (".tsv", ".csv"):
        records = _table_records(path, delimiter="\t" if suffix == ".tsv" else ",",
                                 names=list(named.values()))
    else:
        raise ConfigError(f"unknown corpus format {suffix!r}; expected .jsonl, .json, "
                          ".tsv or .csv", path=str(path))
    return [_doc(record, named, path, line) for line, record in records]


def _doc(record: Mapping[str, Any], named: dict[str, str], path: Path,
         line: int) -> LabelledDoc:
    values: dict[str, Any] = {}
    for role, name in named.items():
        if name not in record:
            raise ConfigError(f"missing field {name!r} ({role})", path=str(path),
                              key=name, line=line)
        value = record[name]
        if value is None and role in ("text", "label"):
            raise ConfigError(f"field {name!r} ({role}) is null", path=str(path),
                              key=name, line=line)
        if role == "time" and value is not None:
            value = _parse_time(value, path=path, key=name, line=line)
        elif value is not None:
            value = str(value)
        values[role] = value
    return LabelledDoc(**values, line=line)


def _parse_time(value: object, *, path: Path, key: str, line: int) -> datetime | None:
    if isinstance(value, str) and not value.strip():
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str)
                                               and value.strip().lstrip("-").isdigit()):
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        if not isinstance(value, str):
            raise ValueError(f"not a date string: {value!r}")
        text = value.strip()
        # Python 3.10's fromisoformat does not read a "Z" suffix.
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except (ValueError, OverflowError, OSError) as error:
        raise ConfigError(f"bad date {value!r}: {error}", path=str(path), key=key,
                          line=line) from error
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _json_records(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    text = _read(path)
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"invalid JSON: {error.msg}", path=str(path),
                              line=error.lineno) from error
        # A JSON array carries no line per record; report the record's 1-based index.
        yield from ((i, _object(item, path, i)) for i, item in enumerate(items, 1))
        return
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"invalid JSON: {error.msg}", path=str(path),
                              line=line_no) from error
        yield line_no, _object(item, path, line_no)


def _object(item: object, path: Path, line: int) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise ConfigError(f"expected a JSON object, got {type(item).__name__}",
                          path=str(path), line=line)
    return item


def _table_records(path: Path, *, delimiter: str,
                   names: Sequence[str]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    numeric = [name.isdigit() for name in names]
    if any(numeric) and not all(numeric):
        raise ConfigError("give all fields as column indices (headerless file) or all "
                          f"as column names, not a mix: {list(names)}", path=str(path))
    rows = _tsv_rows(path) if delimiter == "\t" else _csv_rows(path)
    if all(numeric):
        for line_no, row in rows:
            yield line_no, {str(i): cell for i, cell in enumerate(row)}
        return
    first = next(rows, None)
    if first is None:
        raise ConfigError("empty file: no header row", path=str(path), line=1)
    header_line, header = first
    for name in names:
        if name not in header:
            raise ConfigError(f"missing field {name!r}: header has {header}",
                              path=str(path), key=name, line=header_line)
    for line_no, row in rows:
        if len(row) != len(header):
            raise ConfigError(f"expected {len(header)} columns, got {len(row)}",
                              path=str(path), line=line_no)
        yield line_no, dict(zip(header, row, strict=True))


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    for line_no, line in enumerate(_read(path).splitlines(), 1):
        if line.strip():
            yield line_no, line.split("\t")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    # newline="" semantics: keep line ends so quoted fields may span lines.
    reader = csv.reader(_read(path).splitlines(keepends=True))
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ConfigError(f"unreadable row: {error}", path=str(path),
                              line=reader.line_num) from error
        if row:
            yield start, row


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read corpus: {error}", path=str(path)) from error
