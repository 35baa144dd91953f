"""Firmware files, updates and campaigns, diagnostics/log uploads: services, request builders, status
notifications, the campaign task, the charger-facing download and upload endpoints, and the admin.

Commands are answered by the fake charger of tests/commands.py; the API is in tests/api/test_firmware_api.py.
"""

import hashlib
from datetime import UTC, datetime

import pytest
from celery.exceptions import Retry
from django.contrib import admin
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import include, path, reverse
from django.utils import timezone

import stations.admin_firmware  # noqa: F401  (registers the admin, as stations/admin.py does)
from cpms.errors import PermissionDenied, ValidationFailed
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from cpms.ocpp_wire import schemas
from cpms.ocpp_wire.firmware import diagnostics_request, firmware_update_request
from stations.enums import CommandStatus, StationEventKind
from stations.models import (
    ChargingStation,
    Command,
    CommandJob,
    CommandJobTarget,
    DiagnosticsUpload,
    FirmwareFile,
    FirmwareUpdate,
    StationEvent,
)
from stations.services.firmware import (
    diagnostics_upload_request,
    firmware_file_create,
    firmware_update_start,
    stored_name,
)
from stations.services.firmware_campaigns import firmware_campaign_create, firmware_campaign_run
from stations.services.ocpp import station_event_record
from stations.tasks_firmware import firmware_campaign_run as firmware_campaign_task
from tests.commands import TIMEOUT, CallError
from tests.factories import ChargingStationFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

IMAGE = b"FIRMWARE-IMAGE-1.2.3" * 10
SIGNATURE = "c2lnbmF0dXJl"
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
WHEN = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.CPMS_PUBLIC_URL = "https://cpms.example"
    return tmp_path


@pytest.fixture
def online(world):
    """A1-CP1 speaks 1.6 and A2-CP1 2.0.1, both connected."""
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(is_connected=True, protocol="ocpp1.6")
    ChargingStation.objects.filter(pk=world.station_a2.pk).update(is_connected=True, protocol="ocpp2.0.1")
    world.station_a1.refresh_from_db()
    world.station_a2.refresh_from_db()
    return world


def make_firmware(world, *, signed=False, name="fw-1.2.3.bin", org=None) -> FirmwareFile:
    return firmware_file_create(
        actor=world.superuser,
        organisation_id=(org or world.org_a).pk,
        name="Wallbox",
        version="1.2.3",
        content=ContentFile(IMAGE, name=name),
        signature=SIGNATURE if signed else "",
        signing_certificate=CERTIFICATE if signed else "",
    )


@pytest.fixture
def firmware(world, media) -> FirmwareFile:
    return make_firmware(world)


@pytest.fixture
def signed_firmware(world, media) -> FirmwareFile:
    return make_firmware(world, signed=True, name="fw-signed.bin")


def location(firmware: FirmwareFile) -> str:
    return f"https://cpms.example/firmware/{firmware.download_token}/{firmware.file.name.split('/')[-1]}"


# --- firmware files ---------------------------------------------------------------------------------


def test_firmware_file_is_stored_with_size_hash_and_a_random_token(world, media):
    firmware = firmware_file_create(
        actor=world.operator_a,
        organisation_id=world.org_a.pk,
        name=" Wallbox ",
        version="1.2.3",
        content=ContentFile(IMAGE, name="../../fw 1.2.3.bin"),
    )
    firmware.refresh_from_db()
    assert (firmware.name, firmware.version, firmware.organisation, firmware.uploaded_by) == (
        "Wallbox",
        "1.2.3",
        world.org_a,
        world.operator_a,
    )
    assert (firmware.size_bytes, firmware.sha256) == (len(IMAGE), hashlib.sha256(IMAGE).hexdigest())
    assert firmware.file.name == "firmware/fw_1.2.3.bin"
    assert (media / "firmware" / "fw_1.2.3.bin").read_bytes() == IMAGE
    assert len(firmware.download_token) == 43
    other = make_firmware(world)
    assert other.download_token != firmware.download_token


@pytest.mark.parametrize(
    "actor, error, message",
    [
        ("finance_a", PermissionDenied, "You may not manage organisation {org}."),
        ("host_a1", PermissionDenied, "You may not manage organisation {org}."),
        ("operator_b", ValidationFailed, "Organisation {org} not found."),
    ],
)
def test_firmware_file_upload_needs_manage_on_the_organisation(world, media, actor, error, message):
    with pytest.raises(error) as raised:
        firmware_file_create(
            actor=getattr(world, actor),
            organisation_id=world.org_a.pk,
            name="Wallbox",
            version="1",
            content=ContentFile(IMAGE, name="fw.bin"),
        )
    assert raised.value.message == message.format(org=world.org_a.pk)
    assert not FirmwareFile.objects.exists()
    assert not (media / "firmware").exists()


def test_empty_firmware_file_is_refused(world, media):
    with pytest.raises(ValidationFailed, match="empty"):
        firmware_file_create(
            actor=world.operator_a,
            organisation_id=world.org_a.pk,
            name="Wallbox",
            version="1",
            content=ContentFile(b"", name="fw.bin"),
        )
    assert not FirmwareFile.objects.exists()


@pytest.mark.parametrize(
    "sent, stored",
    [
        ("diag-2025.tar.gz", "diag-2025.tar.gz"),
        ("../../etc/passwd", "passwd"),
        ("C:\\logs\\..\\diag.zip", "diag.zip"),
        ("..", "fallback.bin"),
        ("", "fallback.bin"),
        ("/", "fallback.bin"),
        (".htaccess", "htaccess"),
        ("my log's (1).txt", "my_logs_1.txt"),
        ("x" * 100 + ".tar.gz", "x" * 57 + ".gz"),
    ],
)
def test_stored_names_keep_the_last_segment_and_safe_characters_only(sent, stored):
    assert stored_name(sent, fallback="fallback.bin") == stored


# --- request builders -------------------------------------------------------------------------------

BUILT = [
    (
        "ocpp1.6",
        False,
        "UpdateFirmware",
        {"location": "https://cpms.example/fw.bin", "retrieveDate": "2025-03-01T12:00:00.000Z"},
    ),
    (
        "ocpp1.6",
        True,
        "SignedUpdateFirmware",
        {
            "requestId": 7,
            "firmware": {
                "location": "https://cpms.example/fw.bin",
                "retrieveDateTime": "2025-03-01T12:00:00.000Z",
                "signingCertificate": CERTIFICATE,
                "signature": SIGNATURE,
            },
        },
    ),
    (
        "ocpp2.0.1",
        False,
        "UpdateFirmware",
        {
            "requestId": 7,
            "firmware": {
                "location": "https://cpms.example/fw.bin",
                "retrieveDateTime": "2025-03-01T12:00:00.000Z",
            },
        },
    ),
    (
        "ocpp2.0.1",
        True,
        "UpdateFirmware",
        {
            "requestId": 7,
            "firmware": {
                "location": "https://cpms.example/fw.bin",
                "retrieveDateTime": "2025-03-01T12:00:00.000Z",
                "signingCertificate": CERTIFICATE,
                "signature": SIGNATURE,
            },
        },
    ),
    (
        "ocpp2.1",
        True,
        "UpdateFirmware",
        {
            "requestId": 7,
            "firmware": {
                "location": "https://cpms.example/fw.bin",
                "retrieveDateTime": "2025-03-01T12:00:00.000Z",
                "signingCertificate": CERTIFICATE,
                "signature": SIGNATURE,
            },
        },
    ),
]


@pytest.mark.parametrize("protocol, signed, action, payload", BUILT)
def test_firmware_update_request_per_version_matches_the_schema(protocol, signed, action, payload):
    built = firmware_update_request(
        protocol=protocol,
        request_id=7,
        location="https://cpms.example/fw.bin",
        retrieve_at=WHEN,
        signature=SIGNATURE if signed else "",
        signing_certificate=CERTIFICATE if signed else "",
    )
    assert built == (action, payload)
    version = protocol.removeprefix("ocpp")
    schemas.validate(version, schemas.request_schema(version, action), payload)  # raises if invalid


@pytest.mark.parametrize(
    "protocol, kind, action, payload",
    [
        (
            "ocpp1.6",
            "diagnostics",
            "GetDiagnostics",
            {
                "location": "https://cpms.example/ocpp-upload/t/",
                "startTime": "2025-03-01T12:00:00.000Z",
                "stopTime": "2025-03-01T12:00:00.000Z",
            },
        ),
        (
            "ocpp1.6",
            "log",
            "GetLog",
            {
                "logType": "SecurityLog",
                "requestId": 9,
                "log": {
                    "remoteLocation": "https://cpms.example/ocpp-upload/t/",
                    "oldestTimestamp": "2025-03-01T12:00:00.000Z",
                    "latestTimestamp": "2025-03-01T12:00:00.000Z",
                },
            },
        ),
        (
            "ocpp2.0.1",
            "log",
            "GetLog",
            {
                "logType": "SecurityLog",
                "requestId": 9,
                "log": {
                    "remoteLocation": "https://cpms.example/ocpp-upload/t/",
                    "oldestTimestamp": "2025-03-01T12:00:00.000Z",
                    "latestTimestamp": "2025-03-01T12:00:00.000Z",
                },
            },
        ),
    ],
)
def test_diagnostics_request_per_version_matches_the_schema(protocol, kind, action, payload):
    built = diagnostics_request(
        protocol=protocol,
        kind=kind,
        request_id=9,
        location="https://cpms.example/ocpp-upload/t/",
        log_type="SecurityLog",
        oldest=WHEN,
        latest=WHEN,
    )
    assert built == (action, payload)
    version = protocol.removeprefix("ocpp")
    schemas.validate(version, schemas.request_schema(version, action), payload)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: diagnostics_request(
                protocol="ocpp2.0.1",
                kind="diagnostics",
                request_id=1,
                location="u",
                log_type="DiagnosticsLog",
            ),
            "GetDiagnostics is an OCPP 1.6 message; ask an OCPP 2.0.1 station for kind 'log'.",
        ),
        (
            lambda: firmware_update_request(
                protocol="",
                request_id=1,
                location="u",
                retrieve_at=WHEN,
                signature="",
                signing_certificate="",
            ),
            "The station's OCPP version is not known (never connected); it is learnt at the first connection.",
        ),
        (
            lambda: firmware_update_request(
                protocol="ocpp2.0.1",
                request_id=1,
                location="u",
                retrieve_at=WHEN,
                signature="s" * 801,
                signing_certificate="",
            ),
            "UpdateFirmware (OCPP 2.0.1): firmware.signature: data.firmware.signature must be shorter than or "
            "equal to 800 characters",
        ),
    ],
)
def test_builders_refuse_what_the_version_cannot_carry(call, message):
    with pytest.raises(ValidationFailed) as raised:
        call()
    assert raised.value.message == message


# --- one station's update ---------------------------------------------------------------------------


def test_update_of_a_16_station_is_sent_and_its_answer_recorded(online, firmware, fake_charger):
    fake_charger.answers["UpdateFirmware"] = {}  # 1.6 UpdateFirmware.conf is empty: the answer accepts
    update = firmware_update_start(
        actor=online.operator_a,
        station=online.station_a1,
        firmware_id=firmware.pk,
        retrieve_at=WHEN,
    )
    assert fake_charger.received == [
        (
            "A1-CP1",
            "UpdateFirmware",
            {"location": location(firmware), "retrieveDate": "2025-03-01T12:00:00.000Z"},
        )
    ]
    command = Command.objects.get()
    assert (
        update.station,
        update.firmware,
        update.job,
        update.request_id,
        update.status,
        update.command,
    ) == (
        online.station_a1,
        firmware,
        None,
        None,
        "Accepted",
        command,
    )
    assert (command.status, command.requested_by, command.source) == ("answered", online.operator_a, "api")


def test_update_of_a_201_station_carries_the_update_as_request_id(online, signed_firmware, fake_charger):
    fake_charger.answers["UpdateFirmware"] = {"status": "Rejected", "statusInfo": {"reasonCode": "Busy"}}
    update = firmware_update_start(
        actor=online.operator_a,
        station=online.station_a2,
        firmware_id=signed_firmware.pk,
        retrieve_at=WHEN,
    )
    [(_, action, request)] = fake_charger.received
    assert action == "UpdateFirmware"
    assert request["requestId"] == update.pk == update.request_id
    assert request["firmware"]["signature"] == SIGNATURE
    assert update.status == "Rejected"


def test_update_of_an_offline_station_records_the_failed_command(online, firmware, fake_charger):
    ChargingStation.objects.filter(pk=online.station_a1.pk).update(is_connected=False)
    online.station_a1.refresh_from_db()
    update = firmware_update_start(
        actor=online.operator_a,
        station=online.station_a1,
        firmware_id=firmware.pk,
    )
    assert fake_charger.received == []
    assert (update.status, update.command.status, update.command.error_code) == ("", "failed", "NotConnected")


def test_update_of_a_never_connected_station_is_refused_before_anything_is_recorded(
    world, firmware, fake_charger
):
    with pytest.raises(ValidationFailed, match="never connected"):
        firmware_update_start(
            actor=world.operator_a,
            station=world.station_a1,
            firmware_id=firmware.pk,
        )
    assert not FirmwareUpdate.objects.exists()
    assert not Command.objects.exists()


def test_update_needs_command_on_the_station_and_a_firmware_of_its_organisation(online, media, fake_charger):
    firmware_b = make_firmware(online, org=online.org_b)
    firmware_a = make_firmware(online)
    with pytest.raises(PermissionDenied):
        firmware_update_start(
            actor=online.finance_a,
            station=online.station_a1,
            firmware_id=firmware_a.pk,
        )
    with pytest.raises(ValidationFailed, match=f"Firmware file {firmware_b.pk} not found."):
        firmware_update_start(
            actor=online.operator_a,
            station=online.station_a1,
            firmware_id=firmware_b.pk,
        )
    assert not FirmwareUpdate.objects.exists()
    assert fake_charger.received == []


# --- status notifications ---------------------------------------------------------------------------


def notify(station, kind, payload):
    station_event_record(
        station_id=station.pk,
        kind=kind,
        detail=payload,
        occurred_at=WHEN,
        received_at=WHEN,
        status_field="firmware_status" if kind == StationEventKind.FIRMWARE_STATUS else "diagnostics_status",
        status=payload["status"],
    )


def statuses(model, **filters):
    return list(model.objects.filter(**filters).order_by("pk").values_list("status", flat=True))


def test_firmware_status_with_request_id_moves_that_update_only(online, firmware, fake_charger):
    first, _second = (
        firmware_update_start(
            actor=online.operator_a,
            station=online.station_a2,
            firmware_id=firmware.pk,
        )
        for _ in range(2)
    )
    notify(
        online.station_a2, StationEventKind.FIRMWARE_STATUS, {"status": "Downloading", "requestId": first.pk}
    )
    assert statuses(FirmwareUpdate) == ["Downloading", "Accepted"]
    # The existing behaviour stays: the event is kept and the station's status mirrored.
    assert StationEvent.objects.get().detail == {"status": "Downloading", "requestId": first.pk}
    assert ChargingStation.objects.get(pk=online.station_a2.pk).firmware_status == "Downloading"
    notify(online.station_a2, StationEventKind.FIRMWARE_STATUS, {"status": "Installed", "requestId": 999999})
    assert statuses(FirmwareUpdate) == ["Downloading", "Accepted"]


def test_16_firmware_status_without_request_id_moves_the_latest_update_that_reached_the_station(
    online, firmware, fake_charger
):
    fake_charger.answers["UpdateFirmware"] = {}
    station = online.station_a1
    accepted = firmware_update_start(actor=online.operator_a, station=station, firmware_id=firmware.pk)
    fake_charger.answers["UpdateFirmware"] = CallError("InternalError")
    firmware_update_start(actor=online.operator_a, station=station, firmware_id=firmware.pk)
    ChargingStation.objects.filter(pk=station.pk).update(is_connected=False)
    station.refresh_from_db()
    firmware_update_start(actor=online.operator_a, station=station, firmware_id=firmware.pk)
    assert statuses(FirmwareUpdate) == ["Accepted", "", ""]

    notify(station, StationEventKind.FIRMWARE_STATUS, {"status": "Downloading"})
    assert statuses(FirmwareUpdate) == ["Downloading", "", ""]
    # Idle answers a TriggerMessage when nothing is going on: it is not the update's outcome.
    notify(station, StationEventKind.FIRMWARE_STATUS, {"status": "Idle"})
    assert statuses(FirmwareUpdate) == ["Downloading", "", ""]
    assert FirmwareUpdate.objects.get(pk=accepted.pk).status == "Downloading"


def test_a_notification_before_the_answer_is_recorded_goes_to_the_update_in_flight(online, firmware):
    previous = FirmwareUpdate.objects.create(station=online.station_a1, firmware=firmware, status="Installed")
    in_flight = FirmwareUpdate.objects.create(station=online.station_a1, firmware=firmware)
    notify(online.station_a1, StationEventKind.FIRMWARE_STATUS, {"status": "Downloading"})
    assert (
        FirmwareUpdate.objects.get(pk=previous.pk).status,
        FirmwareUpdate.objects.get(pk=in_flight.pk).status,
    ) == (
        "Installed",
        "Downloading",
    )


def test_diagnostics_and_log_status_move_their_uploads(online, media, fake_charger):
    fake_charger.answers["GetDiagnostics"] = {"fileName": "diag.zip"}
    diagnostics = diagnostics_upload_request(
        actor=online.operator_a, station=online.station_a1, kind="diagnostics"
    )
    log_a, log_b = (
        diagnostics_upload_request(actor=online.operator_a, station=online.station_a1, kind="log")
        for _ in range(2)
    )
    assert statuses(DiagnosticsUpload) == ["Accepted", "Accepted", "Accepted"]
    notify(online.station_a1, StationEventKind.DIAGNOSTICS_STATUS, {"status": "Uploading"})
    notify(online.station_a1, StationEventKind.LOG_STATUS, {"status": "UploadFailure", "requestId": log_a.pk})
    assert statuses(DiagnosticsUpload) == ["Uploading", "UploadFailure", "Accepted"]
    # 1.6 LogStatusNotification may leave requestId out: the latest log upload.
    notify(online.station_a1, StationEventKind.LOG_STATUS, {"status": "Uploaded"})
    assert statuses(DiagnosticsUpload) == ["Uploading", "UploadFailure", "Uploaded"]
    assert [diagnostics.request_id, log_a.request_id, log_b.request_id] == [None, log_a.pk, log_b.pk]


@pytest.mark.usefixtures("inline_db")
def test_notification_frames_reach_the_update_in_both_versions(online, firmware):
    update_16 = FirmwareUpdate.objects.create(station=online.station_a1, firmware=firmware, status="Accepted")
    update_201 = FirmwareUpdate.objects.create(
        station=online.station_a2, firmware=firmware, status="Accepted", request_id=4242
    )
    v16 = Harness(V16ChargePoint, online.station_a1)
    assert v16.call("FirmwareStatusNotification", {"status": "Installing"}) == [3, "m1", {}]
    v201 = Harness(V201ChargePoint, online.station_a2)
    assert v201.call("FirmwareStatusNotification", {"status": "Downloaded", "requestId": 4242}) == [
        3,
        "m1",
        {},
    ]
    assert (
        FirmwareUpdate.objects.get(pk=update_16.pk).status,
        FirmwareUpdate.objects.get(pk=update_201.pk).status,
    ) == (
        "Installing",
        "Downloaded",
    )


# --- campaigns --------------------------------------------------------------------------------------


@pytest.fixture
def fleet(online):
    """Org A: A1-CP1 (1.6) and A2-CP1 (2.0.1) connected, A1-CP3 (1.6) offline, A1-CP4 never connected."""
    ChargingStationFactory(identity="A1-CP3", site=online.site_a1, protocol="ocpp1.6")
    ChargingStationFactory(identity="A1-CP4", site=online.site_a1)
    return online


def create_campaign(world, firmware, identities) -> CommandJob:
    return firmware_campaign_create(
        actor=world.operator_a, firmware_id=firmware.pk, station_identities=identities, retrieve_at=WHEN
    )


def targets(job) -> dict:
    return {
        t.station.identity: (t.status, t.detail)
        for t in CommandJobTarget.objects.filter(job=job).select_related("station")
    }


def test_campaign_runs_in_batches_and_records_each_station(fleet, signed_firmware, fake_charger):
    fake_charger.answers["SignedUpdateFirmware"] = {"status": "Accepted"}
    fake_charger.answers["UpdateFirmware"] = {"status": "Rejected"}
    job = create_campaign(fleet, signed_firmware, ["A1-CP1", "A2-CP1", "A1-CP3", "A1-CP4"])
    assert (job.status, job.total, job.kind, job.firmware) == ("queued", 4, "firmware", signed_firmware)

    progress = firmware_campaign_run(job_id=job.pk, batch_size=3)

    assert (progress.status, progress.total, progress.done, progress.failed, progress.in_flight) == (
        "done",
        4,
        1,
        3,
        0,
    )
    assert targets(job) == {
        "A1-CP1": ("ok", "SignedUpdateFirmware: Accepted"),
        "A2-CP1": ("failed", "UpdateFirmware: Rejected"),
        "A1-CP3": ("failed", "SignedUpdateFirmware: Station A1-CP3 is not connected."),
        "A1-CP4": (
            "failed",
            "The station's OCPP version is not known (never connected); it is learnt at the first connection.",
        ),
    }
    updates = {
        u.station.identity: u for u in FirmwareUpdate.objects.filter(job=job).select_related("station")
    }
    assert {identity: u.status for identity, u in updates.items()} == {
        "A1-CP1": "Accepted",
        "A2-CP1": "Rejected",
        "A1-CP3": "",
    }
    sent = sorted(
        (identity, action, request["requestId"]) for identity, action, request in fake_charger.received
    )
    assert sent == [
        ("A1-CP1", "SignedUpdateFirmware", updates["A1-CP1"].pk),
        ("A2-CP1", "UpdateFirmware", updates["A2-CP1"].pk),
    ]
    assert {c.source for c in Command.objects.filter(job=job)} == {"job"}
    job.refresh_from_db()
    assert job.started_at is not None and job.finished_at is not None


@pytest.mark.parametrize(
    "answer, detail",
    [
        ({}, None),
        (CallError("InternalError", "flash busy"), "UpdateFirmware: flash busy"),
        (TIMEOUT, "UpdateFirmware: no answer"),
    ],
)
def test_campaign_target_outcome_per_answer(online, firmware, fake_charger, answer, detail):
    fake_charger.answers["UpdateFirmware"] = answer
    job = create_campaign(online, firmware, ["A1-CP1"])
    firmware_campaign_run(job_id=job.pk)
    expected = ("ok", "UpdateFirmware: Accepted") if detail is None else ("failed", detail)
    assert targets(job) == {"A1-CP1": expected}


def test_campaign_rerun_changes_nothing_twice(online, firmware, fake_charger):
    fake_charger.answers["UpdateFirmware"] = {}
    job = create_campaign(online, firmware, ["A1-CP1", "A2-CP1"])
    firmware_campaign_run(job_id=job.pk)
    before = (targets(job), list(CommandJob.objects.filter(pk=job.pk).values()), len(fake_charger.received))

    again = firmware_campaign_task(job.pk)

    assert again == {"job": job.pk, "status": "done", "done": 2, "failed": 0}
    assert (
        targets(job),
        list(CommandJob.objects.filter(pk=job.pk).values()),
        len(fake_charger.received),
    ) == before
    assert Command.objects.filter(job=job).count() == 2
    assert FirmwareUpdate.objects.filter(job=job).count() == 2


def test_an_interrupted_campaign_is_finished_from_the_commands_already_sent(online, firmware, fake_charger):
    fake_charger.answers["UpdateFirmware"] = {}
    job = create_campaign(online, firmware, ["A1-CP1", "A2-CP1"])
    firmware_campaign_run(job_id=job.pk)
    # The worker died after A2-CP1's command was answered but before its target was recorded, long ago.
    CommandJobTarget.objects.filter(job=job, station=online.station_a2).update(status="pending", detail="")
    CommandJob.objects.filter(pk=job.pk).update(
        status="running", done_count=1, started_at=datetime(2025, 1, 1, tzinfo=UTC), finished_at=None
    )
    CommandJobTarget.objects.filter(job=job).update(finished_at=datetime(2025, 1, 1, tzinfo=UTC))
    sent = len(fake_charger.received)

    progress = firmware_campaign_run(job_id=job.pk)

    assert (progress.status, progress.done, progress.failed) == ("done", 2, 0)
    assert len(fake_charger.received) == sent  # nothing sent twice
    assert targets(job)["A2-CP1"] == ("ok", "UpdateFirmware: Accepted")


def test_a_duplicate_delivery_leaves_a_running_campaign_alone(online, firmware, fake_charger):
    job = create_campaign(online, firmware, ["A1-CP1"])
    CommandJob.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now())
    progress = firmware_campaign_run(job_id=job.pk)
    assert (progress.status, progress.done, progress.failed) == ("running", 0, 0)
    assert fake_charger.received == []


def test_a_command_still_in_flight_makes_the_task_come_back(online, firmware, fake_charger):
    job = create_campaign(online, firmware, ["A1-CP1"])
    Command.objects.create(
        station=online.station_a1,
        action="UpdateFirmware",
        request={},
        status=CommandStatus.SENT,
        job=job,
        timeout_s=30,
        created_at=timezone.now(),
    )
    with pytest.raises(Retry):
        firmware_campaign_task(job.pk)
    job.refresh_from_db()
    assert (job.status, job.done_count, job.failed_count) == ("queued", 0, 0)
    assert fake_charger.received == []
    Command.objects.filter(job=job).update(status=CommandStatus.ANSWERED, response={})
    assert firmware_campaign_task(job.pk) == {"job": job.pk, "status": "done", "done": 1, "failed": 0}


def test_campaign_needs_command_organisation_wide_and_known_stations(fleet, firmware, fake_charger):
    for actor in (fleet.host_a1, fleet.finance_a):
        with pytest.raises(PermissionDenied):
            firmware_campaign_create(actor=actor, firmware_id=firmware.pk, station_identities=["A1-CP1"])
    with pytest.raises(ValidationFailed, match=f"Firmware file {firmware.pk} not found."):
        firmware_campaign_create(
            actor=fleet.operator_b, firmware_id=firmware.pk, station_identities=["B1-CP1"]
        )
    with pytest.raises(ValidationFailed, match="Not stations you may command here: B1-CP1"):
        firmware_campaign_create(
            actor=fleet.operator_a, firmware_id=firmware.pk, station_identities=["A1-CP1", "B1-CP1"]
        )
    assert not CommandJob.objects.exists()


def test_campaign_over_a_site_takes_its_stations(fleet, firmware, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        job = firmware_campaign_create(
            actor=fleet.operator_a, firmware_id=firmware.pk, site_id=fleet.site_a1.pk
        )
    assert sorted(targets(job)) == ["A1-CP1", "A1-CP3", "A1-CP4"]
    assert job.total == 3
    assert len(callbacks) == 1  # the task is queued once the campaign commits


# --- charger-facing endpoints -----------------------------------------------------------------------


def test_firmware_download_serves_the_image_by_token(client, firmware):
    url = location(firmware).removeprefix("https://cpms.example")
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == IMAGE
    assert response["Content-Length"] == str(len(IMAGE))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="fw-1.2.3.bin"'
    assert response["ETag"] == f'"{firmware.sha256}"'

    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head["Content-Length"] == str(len(IMAGE))

    assert client.get(f"/firmware/{'x' * 43}/fw-1.2.3.bin").status_code == 404
    assert client.post(url).status_code == 405


@pytest.fixture
def upload(online, media, fake_charger) -> DiagnosticsUpload:
    return diagnostics_upload_request(actor=online.operator_a, station=online.station_a1, kind="diagnostics")


def upload_path(upload) -> str:
    return reverse("ocpp-upload", kwargs={"token": upload.upload_token})


def test_diagnostics_request_tells_the_station_our_upload_url(upload, fake_charger):
    assert fake_charger.received == [
        ("A1-CP1", "GetDiagnostics", {"location": f"https://cpms.example/ocpp-upload/{upload.upload_token}/"})
    ]


def test_put_upload_stores_the_raw_body(client, upload, media):
    response = client.put(
        upload_path(upload) + "diag-2025.tar.gz", b"DIAG" * 100, content_type="application/gzip"
    )
    assert (response.status_code, response.content) == (201, b"Stored.\n")
    upload.refresh_from_db()
    assert (upload.file_name, upload.size_bytes, upload.file.name) == (
        "diag-2025.tar.gz",
        400,
        f"uploads/{upload.pk}-diag-2025.tar.gz",
    )
    assert upload.uploaded_at is not None
    assert (media / "uploads" / f"{upload.pk}-diag-2025.tar.gz").read_bytes() == b"DIAG" * 100


def test_post_multipart_upload_stores_the_first_file(client, upload, media):
    response = client.post(
        upload_path(upload),
        {
            "note": "x",
            "file": SimpleUploadedFile("log 1.txt", b"LOG"),
            "other": SimpleUploadedFile("b.txt", b"B"),
        },
    )
    assert response.status_code == 201
    upload.refresh_from_db()
    assert (upload.file_name, upload.size_bytes, upload.file.name) == (
        "log 1.txt",
        3,
        f"uploads/{upload.pk}-log_1.txt",
    )
    assert (media / "uploads" / f"{upload.pk}-log_1.txt").read_bytes() == b"LOG"


def test_an_upload_url_works_once(client, upload, media):
    assert (
        client.put(upload_path(upload) + "a.zip", b"FIRST", content_type="application/zip").status_code == 201
    )
    second = client.put(upload_path(upload) + "b.zip", b"SECOND", content_type="application/zip")
    assert (second.status_code, second.content) == (409, b"This upload URL has been used.\n")
    again = client.post(upload_path(upload), {"file": SimpleUploadedFile("c.zip", b"THIRD")})
    assert again.status_code == 409
    upload.refresh_from_db()
    assert (upload.file_name, upload.size_bytes) == ("a.zip", 5)
    assert sorted(p.name for p in (media / "uploads").iterdir()) == [f"{upload.pk}-a.zip"]


def test_unknown_upload_token_is_404(db, client, media):
    response = client.put(f"/ocpp-upload/{'x' * 43}/a.zip", b"DATA", content_type="application/zip")
    assert (response.status_code, response.content) == (404, b"Unknown upload URL.\n")
    assert client.get(f"/ocpp-upload/{'x' * 43}/").status_code == 405
    assert not (media / "uploads").exists()


def test_uploads_past_the_size_limit_are_413(client, upload, media, settings):
    settings.CPMS_MAX_UPLOAD_BYTES = 10
    put = client.put(upload_path(upload) + "a.zip", b"x" * 11, content_type="application/zip")
    assert (put.status_code, put.content) == (413, b"Uploads are limited to 10 bytes.\n")
    post = client.post(upload_path(upload), {"file": SimpleUploadedFile("a.zip", b"x" * 11)})
    assert post.status_code == 413
    upload.refresh_from_db()
    assert (upload.uploaded_at, upload.file.name) == (None, "")
    assert not (media / "uploads").exists()
    # At the limit it is taken.
    assert (
        client.put(upload_path(upload) + "a.zip", b"x" * 10, content_type="application/zip").status_code
        == 201
    )


@pytest.mark.parametrize(
    "suffix, stored, shown",
    [
        ("..%2F..%2F..%2Fevil.sh", "evil.sh", "evil.sh"),
        ("sub%2Fdir%2Fdiag.zip", "diag.zip", "diag.zip"),
        ("..%5C..%5Cwin.log", "win.log", "win.log"),
        ("%2E%2E", "diagnostics.bin", "diagnostics.bin"),
    ],
)
def test_the_chargers_file_name_never_chooses_the_path(client, upload, media, suffix, stored, shown):
    response = client.put(upload_path(upload) + suffix, b"DATA", content_type="application/octet-stream")
    assert response.status_code == 201
    upload.refresh_from_db()
    assert (upload.file.name, upload.file_name) == (f"uploads/{upload.pk}-{stored}", shown)
    assert [p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()] == [
        f"uploads/{upload.pk}-{stored}"
    ]


def test_multipart_file_names_are_sanitised_too(client, upload, media):
    response = client.post(
        upload_path(upload), {"file": SimpleUploadedFile("../../../etc/cron.d/x", b"DATA")}
    )
    assert response.status_code == 201
    upload.refresh_from_db()
    assert upload.file.name == f"uploads/{upload.pk}-x"


# --- admin ------------------------------------------------------------------------------------------


# The admin of these models is registered by stations/admin_firmware.py (imported by stations/admin.py); this
# module serves as the URLconf of the admin tests so that they run whenever that import happens.
urlpatterns = [path("admin/", admin.site.urls), path("", include("stations.urls"))]


def admin_client(client, user):
    type(user).objects.filter(pk=user.pk).update(is_staff=True)
    user.refresh_from_db()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "actor, expected",
    [
        ("operator_a", {"A"}),
        ("finance_a", {"A"}),
        ("operator_b", {"B"}),
        ("host_a1", set()),
        ("superuser", {"A", "B"}),
    ],
)
def test_admin_lists_firmware_files_and_jobs_of_the_actors_organisations(
    world, media, client, actor, expected
):
    files = {"A": make_firmware(world), "B": make_firmware(world, org=world.org_b)}
    jobs = {
        "A": CommandJob.objects.create(organisation=world.org_a, kind="firmware", firmware=files["A"]),
        "B": CommandJob.objects.create(organisation=world.org_b, kind="firmware", firmware=files["B"]),
    }
    c = admin_client(client, getattr(world, actor))
    for model, rows in (("firmwarefile", files), ("commandjob", jobs)):
        response = c.get(reverse(f"admin:stations_{model}_changelist"))
        if not expected:
            assert response.status_code == 403
            continue
        assert response.status_code == 200
        shown = {obj.pk for obj in response.context["cl"].result_list}
        assert shown == {rows[key].pk for key in expected}
    other = "B" if "A" in expected and actor != "superuser" else None
    if other:
        assert c.get(reverse("admin:stations_firmwarefile_change", args=[files[other].pk])).status_code == 302


@pytest.mark.urls(__name__)
def test_admin_adds_firmware_through_the_service(world, media, client):
    c = admin_client(client, world.operator_a)
    response = c.post(
        reverse("admin:stations_firmwarefile_add"),
        {
            "organisation": world.org_a.pk,
            "name": "Wallbox",
            "version": "2.0",
            "file": SimpleUploadedFile("fw-2.0.bin", IMAGE),
            "signature": "",
            "signing_certificate": "",
        },
    )
    assert response.status_code == 302, response.content
    firmware = FirmwareFile.objects.get()
    assert (firmware.sha256, firmware.size_bytes, firmware.uploaded_by, len(firmware.download_token)) == (
        hashlib.sha256(IMAGE).hexdigest(),
        len(IMAGE),
        world.operator_a,
        43,
    )
    page = c.get(reverse("admin:stations_firmwarefile_change", args=[firmware.pk]))
    assert page.status_code == 200
    assert location(firmware) in page.content.decode()
