"""Finance exports: charge detail records, sessions, and revenue per site or per port and month, as CSV files
(docs/billing.md#finance-exports-csv).

- filters.py: the period and the organisation and site filters, their checks, the period applied to rows;
- scope.py: what a user may export, and the audit record of who exported what;
- rows.py: the typed rows (a CDR or credit, a session, a revenue row);
- readers.py: those rows from the database in chunks (keyset pagination), and revenue.py their sums for
  the revenue kinds; the portal's revenue page reads them too (`readers.revenue_site_rows`);
- columns.py: one column table per export kind: the CSV header and cells, and for CDRs the fields the
  admin and the API show;
- csv.py: the CSV in chunks of bytes, written to a file or streamed to an HTTP client;
- jobs.py: export jobs, written by a Celery worker and downloaded when done.

The modules are imported by their own names (`billing.services.exports.csv`, ...); this file holds none.
"""
