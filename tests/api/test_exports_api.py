"""Finance exports over the API: the streamed CSV, denials before the first byte, and export jobs from
creation to download."""

from unittest import mock

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from rest_framework.test import APIClient

from accounts.services import membership_set
from billing.enums import ExportKind
from billing.models import ExportJob
from billing.services.exports import csv as export_csv
from billing.services.exports import readers
from billing.tasks_exports import export_job_run
from tests.billing.test_exports import (
    expected_cdrs_march,
    expected_revenue_ports_march,
    expected_sessions_march,
    ledger_make,
)
from tests.factories import UserFactory
from tests.support import iso

MARCH = "from=2025-03-01&to=2025-04-01"


@pytest.fixture(autouse=True)
def chunks_on_the_test_thread(monkeypatch):
    """The stream reads each chunk in a worker thread with a connection of its own, which cannot see the
    test's uncommitted data: run the chunks on the test's thread instead (the real runner is exercised by
    the transactional test below)."""
    monkeypatch.setattr(export_csv, "_db_runner", lambda func: sync_to_async(func, thread_sensitive=True)())
    monkeypatch.setattr(export_csv, "_request_connection_release", _keep_the_test_connection)


async def _keep_the_test_connection() -> None:
    pass


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def ledger(world):
    return ledger_make(world)


@pytest.fixture
def finance_b(world):
    user = UserFactory(username="finance_b")
    membership_set(user=user, organisation=world.org_b, role="finance")
    return user


def body(response) -> bytes:
    """The whole streamed body, consumed the way Django's ASGI handler does (async iteration)."""

    async def collect() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(collect)()


def stream(api, user, kind: str, query: str = MARCH, **headers):
    return api(user).get(f"/api/v1/exports/{kind}.csv?{query}", **headers)


# --- streaming -----------------------------------------------------------------------------------


def test_cdrs_are_streamed_as_csv_by_an_async_iterator(api, world, ledger):
    response = stream(api, world.finance_a, "cdrs")
    assert response.status_code == 200
    # Async: Django's ASGI handler would read a synchronous iterator into a list before the first byte.
    assert (response.streaming, response.is_async) == (True, True)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="cdrs_2025-03-01_2025-04-01.csv"'
    assert body(response).decode() == expected_cdrs_march(ledger)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("sessions", expected_sessions_march), ("revenue_ports", lambda ledger: expected_revenue_ports_march())],
)
def test_every_kind_streams_its_file(api, world, ledger, kind, expected):
    response = stream(api, world.finance_a, kind)
    assert response.status_code == 200
    assert body(response).decode() == expected(ledger)


def test_filters_by_organisation_and_repeated_sites(api, world, ledger, finance_b):
    query = f"{MARCH}&organisation={world.org_a.pk}&site={ledger.site_utc.pk}&site={world.site_a2.pk}"
    text = body(stream(api, world.superuser, "revenue_ports", query)).decode()
    assert text.splitlines()[1:] == expected_revenue_ports_march().splitlines()[2:]


def test_datetimes_in_the_query_are_instants(api, world, ledger):
    query = "from=2025-03-30T02:30:00%2B01:00&to=2025-03-30T01:30:01Z"
    response = stream(api, world.finance_a, "cdrs", query)
    assert response["Content-Disposition"] == (
        'attachment; filename="cdrs_20250330T013000Z_20250330T013001Z.csv"'
    )
    rows = body(response).decode().splitlines()
    assert [row.split(",")[:2] for row in rows[1:]] == [["cdr", str(ledger.cdrs["cdr1"].pk)]]


@pytest.mark.django_db(transaction=True)
def test_the_real_worker_thread_runner_streams_committed_data(api, world, monkeypatch):
    """Each chunk on a pooled connection of a worker thread, given back after the chunk."""
    monkeypatch.setattr(export_csv, "_db_runner", export_csv._in_worker_thread)
    monkeypatch.setattr(export_csv, "_request_connection_release", export_csv._release_request_connection)
    ledger = ledger_make(world)
    monkeypatch.setattr(readers, "CHUNK_ROWS", 2)
    response = stream(api, world.finance_a, "cdrs")
    assert body(response).decode() == expected_cdrs_march(ledger)


# --- denials -------------------------------------------------------------------------------------


def test_unauthenticated_requests_are_refused(world):
    assert APIClient().get(f"/api/v1/exports/cdrs.csv?{MARCH}").status_code == 401
    assert APIClient().post("/api/v1/exports/", {"kind": "cdrs"}, format="json").status_code == 401


def test_a_site_host_may_not_export(api, world, ledger):
    nothing = {"detail": "Your role may not export finance data."}
    for query, answer in [
        (MARCH, nothing),
        (f"{MARCH}&site={world.site_a1.pk}", nothing),
        (
            f"{MARCH}&organisation={world.org_a.pk}",
            {"detail": f"You may not export organisation {world.org_a.pk}."},
        ),
    ]:
        response = stream(api, world.host_a1, "cdrs", query)
        assert (response.status_code, response.json()) == (403, answer)


@pytest.mark.parametrize("role", ["operator_staff", "support"])
def test_roles_without_the_export_right_get_403(api, world, role):
    user = UserFactory(username=role)
    membership_set(user=user, organisation=world.org_a, role=role)
    response = stream(api, user, "sessions")
    assert (response.status_code, response.json()) == (
        403,
        {"detail": "Your role may not export finance data."},
    )


def test_finance_of_org_b_gets_404_for_org_a_and_never_its_rows(api, world, ledger, finance_b):
    response = stream(api, finance_b, "cdrs", f"{MARCH}&organisation={world.org_a.pk}")
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"Organisation {world.org_a.pk} not found."},
    )
    response = stream(api, finance_b, "cdrs", f"{MARCH}&site={world.site_a1.pk}")
    assert (response.status_code, response.json()) == (404, {"detail": f"Site {world.site_a1.pk} not found."})
    for kind in ExportKind.values:
        text = body(stream(api, finance_b, kind)).decode()
        assert "Org A" not in text
        assert "Org B" in text
    response = api(finance_b).post(
        "/api/v1/exports/",
        {"kind": "cdrs", "from": "2025-03-01", "to": "2025-04-01", "site": [world.site_a1.pk]},
        format="json",
    )
    assert (response.status_code, response.json()) == (404, {"detail": f"Site {world.site_a1.pk} not found."})
    assert ExportJob.objects.count() == 0


def test_refused_job_requests_create_nothing(api, world):
    for user, payload, expected in [
        (world.host_a1, {}, 403),
        (world.operator_b, {"organisation": world.org_a.pk}, 404),
        (world.finance_a, {"to": "2025-02-01"}, 400),
    ]:
        response = api(user).post(
            "/api/v1/exports/",
            {"kind": "cdrs", "from": "2025-03-01", "to": "2025-04-01", **payload},
            format="json",
        )
        assert response.status_code == expected, response.content
    assert ExportJob.objects.count() == 0


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "answer"),
    [
        (
            "cdrs.csv?from=2025-02-30&to=2025-04-01",
            400,
            {"from": ["'2025-02-30' is not a valid date or datetime: day is out of range for month."]},
        ),
        (
            "cdrs.csv?from=yesterday&to=2025-04-01",
            400,
            {"from": ["Expected a date (YYYY-MM-DD) or a datetime with a time zone offset."]},
        ),
        (
            "cdrs.csv?from=2025-03-01T00:00:00&to=2025-04-01T00:00:00Z",
            400,
            {"from": ["A datetime needs a time zone offset (e.g. Z or +01:00); or give a date."]},
        ),
        (
            "cdrs.csv?from=2025-04-01&to=2025-04-01",
            400,
            {"detail": "'from' must be before 'to' ('to' is exclusive)."},
        ),
        (
            "cdrs.csv?from=2025-03-01&to=2025-04-01T00:00:00Z",
            400,
            {"detail": "Give 'from' and 'to' both as dates or both as datetimes."},
        ),
        (
            "sessions.csv?from=2024-01-01&to=2025-02-05",
            400,
            {
                "detail": "The period spans more than 400 days: create an export job (POST /api/v1/exports/) "
                "for longer periods."
            },
        ),
        ("cdrs.csv?from=2025-03-01", 400, {"to": ["This field is required."]}),
        (
            "cdrs.csv?from=2025-03-01&to=2025-04-01&form=x",
            400,
            {"form": ["Unknown or read-only field; it cannot be set."]},
        ),
        (
            "invoices.csv?from=2025-03-01&to=2025-04-01",
            404,
            {
                "detail": "Unknown export kind 'invoices'; one of sessions, cdrs, revenue_sites, revenue_ports."
            },
        ),
    ],
)
def test_bad_requests_are_explained_in_json_even_to_a_csv_client(api, world, path, status, answer):
    response = api(world.finance_a).get(f"/api/v1/exports/{path}", HTTP_ACCEPT="text/csv")
    assert (response.status_code, response["Content-Type"], response.json()) == (
        status,
        "application/json",
        answer,
    )


def test_a_job_takes_periods_longer_than_a_stream(api, world, media):
    with mock.patch("billing.tasks_exports.export_job_run.delay"):
        response = api(world.finance_a).post(
            "/api/v1/exports/", {"kind": "sessions", "from": "2020-01-01", "to": "2025-01-01"}, format="json"
        )
    assert response.status_code == 202, response.content
    response = api(world.finance_a).post(
        "/api/v1/exports/", {"kind": "invoices", "from": "2020-01-01", "to": "2025-01-01"}, format="json"
    )
    assert (response.status_code, response.json()) == (400, {"kind": ['"invoices" is not a valid choice.']})


# --- jobs ----------------------------------------------------------------------------------------


def create_job(api, user, django_capture_on_commit_callbacks, **payload):
    with (
        mock.patch("billing.tasks_exports.export_job_run.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = api(user).post(
            "/api/v1/exports/",
            {"kind": "cdrs", "from": "2025-03-01", "to": "2025-04-01", **payload},
            format="json",
        )
    assert response.status_code == 202, response.content
    delay.assert_called_once_with(response.json()["id"])
    return response.json()


def test_job_from_creation_to_download(api, world, ledger, media, django_capture_on_commit_callbacks):
    created = create_job(api, world.finance_a, django_capture_on_commit_callbacks)
    job = ExportJob.objects.get(pk=created["id"])
    assert created == {
        "id": job.pk,
        "kind": "cdrs",
        "filters": {"from": "2025-03-01", "to": "2025-04-01", "organisation": None, "site": []},
        "status": "queued",
        "rows_done": 0,
        "rows_total": None,
        "progress": 0.0,
        "download_url": None,
        "error": "",
        "attempts": 1,
        "created_at": iso(job.created_at),
        "started_at": None,
        "heartbeat_at": None,
        "finished_at": None,
    }
    queued = api(world.finance_a).get(f"/api/v1/exports/{job.pk}/download/")
    assert (queued.status_code, queued.json()) == (
        409,
        {"detail": f"Export {job.pk} is queued; its file can be downloaded once it is done."},
    )

    assert export_job_run(job.pk) == {"job": job.pk, "status": "done", "rows": 5}

    job.refresh_from_db()
    detail = api(world.finance_a).get(f"/api/v1/exports/{job.pk}/").json()
    assert detail == {
        **created,
        "status": "done",
        "rows_done": 5,
        "rows_total": 5,
        "progress": 100.0,
        "download_url": f"http://testserver/api/v1/exports/{job.pk}/download/",
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }
    listed = api(world.finance_a).get("/api/v1/exports/").json()
    assert (listed["count"], listed["results"]) == (1, [detail])

    download = api(world.finance_a).get(f"/api/v1/exports/{job.pk}/download/")
    assert (download.status_code, download.is_async) == (200, True)
    assert download["Content-Disposition"] == (
        f'attachment; filename="cdrs_2025-03-01_2025-04-01_job{job.pk}.csv"'
    )
    downloaded = body(download)
    assert download["Content-Length"] == str(len(downloaded))
    assert downloaded == body(stream(api, world.finance_a, "cdrs"))
    assert downloaded.decode() == expected_cdrs_march(ledger)


def test_jobs_are_private_to_their_requester(api, world, ledger, media, django_capture_on_commit_callbacks):
    created = create_job(api, world.finance_a, django_capture_on_commit_callbacks)
    export_job_run(created["id"])
    for path in (f"/api/v1/exports/{created['id']}/", f"/api/v1/exports/{created['id']}/download/"):
        response = api(world.operator_a).get(path)
        assert (response.status_code, response.json()) == (
            404,
            {"detail": f"Export {created['id']} not found."},
        )
    assert api(world.operator_a).get("/api/v1/exports/").json()["count"] == 0
    assert api(world.superuser).get(f"/api/v1/exports/{created['id']}/").json()["status"] == "done"
    assert body(api(world.superuser).get(f"/api/v1/exports/{created['id']}/download/")).decode() == (
        expected_cdrs_march(ledger)
    )


def test_the_file_goes_with_the_export_right(api, world, ledger, media, django_capture_on_commit_callbacks):
    created = create_job(api, world.finance_a, django_capture_on_commit_callbacks)
    export_job_run(created["id"])
    membership_set(user=world.finance_a, organisation=world.org_a, role="support")
    response = api(world.finance_a).get(f"/api/v1/exports/{created['id']}/download/")
    assert (response.status_code, response.json()) == (
        403,
        {"detail": f"You may no longer export the organisations of export {created['id']}."},
    )
