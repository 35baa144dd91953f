"""Append-only tables: bulk writes on the hot path (meter values, the OCPP message log) and insert-only models
(billing records, the audit log)."""

from typing import TypedDict

from django.db import connection, models


class DecimalDigits(TypedDict):
    """A decimal column's size, spread into the field (`DecimalField(**MONEY)`): typed, so both are checked."""

    max_digits: int
    decimal_places: int


def rows_append(model: type[models.Model], columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """Insert `rows` (tuples in `columns` order, column names as in the database) into `model`'s table.

    PostgreSQL: one COPY, with no per-row SQL compilation in Python
    (docs/performance.md#one-database-row-per-message: 50-84k rows/s). Elsewhere (SQLite, the embedded mode):
    bulk_create. Runs inside the caller's transaction.
    """
    if not rows:
        return
    if connection.vendor == "postgresql":
        statement = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return
    model._default_manager.bulk_create(
        [model(**dict(zip(columns, row, strict=True))) for row in rows], batch_size=500
    )


class ImmutableRecordError(Exception):
    """An append-only record (CDR, credit, audit entry) was about to be changed in place."""


class ImmutableQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableRecordError(f"{self.model.__name__} rows are never updated; issue a credit instead")

    def delete(self):
        raise ImmutableRecordError(f"{self.model.__name__} rows are never deleted")


class ImmutableModel(models.Model):
    """Insert-only: `save()` of a stored row and `delete()` raise. Database triggers (per model, in its app's
    migrations) are the guarantee; this makes the mistake visible before any SQL runs."""

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableRecordError(f"{type(self).__name__} {self.pk} is final; issue a credit instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableRecordError(f"{type(self).__name__} rows are never deleted")
