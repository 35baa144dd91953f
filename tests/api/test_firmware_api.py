"""Firmware files, firmware updates and campaigns, diagnostics/log uploads over the API: success, scope
and denials (operator of another organisation, site host of another site, finance user), with nothing
changed after a denied write. Commands are answered by the fake charger of tests/commands.py, and every
request it received is checked against the OCPP schema of the station's version."""

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cpms.ocpp_wire import schemas
from stations.models import (
    ChargingStation,
    Command,
    CommandJob,
    CommandJobTarget,
    DiagnosticsUpload,
    FirmwareFile,
    FirmwareUpdate,
)
from stations.services.firmware import firmware_file_create
from stations.tasks_firmware import firmware_campaign_run
from tests.commands import TIMEOUT, CallError
from tests.support import iso

IMAGE = b"\x7fELF-firmware-image" * 8
SIGNATURE = "c2lnbmF0dXJl"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PROTOCOL = {"A1-CP1": "ocpp1.6", "A2-CP1": "ocpp2.0.1", "B1-CP1": "ocpp1.6"}


@pytest.fixture
def online(world, settings, tmp_path):
    """Every standing station connected: A1-CP1 and B1-CP1 speak 1.6, A2-CP1 2.0.1. Files go to tmp_path."""
    settings.MEDIA_ROOT = tmp_path
    settings.CPMS_PUBLIC_URL = "https://cpms.example"
    for identity, protocol in PROTOCOL.items():
        ChargingStation.objects.filter(identity=identity).update(is_connected=True, protocol=protocol)
    return world


def make_firmware(world, org=None, *, signed=False) -> FirmwareFile:
    return firmware_file_create(
        actor=world.superuser,
        organisation_id=(org or world.org_a).pk,
        name="Wallbox",
        version="1.2.3",
        content=ContentFile(IMAGE, name="fw-1.2.3.bin"),
        signature=SIGNATURE if signed else "",
        signing_certificate=CERTIFICATE if signed else "",
    )


@pytest.fixture
def firmware(online) -> FirmwareFile:
    return make_firmware(online)


def assert_sent_requests_match_the_schema(fake_charger) -> None:
    assert fake_charger.received
    for identity, action, request in fake_charger.received:
        version = PROTOCOL[identity].removeprefix("ocpp")
        schemas.validate(version, schemas.request_schema(version, action), request)


def firmware_json(firmware) -> dict:
    return {
        "id": firmware.pk,
        "organisation": firmware.organisation_id,
        "name": firmware.name,
        "version": firmware.version,
        "size_bytes": len(IMAGE),
        "sha256": hashlib.sha256(IMAGE).hexdigest(),
        "signed": bool(firmware.signature and firmware.signing_certificate),
        "download_url": f"https://cpms.example/firmware/{firmware.download_token}/"
        f"{firmware.file.name.rsplit('/', 1)[-1]}",
        "uploaded_by": firmware.uploaded_by.username,
        "created_at": iso(firmware.created_at),
    }


# --- firmware files ---------------------------------------------------------------------------------


def test_operator_uploads_a_firmware_file(api, online, tmp_path):
    response = api(online.operator_a).post(
        "/api/v1/firmware-files/",
        {
            "organisation": online.org_a.pk,
            "name": "Wallbox",
            "version": "2.0",
            "file": SimpleUploadedFile("wallbox-2.0.bin", IMAGE),
            "signature": SIGNATURE,
            "signing_certificate": CERTIFICATE,
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    firmware = FirmwareFile.objects.get()
    assert response.json() == firmware_json(firmware)
    assert response.json()["signed"] is True
    assert (firmware.signature, firmware.signing_certificate, firmware.uploaded_by) == (
        SIGNATURE,
        CERTIFICATE,
        online.operator_a,
    )
    assert (tmp_path / "firmware" / "wallbox-2.0.bin").read_bytes() == IMAGE


@pytest.mark.parametrize(
    "actor, code, detail",
    [
        ("finance_a", 403, "You may not manage organisation {org}."),
        ("host_a1", 403, "You may not manage organisation {org}."),
        ("operator_b", 400, "Organisation {org} not found."),
    ],
)
def test_firmware_upload_denied_changes_nothing(api, online, tmp_path, actor, code, detail):
    response = api(getattr(online, actor)).post(
        "/api/v1/firmware-files/",
        {
            "organisation": online.org_a.pk,
            "name": "Wallbox",
            "version": "2.0",
            "file": SimpleUploadedFile("wallbox-2.0.bin", IMAGE),
        },
        format="multipart",
    )
    assert (response.status_code, response.json()) == (code, {"detail": detail.format(org=online.org_a.pk)})
    assert not FirmwareFile.objects.exists()
    assert not (tmp_path / "firmware").exists()


def test_firmware_upload_refuses_unknown_fields_and_missing_files(api, online):
    response = api(online.operator_a).post(
        "/api/v1/firmware-files/",
        {"organisation": online.org_a.pk, "name": "W", "version": "1", "sha256": "0" * 64},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json() == {
        "sha256": ["Unknown or read-only field; it cannot be set."],
    }
    response = api(online.operator_a).post(
        "/api/v1/firmware-files/",
        {"organisation": online.org_a.pk, "name": "W", "version": "1"},
        format="multipart",
    )
    assert (response.status_code, list(response.json())) == (400, ["file"])
    assert not FirmwareFile.objects.exists()


@pytest.mark.parametrize(
    "actor, visible",
    [
        ("operator_a", ["A"]),
        ("finance_a", ["A"]),
        ("host_a1", ["A"]),
        ("operator_b", ["B"]),
        ("superuser", ["B", "A"]),
    ],
)
def test_firmware_files_are_listed_to_members_of_their_organisation(api, online, actor, visible):
    files = {"A": make_firmware(online), "B": make_firmware(online, online.org_b)}
    response = api(getattr(online, actor)).get("/api/v1/firmware-files/")
    assert response.status_code == 200
    assert response.json()["results"] == [firmware_json(files[key]) for key in visible]
    for key, firmware in files.items():
        detail = api(getattr(online, actor)).get(f"/api/v1/firmware-files/{firmware.pk}/")
        assert detail.status_code == (200 if key in visible else 404)


# --- one station's firmware update ------------------------------------------------------------------


def update_url(identity: str) -> str:
    return f"/api/v1/stations/{identity}/firmware-update/"


@pytest.mark.parametrize("actor", ["operator_a", "host_a1"])
def test_firmware_update_of_a_16_station(api, online, firmware, fake_charger, actor):
    fake_charger.answers["UpdateFirmware"] = {}
    response = api(getattr(online, actor)).post(
        update_url("A1-CP1"),
        {"firmware_id": firmware.pk, "retrieve_at": "2025-03-01T12:00:00Z"},
        format="json",
    )
    assert response.status_code == 200, response.content
    update = FirmwareUpdate.objects.get()
    command = Command.objects.get()
    body = response.json()
    assert body["firmware_update"] | {"command": None} == {
        "id": update.pk,
        "station": "A1-CP1",
        "firmware": firmware.pk,
        "firmware_version": "1.2.3",
        "job": None,
        "request_id": None,
        "status": "Accepted",
        "command": None,
        "created_at": iso(update.created_at),
        "updated_at": iso(update.updated_at),
    }
    assert body["command"] == body["firmware_update"]["command"]
    assert (body["command"]["id"], body["command"]["status"], body["command"]["requested_by"]) == (
        command.pk,
        "answered",
        actor,
    )
    assert "detail" not in body
    assert fake_charger.received == [
        (
            "A1-CP1",
            "UpdateFirmware",
            {
                "location": f"https://cpms.example/firmware/{firmware.download_token}/fw-1.2.3.bin",
                "retrieveDate": "2025-03-01T12:00:00.000Z",
            },
        )
    ]
    assert_sent_requests_match_the_schema(fake_charger)


def test_signed_firmware_update_of_a_201_station(api, online, fake_charger):
    firmware = make_firmware(online, signed=True)
    response = api(online.operator_a).post(update_url("A2-CP1"), {"firmware_id": firmware.pk}, format="json")
    assert response.status_code == 200, response.content
    update = FirmwareUpdate.objects.get()
    [(identity, action, request)] = fake_charger.received
    assert (identity, action, request["requestId"], response.json()["firmware_update"]["request_id"]) == (
        "A2-CP1",
        "UpdateFirmware",
        update.pk,
        update.pk,
    )
    assert (request["firmware"]["signature"], request["firmware"]["signingCertificate"]) == (
        SIGNATURE,
        CERTIFICATE,
    )
    assert_sent_requests_match_the_schema(fake_charger)


def test_signed_firmware_update_of_a_16_station_uses_signed_update_firmware(api, online, fake_charger):
    firmware = make_firmware(online, signed=True)
    response = api(online.operator_a).post(update_url("A1-CP1"), {"firmware_id": firmware.pk}, format="json")
    assert response.status_code == 200, response.content
    assert [action for _, action, _ in fake_charger.received] == ["SignedUpdateFirmware"]
    assert_sent_requests_match_the_schema(fake_charger)


@pytest.mark.parametrize(
    "answer, code, detail",
    [
        (CallError("InternalError", "flash busy"), 502, "flash busy"),
        (TIMEOUT, 504, "no answer"),
        ("offline", 409, "Station A1-CP1 is not connected."),
    ],
)
def test_firmware_update_outcomes_map_like_the_generic_call(
    api, online, firmware, fake_charger, answer, code, detail
):
    if answer == "offline":
        ChargingStation.objects.filter(identity="A1-CP1").update(is_connected=False)
    else:
        fake_charger.answers["UpdateFirmware"] = answer
    response = api(online.operator_a).post(update_url("A1-CP1"), {"firmware_id": firmware.pk}, format="json")
    assert response.status_code == code
    assert response.json()["detail"] == detail
    assert response.json()["firmware_update"]["id"] == FirmwareUpdate.objects.get().pk


@pytest.mark.parametrize(
    "actor, identity, code",
    [
        ("operator_b", "A1-CP1", 404),
        ("host_a1", "A2-CP1", 404),
        ("finance_a", "A1-CP1", 403),
    ],
)
def test_firmware_update_denied_changes_nothing(api, online, firmware, fake_charger, actor, identity, code):
    response = api(getattr(online, actor)).post(
        update_url(identity), {"firmware_id": firmware.pk}, format="json"
    )
    assert response.status_code == code
    assert not FirmwareUpdate.objects.exists()
    assert not Command.objects.exists()
    assert fake_charger.received == []


def test_firmware_of_another_organisation_is_not_found(api, online, fake_charger):
    firmware_b = make_firmware(online, online.org_b)
    response = api(online.superuser).post(update_url("A1-CP1"), {"firmware_id": firmware_b.pk}, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"detail": f"Firmware file {firmware_b.pk} not found."},
    )
    assert not FirmwareUpdate.objects.exists()
    assert fake_charger.received == []


def test_firmware_updates_are_listed_per_station_in_scope(api, online, firmware, fake_charger):
    for identity in ("A1-CP1", "A2-CP1"):
        posted = api(online.operator_a).post(
            update_url(identity), {"firmware_id": firmware.pk}, format="json"
        )
        assert posted.status_code == 200
    a1 = FirmwareUpdate.objects.get(station__identity="A1-CP1")
    for actor in ("operator_a", "finance_a", "host_a1"):
        response = api(getattr(online, actor)).get("/api/v1/stations/A1-CP1/firmware-updates/")
        assert response.status_code == 200
        assert [row["id"] for row in response.json()["results"]] == [a1.pk]
    assert api(online.operator_b).get("/api/v1/stations/A1-CP1/firmware-updates/").status_code == 404
    assert api(online.host_a1).get("/api/v1/stations/A2-CP1/firmware-updates/").status_code == 404


# --- campaigns --------------------------------------------------------------------------------------


def test_campaign_is_created_queued_run_and_reports_progress(
    api, online, firmware, fake_charger, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr(firmware_campaign_run, "delay", queued.append)
    fake_charger.answers["UpdateFirmware"] = {"status": "Accepted"}
    with django_capture_on_commit_callbacks(execute=True):
        response = api(online.operator_a).post(
            "/api/v1/firmware-campaigns/",
            {
                "firmware_id": firmware.pk,
                "stations": ["A1-CP1", "A2-CP1"],
                "retrieve_at": "2025-03-01T12:00:00Z",
            },
            format="json",
        )
    assert response.status_code == 202, response.content
    job = CommandJob.objects.get()
    assert queued == [job.pk]
    body = response.json()
    assert (body["id"], body["status"], body["total"], body["progress"], body["firmware"]) == (
        job.pk,
        "queued",
        2,
        0.0,
        firmware.pk,
    )
    assert body["targets"] == [
        {
            "station": "A1-CP1",
            "status": "pending",
            "detail": "",
            "finished_at": None,
            "firmware_status": None,
        },
        {
            "station": "A2-CP1",
            "status": "pending",
            "detail": "",
            "finished_at": None,
            "firmware_status": None,
        },
    ]

    ChargingStation.objects.filter(identity="A2-CP1").update(is_connected=False)
    fake_charger.answers["UpdateFirmware"] = {}  # A1-CP1 speaks 1.6: an empty answer
    assert firmware_campaign_run(job.pk) == {"job": job.pk, "status": "done", "done": 1, "failed": 1}

    detail = api(online.operator_a).get(f"/api/v1/firmware-campaigns/{job.pk}/").json()
    assert (detail["status"], detail["done_count"], detail["failed_count"], detail["progress"]) == (
        "done",
        1,
        1,
        1.0,
    )
    assert [(t["station"], t["status"], t["detail"], t["firmware_status"]) for t in detail["targets"]] == [
        ("A1-CP1", "ok", "UpdateFirmware: Accepted", "Accepted"),
        ("A2-CP1", "failed", "UpdateFirmware: Station A2-CP1 is not connected.", ""),
    ]
    assert_sent_requests_match_the_schema(fake_charger)


def test_campaign_over_a_site(api, online, firmware, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        response = api(online.operator_a).post(
            "/api/v1/firmware-campaigns/",
            {"firmware_id": firmware.pk, "site_id": online.site_a2.pk},
            format="json",
        )
    assert response.status_code == 202, response.content
    assert [t["station"] for t in response.json()["targets"]] == ["A2-CP1"]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            {"stations": ["A1-CP1"], "site_id": 1},
            {"non_field_errors": ["Give either 'stations' (identities) or 'site_id'."]},
        ),
        ({}, {"non_field_errors": ["Give either 'stations' (identities) or 'site_id'."]}),
        ({"stations": []}, {"stations": ["Ensure this field has at least 1 elements."]}),
        ({"stations": ["A1-CP1", "B1-CP1"]}, {"detail": "Not stations you may command here: B1-CP1."}),
        ({"stations": ["A1-CP1"], "total": 9}, {"total": ["Unknown or read-only field; it cannot be set."]}),
    ],
)
def test_campaign_input_is_checked(api, online, firmware, body, message):
    response = api(online.operator_a).post(
        "/api/v1/firmware-campaigns/", {"firmware_id": firmware.pk, **body}, format="json"
    )
    assert (response.status_code, response.json()) == (400, message)
    assert not CommandJob.objects.exists()


@pytest.mark.parametrize(
    "actor, code, detail",
    [
        ("operator_b", 400, "Firmware file {fw} not found."),
        ("host_a1", 403, "You may not run firmware campaigns in organisation {org}."),
        ("finance_a", 403, "You may not run firmware campaigns in organisation {org}."),
    ],
)
def test_campaign_creation_denied_changes_nothing(
    api, online, firmware, django_capture_on_commit_callbacks, actor, code, detail
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api(getattr(online, actor)).post(
            "/api/v1/firmware-campaigns/", {"firmware_id": firmware.pk, "stations": ["A1-CP1"]}, format="json"
        )
    assert (response.status_code, response.json()) == (
        code,
        {"detail": detail.format(fw=firmware.pk, org=online.org_a.pk)},
    )
    assert not CommandJob.objects.exists()
    assert not CommandJobTarget.objects.exists()
    assert callbacks == []


@pytest.mark.parametrize(
    "actor, sees",
    [
        ("operator_a", True),
        ("finance_a", True),
        ("superuser", True),
        ("operator_b", False),
        ("host_a1", False),
    ],
)
def test_campaigns_are_seen_by_organisation_wide_roles(
    api, online, firmware, django_capture_on_commit_callbacks, actor, sees
):
    with django_capture_on_commit_callbacks():
        created = api(online.operator_a).post(
            "/api/v1/firmware-campaigns/", {"firmware_id": firmware.pk, "stations": ["A1-CP1"]}, format="json"
        )
    job_id = created.json()["id"]
    listed = api(getattr(online, actor)).get("/api/v1/firmware-campaigns/").json()["results"]
    assert [row["id"] for row in listed] == ([job_id] if sees else [])
    assert api(getattr(online, actor)).get(f"/api/v1/firmware-campaigns/{job_id}/").status_code == (
        200 if sees else 404
    )


# --- diagnostics and log uploads --------------------------------------------------------------------


def diagnostics_url(identity: str) -> str:
    return f"/api/v1/stations/{identity}/diagnostics/"


def test_diagnostics_of_a_16_station_then_the_upload_and_its_download(
    api, client, online, fake_charger, tmp_path
):
    fake_charger.answers["GetDiagnostics"] = {"fileName": "diag.zip"}
    response = api(online.operator_a).post(
        diagnostics_url("A1-CP1"),
        {"kind": "diagnostics", "start": "2025-03-01T10:00:00Z", "stop": "2025-03-01T12:00:00Z"},
        format="json",
    )
    assert response.status_code == 200, response.content
    upload = DiagnosticsUpload.objects.get()
    assert fake_charger.received == [
        (
            "A1-CP1",
            "GetDiagnostics",
            {
                "location": f"https://cpms.example/ocpp-upload/{upload.upload_token}/",
                "startTime": "2025-03-01T10:00:00.000Z",
                "stopTime": "2025-03-01T12:00:00.000Z",
            },
        )
    ]
    assert_sent_requests_match_the_schema(fake_charger)
    body = response.json()
    assert body["upload"] | {"command": None} == {
        "id": upload.pk,
        "station": "A1-CP1",
        "kind": "diagnostics",
        "status": "Accepted",
        "request_id": None,
        "file_name": "",
        "size_bytes": 0,
        "uploaded_at": None,
        "file_url": None,
        "requested_by": "operator_a",
        "command": None,
        "created_at": iso(upload.created_at),
    }
    assert body["command"]["response"] == {"fileName": "diag.zip"}
    assert api(online.operator_a).get(f"/api/v1/uploads/{upload.pk}/file/").status_code == 404  # not yet

    put = client.put(
        f"/ocpp-upload/{upload.upload_token}/diag.zip", b"PK-DIAG", content_type="application/zip"
    )
    assert put.status_code == 201

    listed = api(online.host_a1).get("/api/v1/stations/A1-CP1/uploads/").json()["results"]
    assert [(row["id"], row["file_name"], row["size_bytes"]) for row in listed] == [
        (upload.pk, "diag.zip", 7)
    ]
    assert listed[0]["file_url"] == f"http://testserver/api/v1/uploads/{upload.pk}/file/"
    for actor in ("operator_a", "host_a1", "finance_a"):
        download = api(getattr(online, actor)).get(f"/api/v1/uploads/{upload.pk}/file/")
        assert download.status_code == 200
        assert b"".join(download.streaming_content) == b"PK-DIAG"
        assert download["Content-Disposition"] == 'attachment; filename="diag.zip"'
    asked = api(online.operator_a).get(
        f"/api/v1/uploads/{upload.pk}/file/", HTTP_ACCEPT="application/octet-stream"
    )
    assert asked.status_code == 200
    assert api(online.operator_b).get(f"/api/v1/uploads/{upload.pk}/file/").status_code == 404
    assert api(online.operator_b).get("/api/v1/stations/A1-CP1/uploads/").status_code == 404


@pytest.mark.parametrize("identity", ["A1-CP1", "A2-CP1"])
def test_log_request_per_version(api, online, fake_charger, identity):
    response = api(online.operator_a).post(
        diagnostics_url(identity),
        {"kind": "log", "log_type": "SecurityLog", "start": "2025-03-01T10:00:00Z"},
        format="json",
    )
    assert response.status_code == 200, response.content
    upload = DiagnosticsUpload.objects.get()
    assert fake_charger.received == [
        (
            identity,
            "GetLog",
            {
                "logType": "SecurityLog",
                "requestId": upload.pk,
                "log": {
                    "remoteLocation": f"https://cpms.example/ocpp-upload/{upload.upload_token}/",
                    "oldestTimestamp": "2025-03-01T10:00:00.000Z",
                },
            },
        )
    ]
    assert (upload.kind, upload.request_id, response.json()["upload"]["request_id"]) == (
        "log",
        upload.pk,
        upload.pk,
    )
    assert_sent_requests_match_the_schema(fake_charger)


@pytest.mark.parametrize(
    "identity, body, detail",
    [
        (
            "A2-CP1",
            {"kind": "diagnostics"},
            "GetDiagnostics is an OCPP 1.6 message; ask an OCPP 2.0.1 station for kind 'log'.",
        ),
        (
            "A1-CP1",
            {"kind": "diagnostics", "log_type": "SecurityLog"},
            "log_type is for kind 'log' (GetLog).",
        ),
        (
            "A1-CP1",
            {"kind": "log", "start": "2025-03-01T12:00:00Z", "stop": "2025-03-01T10:00:00Z"},
            "start must not be after stop.",
        ),
    ],
)
def test_diagnostics_requests_the_version_cannot_carry_are_400_and_not_recorded(
    api, online, fake_charger, identity, body, detail
):
    response = api(online.operator_a).post(diagnostics_url(identity), body, format="json")
    assert (response.status_code, response.json()) == (400, {"detail": detail})
    assert not DiagnosticsUpload.objects.exists()
    assert not Command.objects.exists()
    assert fake_charger.received == []


@pytest.mark.parametrize(
    "actor, identity, code",
    [("operator_b", "A1-CP1", 404), ("host_a1", "A2-CP1", 404), ("finance_a", "A1-CP1", 403)],
)
def test_diagnostics_request_denied_changes_nothing(api, online, fake_charger, actor, identity, code):
    response = api(getattr(online, actor)).post(diagnostics_url(identity), {"kind": "log"}, format="json")
    assert response.status_code == code
    assert not DiagnosticsUpload.objects.exists()
    assert not Command.objects.exists()
    assert fake_charger.received == []


def test_upload_lists_are_scoped_to_the_station(api, online, fake_charger):
    for identity in ("A1-CP1", "A2-CP1", "B1-CP1"):
        assert (
            api(online.superuser).post(diagnostics_url(identity), {"kind": "log"}, format="json").status_code
            == 200
        )
    uploads = {u.station.identity: u.pk for u in DiagnosticsUpload.objects.select_related("station")}
    assert [
        r["id"] for r in api(online.host_a1).get("/api/v1/stations/A1-CP1/uploads/").json()["results"]
    ] == [uploads["A1-CP1"]]
    assert api(online.host_a1).get("/api/v1/stations/A2-CP1/uploads/").status_code == 404
    assert api(online.operator_a).get("/api/v1/stations/B1-CP1/uploads/").status_code == 404
    assert api(online.host_a1).get(f"/api/v1/uploads/{uploads['A2-CP1']}/file/").status_code == 404


def test_requests_sent_carry_the_public_url(api, online, fake_charger, settings):
    settings.CPMS_PUBLIC_URL = "https://chargers.example.net/cpms"
    assert (
        api(online.operator_a).post(diagnostics_url("A2-CP1"), {"kind": "log"}, format="json").status_code
        == 200
    )
    [(_, _, request)] = fake_charger.received
    token = DiagnosticsUpload.objects.get().upload_token
    assert request["log"]["remoteLocation"] == f"https://chargers.example.net/cpms/ocpp-upload/{token}/"


def test_lists_cost_the_same_queries_for_one_row_or_many(api, online, firmware, fake_charger):
    client = api(online.operator_a)

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    def add_one() -> None:
        client.post(update_url("A1-CP1"), {"firmware_id": firmware.pk}, format="json")
        client.post(diagnostics_url("A1-CP1"), {"kind": "log"}, format="json")

    add_one()
    one = (queries("/api/v1/stations/A1-CP1/firmware-updates/"), queries("/api/v1/stations/A1-CP1/uploads/"))
    add_one()
    add_one()
    many = (queries("/api/v1/stations/A1-CP1/firmware-updates/"), queries("/api/v1/stations/A1-CP1/uploads/"))
    assert many == one
