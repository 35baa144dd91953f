"""Portal finance pages: revenue per site and month (the numbers of the revenue_sites export), the exports page
(direct CSV links that work with the session cookie, export jobs with a polled progress row, downloads), and
the denials."""

import csv
import io
import re
from datetime import date
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import Client

from billing.enums import ExportStatus
from billing.models import ExportJob
from billing.services.exports import csv as export_csv
from billing.services.exports.columns import HEADERS
from billing.services.exports.filters import ExportFilters
from billing.services.exports.jobs import export_job_create, export_job_run
from billing.services.exports.readers import revenue_site_rows
from cpms.portal.finance import default_period
from tests.billing.test_export_columns import edge_ledger
from tests.billing.test_exports import (
    REVENUE_SITES_HEADER,
    expected_cdrs_march,
    expected_revenue_sites_feb_to_april,
    export_text,
    ledger_make,
)

FEB_TO_APRIL = "period_from=2025-02-01&period_to=2025-05-01"


@pytest.fixture(autouse=True)
def chunks_on_the_test_thread(monkeypatch):
    """As in tests/api/test_exports_api.py: streamed chunks run on the test's thread, which holds the test's
    uncommitted data."""

    async def keep_the_test_connection() -> None:
        pass

    monkeypatch.setattr(export_csv, "_db_runner", lambda func: sync_to_async(func, thread_sensitive=True)())
    monkeypatch.setattr(export_csv, "_request_connection_release", keep_the_test_connection)


@pytest.fixture
def ledger(world):
    return ledger_make(world)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def body(response) -> str:
    async def collect() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(collect)().decode()


def cells(html: str, attribute: str, value) -> list[str]:
    match = re.search(rf'<tr {attribute}="{re.escape(str(value))}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row {attribute}={value}"
    found = re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in found]


def section(html: str, currency: str) -> str:
    match = re.search(rf'<section class="card" [^>]*data-currency="{currency}">(.*?)</section>', html, re.S)
    assert match, currency
    return match.group(1)


def stat(html: str, role: str) -> str:
    match = re.search(rf'data-role="{role}">(.*?)</span>', html)
    assert match, role
    return match.group(1)


# --- revenue -------------------------------------------------------------------------------------------


def test_revenue_needs_a_login_and_the_export_right(world, ledger):
    response = Client().get("/portal/revenue/")
    assert (response.status_code, response["Location"]) == (302, "/portal/login/?next=/portal/revenue/")
    for user in (world.host_a1,):
        response = client_for(user).get(f"/portal/revenue/?{FEB_TO_APRIL}")
        assert response.status_code == 403
        assert "Your role does not give access to this page." in response.content.decode()
        assert "A3 Depot" not in response.content.decode()


def test_revenue_shows_the_numbers_of_the_revenue_sites_export(world, ledger):
    response = client_for(world.finance_a).get(f"/portal/revenue/?{FEB_TO_APRIL}")
    assert response.status_code == 200
    html = response.content.decode()
    eur, jpy = section(html, "EUR"), section(html, "JPY")
    # Totals per currency, never across currencies; margin and cost partial (CDR2 has no energy cost).
    assert [stat(eur, r) for r in ("net", "revenue", "credits", "energy-cost", "margin", "sessions")] == [
        "4.17 EUR",
        "11.17 EUR",
        "-7.00 EUR",
        "3.67 EUR",
        "-0.50 EUR",
        "4",
    ]
    assert "energy cost (partial)" in eur
    assert [stat(jpy, r) for r in ("net", "revenue", "credits", "energy-cost", "margin", "sessions")] == [
        "1950 JPY",
        "1950 JPY",
        "0 JPY",
        "900 JPY",
        "1050 JPY",
        "1",
    ]
    assert "(partial)" not in jpy
    # Per site over the period, in the export's order.
    assert cells(eur, "data-site", "A3 Depot") == [
        "Org A", "A3 Depot", "2", "12.000 kWh", "5.00 EUR", "-2.00 EUR", "3.00 EUR", "1.00 EUR partial",
        "1.00 EUR partial",
    ]  # fmt: skip
    assert cells(eur, "data-site", "A1") == [
        "Org A", "A1", "2", "13.345 kWh", "6.17 EUR", "-5.00 EUR", "1.17 EUR", "2.67 EUR", "-1.50 EUR",
    ]  # fmt: skip
    # Per site and month: the export's rows.
    months = re.findall(r'<tr data-month="([\d-]+)">', eur)
    assert months == ["2025-02", "2025-03", "2025-03", "2025-04"]
    assert cells(eur, "data-month", "2025-04") == [
        "2025-04", "Org A", "A1", "1", "1.000 kWh", "0.35 EUR", "0.00 EUR", "0.35 EUR", "0.20 EUR", "0.15 EUR",
    ]  # fmt: skip
    # The chart: net revenue per month, as a hidden table for screen readers too.
    chart = re.search(r"<caption>Net revenue per month</caption>(.*?)</table>", eur, re.S).group(1)
    assert re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", chart) == [
        ("2025-02", "2 EUR"),
        ("2025-03", "1.82 EUR"),
        ("2025-04", "0.35 EUR"),
    ]


def test_the_page_rows_equal_the_export_for_the_same_period(world, ledger):
    filters = {"period_from": date(2025, 2, 1), "period_to": date(2025, 5, 1)}
    text = export_text("revenue_sites", world.finance_a, **filters)
    assert text == expected_revenue_sites_feb_to_april()
    exported = list(csv.DictReader(io.StringIO(text)))
    rows = revenue_site_rows(user=world.finance_a, filters=ExportFilters(**filters))
    assert len(rows) == len(exported) == 5
    for row, record in zip(rows, exported, strict=True):
        # Typed rows with a field per column: the numbers as the CSV writes them, no parsing.
        assert list(record) == REVENUE_SITES_HEADER.split(",")
        for key, value in record.items():
            shown = getattr(row, key)
            assert ("" if shown is None else str(shown)) == value, key
    assert rows[1].margin == Decimal("-1.65")
    assert rows[2].energy_cost is None
    assert (type(rows[1].sessions), type(rows[1].energy_kwh)) == (int, Decimal)


def test_the_revenue_page_shows_the_edge_cases_to_the_exports_decimal(world):
    """The page reads the rows the CSV is written from: a 3-decimal currency keeps its 3 decimals, and the
    site-less CDR shows with an empty site name."""
    edge_ledger(world)
    html = (
        client_for(world.finance_a)
        .get("/portal/revenue/?period_from=2025-01-01&period_to=2025-04-01")
        .content.decode()
    )
    bhd, eur = section(html, "BHD"), section(html, "EUR")
    assert [stat(bhd, r) for r in ("net", "revenue", "credits", "energy-cost", "margin", "sessions")] == [
        "1.234 BHD",
        "1.235 BHD",
        "-0.001 BHD",
        "0.000 BHD",
        "1.234 BHD",
        "1",
    ]
    assert [stat(eur, r) for r in ("net", "revenue", "credits", "energy-cost", "margin", "sessions")] == [
        "0.01 EUR",
        "0.01 EUR",
        "0.00 EUR",
        "0.01 EUR",
        "0.00 EUR",
        "1",
    ]
    assert cells(eur, "data-month", "2025-01") == [
        "2025-01", "Org A", "", "1", "0.999 kWh", "0.01 EUR", "0.00 EUR", "0.01 EUR", "0.01 EUR", "0.00 EUR",
    ]  # fmt: skip


def test_another_organisation_sees_only_its_own_revenue(world, ledger):
    html = client_for(world.operator_b).get(f"/portal/revenue/?{FEB_TO_APRIL}").content.decode()
    eur = section(html, "EUR")
    assert re.findall(r'<tr data-site="([^"]+)">', eur) == ["B1"]
    assert stat(eur, "net") == "8.00 EUR"
    assert "A3 Depot" not in html
    assert 'data-currency="JPY"' not in html


def test_revenue_periods_are_checked(world, ledger):
    client = client_for(world.finance_a)
    html = client.get("/portal/revenue/?period_from=2025-05-01&period_to=2025-02-01").content.decode()
    assert "&#x27;From&#x27; must be before &#x27;To&#x27; (&#x27;To&#x27; is exclusive)." in html
    html = client.get("/portal/revenue/?period_from=2020-01-01&period_to=2025-02-01").content.decode()
    assert "The period spans more than 400 days" in html
    html = client.get("/portal/revenue/?period_from=2024-01-01&period_to=2024-02-01").content.decode()
    assert "No revenue in this period." in html


def test_the_default_period_is_the_last_twelve_months():
    assert default_period(date(2026, 11, 24)) == (date(2025, 12, 1), date(2026, 12, 1))
    assert default_period(date(2026, 1, 31)) == (date(2025, 2, 1), date(2026, 2, 1))


# --- exports -------------------------------------------------------------------------------------------


def test_exports_need_a_login_and_the_export_right(world, ledger):
    response = Client().get("/portal/exports/")
    assert (response.status_code, response["Location"]) == (302, "/portal/login/?next=/portal/exports/")
    host = client_for(world.host_a1)
    assert host.get("/portal/exports/").status_code == 403
    data = {"kind": "cdrs", "period_from": "2025-03-01", "period_to": "2025-04-01"}
    assert host.post("/portal/exports/", data).status_code == 403
    assert ExportJob.objects.count() == 0


def test_every_direct_link_downloads_its_csv_with_the_session_cookie(world, ledger):
    client = client_for(world.finance_a)
    html = client.get("/portal/exports/?period_from=2025-03-01&period_to=2025-04-01").content.decode()
    links = dict(re.findall(r'<a href="([^"]+)" data-kind="([a-z_]+)"', html))
    links = {kind: url.replace("&amp;", "&") for url, kind in links.items()}
    assert links == {
        kind: f"/api/v1/exports/{kind}.csv?from=2025-03-01&to=2025-04-01"
        for kind in ("sessions", "cdrs", "revenue_sites", "revenue_ports")
    }
    for kind, url in links.items():
        response = client.get(url)
        assert response.status_code == 200, kind
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        text = body(response)
        assert text.split("\r\n")[0] == ",".join(HEADERS[kind])
    assert body(client.get(links["cdrs"])) == expected_cdrs_march(ledger)


def test_links_over_more_than_400_days_point_to_a_job(world):
    html = (
        client_for(world.finance_a)
        .get("/portal/exports/?period_from=2020-01-01&period_to=2025-01-01")
        .content.decode()
    )
    assert "Direct downloads cover at most 400 days: start an export job below." in html
    assert "data-kind=" not in html


def test_an_export_job_runs_with_a_polled_progress_row_and_downloads(world, ledger, media):
    client = client_for(world.finance_a)
    data = {
        "kind": "revenue_sites",
        "period_from": "2025-02-01",
        "period_to": "2025-05-01",
        "site": [str(ledger.site_utc.pk)],
    }
    response = client.post("/portal/exports/", data)
    job = ExportJob.objects.get()
    assert (response.status_code, response["Location"]) == (302, "/portal/exports/")
    assert (job.requested_by, job.kind, job.status) == (world.finance_a, "revenue_sites", ExportStatus.QUEUED)
    assert job.filters == {
        "from": "2025-02-01",
        "to": "2025-05-01",
        "organisation": None,
        "site": [ledger.site_utc.pk],
    }
    assert job.organisation_ids == [world.org_a.pk]

    html = client.get("/portal/exports/").content.decode()
    assert f"Export {job.pk} started; it shows below with its progress." in html
    row_url = f"/portal/exports/jobs/{job.pk}/row/"
    assert f'hx-get="{row_url}" hx-trigger="every 2s" hx-swap="outerHTML"' in html

    row = client.get(row_url).content.decode()
    assert row.startswith(f'<tr id="export-job-{job.pk}" data-job="{job.pk}" data-status="queued" hx-get=')
    assert 'aria-valuenow="0"' in row

    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.RUNNING, rows_total=8, rows_done=2)
    row = client.get(row_url).content.decode()
    assert 'hx-trigger="every 2s"' in row
    assert 'aria-valuenow="25"' in row
    assert '<span style="width: 25%"></span>' in row
    assert "2 / 8 records · 25 %" in row

    ExportJob.objects.filter(pk=job.pk).update(status=ExportStatus.QUEUED, rows_total=None, rows_done=0)
    export_job_run(job_id=job.pk)
    row = client.get(row_url).content.decode()
    assert "hx-trigger" not in row
    assert 'aria-valuenow="100"' in row
    download = re.search(r'<a class="button secondary" href="([^"]+)" download>Download CSV</a>', row).group(
        1
    )
    assert download == f"/api/v1/exports/{job.pk}/download/"
    response = client.get(download)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert body(response).split("\r\n") == [
        REVENUE_SITES_HEADER,
        "2025-02,Org A,A3 Depot,EUR,1,5.000,2.00,0.38,2.38,0.00,0.00,2.00,1.00,1.00,0.2000",
        "2025-03,Org A,A3 Depot,EUR,1,7.000,3.00,0.57,3.57,-2.00,-0.38,1.00,,,",
        "2025-03,Org A,A3 Depot,JPY,1,3.700,1950,195,2145,0,0,1950,900,1050,243.2432",
        "",
    ]


def test_a_failed_job_shows_its_error_and_stops_polling(world, media):
    job = ExportJob.objects.create(
        requested_by=world.finance_a,
        kind="cdrs",
        filters={"from": "2025-03-01", "to": "2025-04-01", "organisation": None, "site": []},
        organisation_ids=[world.org_a.pk],
        status=ExportStatus.FAILED,
        error="Internal error; see the worker log.",
    )
    row = client_for(world.finance_a).get(f"/portal/exports/jobs/{job.pk}/row/").content.decode()
    assert "hx-trigger" not in row
    assert '<span class="badge badge-bad">Failed</span>' in row
    assert "Internal error; see the worker log." in row
    assert "Download CSV" not in row


def test_another_users_job_row_is_not_found(world, ledger, media):
    job = export_job_create(
        user=world.finance_a,
        kind="cdrs",
        filters=ExportFilters(period_from=date(2025, 3, 1), period_to=date(2025, 4, 1)),
    )
    for user in (world.operator_b, world.operator_a):
        response = client_for(user).get(f"/portal/exports/jobs/{job.pk}/row/")
        assert response.status_code == 404
        assert f"Export {job.pk} not found." in response.content.decode()
    assert f"export-job-{job.pk}" not in client_for(world.operator_b).get("/portal/exports/").content.decode()
    assert client_for(world.host_a1).get(f"/portal/exports/jobs/{job.pk}/row/").status_code == 403
    assert Client().get(f"/portal/exports/jobs/{job.pk}/row/").status_code == 302


def test_a_bad_job_request_is_explained_and_creates_nothing(world, ledger):
    client = client_for(world.finance_a)
    response = client.post(
        "/portal/exports/", {"kind": "cdrs", "period_from": "2025-04-01", "period_to": "2025-03-01"}
    )
    assert response.status_code == 400
    assert (
        "&#x27;from&#x27; must be before &#x27;to&#x27; (&#x27;to&#x27; is exclusive)."
        in response.content.decode()
    )
    response = client.post(
        "/portal/exports/",
        {
            "kind": "cdrs",
            "period_from": "2025-03-01",
            "period_to": "2025-04-01",
            "site": [str(world.site_b1.pk)],
        },
    )
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    assert ExportJob.objects.count() == 0


def test_the_exports_page_lists_no_jobs_yet(world):
    html = client_for(world.finance_a).get("/portal/exports/").content.decode()
    assert "No export jobs yet." in html


def test_names_guarded_against_spreadsheet_formulas_in_the_csv_show_as_they_are(world, ledger):
    ledger.site_utc.name = "=Depot"
    ledger.site_utc.save(update_fields=["name"])
    # The CDRs keep the site by reference: the export reads its current name.
    text = export_text(
        "revenue_sites", world.finance_a, period_from=date(2025, 3, 1), period_to=date(2025, 4, 1)
    )
    assert ",'=Depot," in text
    rows = revenue_site_rows(
        user=world.finance_a, filters=ExportFilters(period_from=date(2025, 3, 1), period_to=date(2025, 4, 1))
    )
    assert [row.site for row in rows] == ["=Depot", "=Depot", "A1"]  # sorted by name, as the CSV
