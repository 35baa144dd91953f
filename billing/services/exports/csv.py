"""The CSV of an export: its header and rows from the column table of its kind (columns.py) over the typed rows
of its reader (readers.py), in chunks of bytes. The API streams it (`export_stream`: an async iterator, one
worker-thread database call per chunk) and an export job writes it to a file (`export_write`, jobs.py):
both produce the same bytes for the same filters and scope.
"""

import csv
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from billing.services.exports.columns import COLUMNS, header_of, row_function
from billing.services.exports.filters import ExportFilters
from billing.services.exports.readers import RowReader
from billing.services.exports.scope import ExportScope, export_audit

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/csv; charset=utf-8"


class ExportReader:
    """The CSV of one export, in chunks of bytes: `read()` returns the header first, then one chunk per
    database round trip (possibly empty), then None. Holds no database connection between calls, so each
    call may run in another thread. `records` counts the records of the period read so far (RowReader);
    `count()` says how many there are in all."""

    def __init__(
        self, *, kind: str, filters: ExportFilters, scope: ExportScope, chunk_rows: int | None = None
    ):
        self.rows = RowReader(kind=kind, filters=filters, scope=scope, chunk_rows=chunk_rows)
        self.kind = kind
        columns = COLUMNS[kind]
        self.header = header_of(columns)
        self.header_sent = False
        self._row = row_function(columns)
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")

    @property
    def records(self) -> int:
        return self.rows.records

    def read(self) -> bytes | None:
        if not self.header_sent:
            self.header_sent = True
            return self._encode([self.header])
        rows = self.rows.read()
        if rows is None:
            return None
        return self._encode(map(self._row, rows))

    def count(self) -> int:
        return self.rows.count()

    def _encode(self, rows: Iterable[Iterable[str]]) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerows(rows)
        return self._buffer.getvalue().encode()


def _read_attempts() -> int:
    """One more than the connections the pool may hold (each failed read discards one), or 2."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    return (pool.get("max_size", 1) if isinstance(pool, dict) else 1) + 1


def _read(reader: ExportReader) -> bytes | None:
    """`reader.read()`, again on another connection if the connection failed.

    The pool does no health check at checkout (cpms/settings.py): a pooled connection cut while idle (a
    database restart, a firewall) fails its first query, and after a restart every pooled connection
    does. A read that fails leaves the reader as it was (its keyset moves only after a fetch succeeds), so
    reading again is safe.
    """
    attempts = _read_attempts()
    for attempt in range(1, attempts + 1):
        try:
            return reader.read()
        except (OperationalError, InterfaceError):
            if attempt == attempts:
                raise
            logger.warning("export read failed on a broken connection; reading again", exc_info=True)
            close_old_connections()  # drops the broken connection (errors_occurred is set on it)
    raise AssertionError("unreachable")


def export_write(
    *, reader: ExportReader, out: BinaryIO, on_chunk: Callable[[int], None] | None = None
) -> int:
    """Write the whole CSV of `reader` to the binary file `out`; `on_chunk(records)` after each chunk.
    Returns the records written."""
    while (data := _read(reader)) is not None:
        if data:
            out.write(data)
        if on_chunk is not None:
            on_chunk(reader.records)
    return reader.records


def _in_worker_thread(func: Callable[[], Any]) -> Any:
    # channels' database_sync_to_async closes the thread's connection before and after the call when it
    # is not persistent (CONN_MAX_AGE 0: pooled connections go back to the pool), as OCPP handlers do
    # (cpms/ocpp/chargepoint.py:run_db). thread_sensitive=False: chunks do not queue behind the
    # request threads, and nothing holds a connection between two chunks.
    return database_sync_to_async(func, thread_sensitive=False)()


async def _release_request_connection() -> None:
    # The view ran on this request's thread and left that thread's connection checked out of the pool;
    # Django gives it back at request_finished, after the last byte. An export streams for minutes: give
    # it back now. Under ASGI the request's thread is the thread-sensitive one of this context.
    await sync_to_async(close_old_connections, thread_sensitive=True)()


# Tests that keep their data in the test transaction swap both for runners on the test's own thread
# (closing the test's connection would end its transaction).
_db_runner = _in_worker_thread
_request_connection_release = _release_request_connection


class ExportStreamFailed(Exception):
    """A streamed export failed after its first bytes (the cause is logged); the server drops the
    connection without ending the chunked body."""


def export_failure_line(*, records: int) -> bytes:
    """The last line of a streamed export that failed: one cell, in no column of the header, so that a
    tool that reads the partial file anyway finds a malformed last row rather than a shorter file that
    looks complete (chunks end at row boundaries)."""
    return (
        f"#EXPORT FAILED: this file is incomplete ({records} records written); see the server log\r\n"
    ).encode()


async def export_stream(*, reader: ExportReader) -> AsyncIterator[bytes]:
    """The CSV of `reader` as an async iterator, one database round trip per chunk in a worker thread.

    Async because under ASGI Django consumes a synchronous streaming iterator into a list before sending
    the first byte (django.http.StreamingHttpResponse.__aiter__): the whole export would sit in memory.

    A failure after the first byte (docs/reliability.md case 45) is logged, ends the body with
    `export_failure_line`, and raises ExportStreamFailed: the server then closes the connection without
    the chunked terminator (Daphne through cpms.daphne_compat, uvicorn by itself), so that an HTTP client
    reports an incomplete transfer (curl exit 18, `http.client.IncompleteRead`, a browser's failed
    download) instead of waiting forever or keeping a file that looks complete.
    """
    await _request_connection_release()
    rows = reader.rows
    while True:
        try:
            if not reader.header_sent:  # the status line and headers are already on their way
                await _db_runner(
                    lambda: export_audit(kind=reader.kind, filters=rows.filters, scope=rows.scope)
                )
            data = await _db_runner(lambda: _read(reader))
        except Exception as exc:
            logger.exception("%s export failed after %d records", reader.kind, reader.records)
            yield export_failure_line(records=reader.records)
            raise ExportStreamFailed(f"{reader.kind} export failed after {reader.records} records") from exc
        if data is None:
            return
        if data:
            yield data


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


async def export_file_stream(*, path: Path, block_bytes: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A stored export file in blocks, read in a worker thread (FileResponse would be buffered whole under
    ASGI, for the reason given in `export_stream`)."""
    await _request_connection_release()
    handle = await sync_to_async(_open_binary, thread_sensitive=False)(path)
    try:
        while block := await sync_to_async(handle.read, thread_sensitive=False)(block_bytes):
            yield block
    finally:
        handle.close()
