"""Firmware files, firmware updates and campaigns, diagnostics and log uploads.

Chargers fetch firmware from us and upload diagnostics to us over plain HTTP, at URLs built from
CPMS_PUBLIC_URL that carry a random token: a charger cannot send our API credentials, so the token is the
credential (stations/views/files.py).

How the wire looks per OCPP version is cpms.ocpp_wire.firmware's: the functions here that send something
build the call with the id of the row they just created (OCPP's requestId is that row's pk), so the payload
always refers to a committed row that status notifications can find. Campaigns (one update to many
stations) are in stations.services.firmware_campaigns.

Outcomes are read from the Command record (stations.services.commands): an answer with status Accepted (or
no status at all: 1.6 UpdateFirmware.conf and GetDiagnostics.conf have none) is an acceptance; anything
else, a CALLERROR, a timeout or a station that is not connected is a failure with its reason.

The reads (lists and `*_access`) are in stations/selectors.py.
"""

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import TypeVar

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.text import get_valid_filename

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_access
from cpms.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from cpms.ocpp_wire.calls import Call
from cpms.ocpp_wire.firmware import diagnostics_request, firmware_update_request
from stations.enums import CommandSource, CommandStatus, UploadKind
from stations.models import (
    ChargingStation,
    Command,
    CommandJob,
    DiagnosticsUpload,
    FirmwareFile,
    FirmwareUpdate,
)
from stations.scope import user_can
from stations.selectors import UPDATE_RELATED, UPLOAD_RELATED
from stations.services.commands import command_send

logger = logging.getLogger(__name__)

# A firmware update or a diagnostics upload row.
_Row = TypeVar("_Row", FirmwareUpdate, DiagnosticsUpload)

TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# OCPP field limits (1.6 Security Whitepaper and 2.0.1 FirmwareType).
SIGNATURE_MAX_LENGTH = 800
CERTIFICATE_MAX_LENGTH = 5500
# Stored names stay well inside FileField's 100 characters once "firmware/" or "uploads/<pk>-" and a
# collision suffix are added.
STORED_NAME_MAX_LENGTH = 60

# Answers that accept the request: AcceptedCanceled accepted it and cancelled an earlier one
# (2.0.1 L01.FR.24, N01.FR.12).
ACCEPTED = frozenset({"Accepted", "AcceptedCanceled"})
# Answer statuses after which the charger works on nothing: later notifications are not about that request.
REFUSED = frozenset({"Rejected", "InvalidCertificate", "RevokedCertificate"})
# A station sends Idle only when a TriggerMessage asked and it is busy with nothing (1.6 section 4.4 and
# 4.5, 2.0.1 L01.FR.25, N01.FR.10): that says nothing about an earlier update or upload.
IDLE = "Idle"

# What the API renders with an update or upload (its command with the command's station and requester).


class UploadTooLarge(DomainError):
    status_code = 413


def max_upload_bytes() -> int:
    """CPMS_MAX_UPLOAD_BYTES: the largest diagnostics or log file a charger may upload."""
    return int(getattr(settings, "CPMS_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


@dataclass(frozen=True)
class CommandOutcome:
    ok: bool
    answer: str  # the status the charger answered ("" when it did not answer)
    detail: str


def command_outcome(command: Command) -> CommandOutcome | None:
    """What a firmware or upload command came to; None while it is not finished."""
    if command.status == CommandStatus.ANSWERED:
        response = command.response or {}
        answer = str(response.get("status", "Accepted"))
        if answer in ACCEPTED:
            return CommandOutcome(ok=True, answer=answer, detail=f"{command.action}: {answer}")
        reason = (response.get("statusInfo") or {}).get("reasonCode")
        detail = f"{command.action}: {answer}" + (f" ({reason})" if reason else "")
        return CommandOutcome(ok=False, answer=answer, detail=detail)
    if command.status in (CommandStatus.FAILED, CommandStatus.TIMED_OUT):
        reason = command.error_description or command.error_code or command.status
        return CommandOutcome(ok=False, answer="", detail=f"{command.action}: {reason}"[:500])
    return None


def _require_command(*, actor: User, station: ChargingStation) -> None:
    if not user_can(
        user=actor,
        capability=Capability.COMMAND,
        organisation_id=station.organisation_id,
        site_id=station.site_id,
    ):
        raise PermissionDenied(f"You may not command station {station.identity!r}.")


def _public_url(path: str) -> str:
    return settings.CPMS_PUBLIC_URL + path


def stored_name(name: str, *, fallback: str) -> str:
    """A file name safe to store a file under, from a name a charger or browser sent: its last path
    segment only (the sender may send "../../x", "C:\\x" or a URL-decoded "a/b"), letters, digits, '-', '_'
    and '.', no leading dot, at most STORED_NAME_MAX_LENGTH characters (the extension kept)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    try:
        safe = get_valid_filename(base).lstrip(".")
    except SuspiciousFileOperation:
        return fallback
    if not safe:
        return fallback
    if len(safe) > STORED_NAME_MAX_LENGTH:
        stem, ext = os.path.splitext(safe)
        ext = ext[:10]
        safe = stem[: STORED_NAME_MAX_LENGTH - len(ext)] + ext
    return safe


def shown_name(name: str) -> str:
    """The sender's file name for display (and a download's Content-Disposition): the last path segment,
    printable characters only."""
    base = PurePosixPath(name.replace("\\", "/")).name
    shown = "".join(ch for ch in base if ch.isprintable())[:255]
    return "" if shown in {".", ".."} else shown


# --- firmware files ---------------------------------------------------------------------------------


def firmware_download_url(firmware: FirmwareFile) -> str:
    """Where chargers download the image: CPMS_PUBLIC_URL/firmware/<token>/<file name>."""
    stored = firmware.file.name
    assert stored is not None  # the file is required
    filename = PurePosixPath(stored).name
    return _public_url(
        reverse("firmware-download", kwargs={"token": firmware.download_token, "filename": filename})
    )


def firmware_file_create(
    *,
    actor: User,
    organisation_id: int,
    name: str,
    version: str,
    content: "File[bytes]",
    signature: str = "",
    signing_certificate: str = "",
) -> FirmwareFile:
    """Store an image for an organisation (MANAGE there): its size and SHA-256 are computed here, the
    download token is random."""
    try:
        organisation = organisation_access(user=actor, pk=organisation_id, capability=Capability.MANAGE)
    except NotFound as exc:
        raise ValidationFailed(exc.message) from exc
    name, version = name.strip(), version.strip()
    if not 1 <= len(name) <= 200:
        raise ValidationFailed("Name must be 1-200 characters long.")
    if not 1 <= len(version) <= 50:
        raise ValidationFailed("Version must be 1-50 characters long.")
    if len(signature) > SIGNATURE_MAX_LENGTH:
        raise ValidationFailed(f"The signature must be at most {SIGNATURE_MAX_LENGTH} characters (OCPP).")
    if len(signing_certificate) > CERTIFICATE_MAX_LENGTH:
        raise ValidationFailed(
            f"The signing certificate must be at most {CERTIFICATE_MAX_LENGTH} characters (OCPP)."
        )
    digest = hashlib.sha256()
    size = 0
    for chunk in content.chunks():
        digest.update(chunk)
        size += len(chunk)
    if size == 0:
        raise ValidationFailed("The firmware file is empty.")
    content.seek(0)
    firmware = FirmwareFile(
        organisation=organisation,
        name=name,
        version=version,
        size_bytes=size,
        sha256=digest.hexdigest(),
        download_token=secrets.token_urlsafe(TOKEN_BYTES),
        signature=signature,
        signing_certificate=signing_certificate,
        uploaded_by=actor,
    )
    firmware.file.save(stored_name(content.name or "", fallback="firmware.bin"), content, save=False)
    try:
        firmware.save()
    except Exception:
        firmware.file.delete(save=False)
        raise
    return firmware


# --- firmware updates -------------------------------------------------------------------------------


@transaction.atomic
def firmware_update_prepare(
    *,
    station: ChargingStation,
    firmware: FirmwareFile,
    job: CommandJob | None,
    retrieve_at: datetime,
) -> tuple[FirmwareUpdate, Call]:
    """The update row and the call that refers to it, committed before anything is sent. A builder
    refusal (unknown protocol, a value the version cannot carry) rolls the row back."""
    update = None
    if job is not None:
        # A campaign run that stopped between this commit and the command's: the row is reused.
        update = FirmwareUpdate.objects.filter(job=job, station=station, command__isnull=True).first()
    if update is None:
        update = FirmwareUpdate.objects.create(station=station, firmware=firmware, job=job)
    call = firmware_update_request(
        protocol=station.protocol,
        request_id=update.pk,
        location=firmware_download_url(firmware),
        retrieve_at=retrieve_at,
        signature=firmware.signature,
        signing_certificate=firmware.signing_certificate,
    )
    # 1.6 UpdateFirmware has no requestId: its notifications are matched to the station's latest update.
    request_id = update.pk if "requestId" in call.payload else None
    if update.request_id != request_id:
        update.request_id = request_id
        update.save(update_fields=["request_id", "updated_at"])
    return update, call


def firmware_update_finish(*, update: FirmwareUpdate, command: Command) -> FirmwareUpdate:
    """Link the command and take its answer as the update's first status. A status notification that
    came in first (chargers send Downloading right after answering) is not overwritten."""
    now = timezone.now()
    FirmwareUpdate.objects.filter(pk=update.pk).update(command=command, updated_at=now)
    outcome = command_outcome(command)
    if outcome is not None and outcome.answer:
        FirmwareUpdate.objects.filter(pk=update.pk, status="").update(status=outcome.answer[:40])
    return FirmwareUpdate.objects.select_related(*UPDATE_RELATED).get(pk=update.pk)


def firmware_update_start(
    *,
    actor: User,
    station: ChargingStation,
    firmware_id: int,
    retrieve_at: datetime | None = None,
    source: str = CommandSource.API,
) -> FirmwareUpdate:
    """Tell one station (COMMAND on it) to install a firmware file of its organisation, wait for its
    answer and return the update with its command (offline: a failed NotConnected command)."""
    _require_command(actor=actor, station=station)
    firmware = FirmwareFile.objects.filter(pk=firmware_id, organisation_id=station.organisation_id).first()
    if firmware is None:
        raise ValidationFailed(f"Firmware file {firmware_id} not found.")
    update, call = firmware_update_prepare(
        station=station, firmware=firmware, job=None, retrieve_at=retrieve_at or timezone.now()
    )
    command = command_send(station=station, call=call, requested_by=actor, source=source)
    return firmware_update_finish(update=update, command=command)


# --- diagnostics and log uploads --------------------------------------------------------------------


def diagnostics_upload_url(upload: DiagnosticsUpload) -> str:
    """Where the charger uploads: CPMS_PUBLIC_URL/ocpp-upload/<token>/ (PUT <that>/<file name>, or a
    multipart POST to it)."""
    return _public_url(reverse("ocpp-upload", kwargs={"token": upload.upload_token}))


def diagnostics_upload_request(
    *,
    actor: User,
    station: ChargingStation,
    kind: str,
    log_type: str | None = None,
    oldest: datetime | None = None,
    latest: datetime | None = None,
    source: str = CommandSource.API,
) -> DiagnosticsUpload:
    """Ask a station (COMMAND on it) to upload diagnostics (1.6 GetDiagnostics) or a log (GetLog) to a
    one-time URL of ours; returns the upload record with the command's outcome."""
    _require_command(actor=actor, station=station)
    if kind not in UploadKind.values:
        raise ValidationFailed(f"Unknown kind {kind!r}; expected one of {', '.join(UploadKind.values)}.")
    if kind == UploadKind.DIAGNOSTICS and log_type:
        raise ValidationFailed("log_type is for kind 'log' (GetLog).")
    if oldest is not None and latest is not None and oldest > latest:
        raise ValidationFailed("start must not be after stop.")
    with transaction.atomic():
        upload = DiagnosticsUpload.objects.create(
            station=station, kind=kind, upload_token=secrets.token_urlsafe(TOKEN_BYTES), requested_by=actor
        )
        call = diagnostics_request(
            protocol=station.protocol,
            kind=kind,
            request_id=upload.pk,
            location=diagnostics_upload_url(upload),
            log_type=log_type or "DiagnosticsLog",
            oldest=oldest,
            latest=latest,
        )
        if "requestId" in call.payload:
            upload.request_id = upload.pk
            upload.save(update_fields=["request_id"])
    command = command_send(station=station, call=call, requested_by=actor, source=source)
    DiagnosticsUpload.objects.filter(pk=upload.pk).update(command=command)
    outcome = command_outcome(command)
    if outcome is not None and outcome.answer:
        DiagnosticsUpload.objects.filter(pk=upload.pk, status="").update(status=outcome.answer[:40])
    return DiagnosticsUpload.objects.select_related(*UPLOAD_RELATED).get(pk=upload.pk)


def diagnostics_upload_store(*, token: str, file_name: str, content: "File[bytes]") -> DiagnosticsUpload:
    """Keep the file a charger uploaded with `token`. A token is good for one upload (Conflict after);
    the file is stored as uploads/<upload pk>-<safe name>, whatever name the charger gave."""
    with transaction.atomic():
        upload = DiagnosticsUpload.objects.select_for_update().filter(upload_token=token).first()
        if upload is None:
            raise NotFound("Unknown upload URL.")
        if upload.uploaded_at is not None:
            raise Conflict("This upload URL has been used.")
        if content.size > max_upload_bytes():
            raise UploadTooLarge(f"Uploads are limited to {max_upload_bytes()} bytes.")
        fallback = "log.bin" if upload.kind == UploadKind.LOG else "diagnostics.bin"
        upload.file.save(f"{upload.pk}-{stored_name(file_name, fallback=fallback)}", content, save=False)
        upload.file_name = shown_name(file_name) or fallback
        upload.size_bytes = content.size
        upload.uploaded_at = timezone.now()
        try:
            upload.save(update_fields=["file", "file_name", "size_bytes", "uploaded_at"])
        except Exception:
            upload.file.delete(save=False)
            raise
    return upload


# --- status notifications (called by stations.services.ocpp.station_event_record) -----------------


def _latest_live(qs: QuerySet[_Row]) -> QuerySet[_Row]:
    """The newest row whose command may have reached the charger and was not refused: the one a
    notification without requestId is about. A row whose command is still on its way counts (the
    charger may notify before its answer is recorded)."""
    latest = (
        qs.exclude(command__status=CommandStatus.FAILED)
        .exclude(status__in=REFUSED)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
        .first()
    )
    return qs.filter(pk=latest) if latest is not None else qs.none()


def firmware_status_record(*, station_id: int, status: str, request_id: int | None = None) -> int:
    """FirmwareStatusNotification (1.6, signed 1.6, 2.0.1): the status onto the update it reports on,
    by requestId, or, without one (1.6 core has none), onto the station's latest live update. Runs in the
    caller's transaction; returns the rows changed (0 or 1)."""
    if not status or status == IDLE:
        return 0
    updates = FirmwareUpdate.objects.filter(station_id=station_id)
    updates = updates.filter(request_id=request_id) if request_id is not None else _latest_live(updates)
    return updates.update(status=status[:40], updated_at=timezone.now())


def upload_status_record(*, station_id: int, kind: str, status: str, request_id: int | None = None) -> int:
    """DiagnosticsStatusNotification (1.6, kind diagnostics) and LogStatusNotification (kind log): the
    status onto the upload it reports on, by requestId or else the station's latest live one of that
    kind."""
    if not status or status == IDLE:
        return 0
    uploads = DiagnosticsUpload.objects.filter(station_id=station_id, kind=kind)
    uploads = uploads.filter(request_id=request_id) if request_id is not None else _latest_live(uploads)
    return uploads.update(status=status[:40])
