"""Firmware campaigns: one firmware update to many stations, a CommandJob (kind firmware) run by a Celery task
(stations.tasks_firmware) in batches, each station's update recorded as in stations.services.firmware."""

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.utils import timezone

from accounts.enums import Capability
from accounts.models import User
from cpms.errors import DomainError, PermissionDenied, ValidationFailed
from cpms.ocpp_wire.calls import Call
from stations.enums import CommandSource, JobKind, JobStatus, JobTargetStatus
from stations.models import Command, CommandJob, CommandJobTarget, FirmwareUpdate
from stations.scope import user_can
from stations.selectors import firmware_file_list, stations_for_command
from stations.services.commands import command_send_async
from stations.services.firmware import command_outcome, firmware_update_finish, firmware_update_prepare
from stations.services.jobs import job_claim, job_heartbeat, job_target_finish

logger = logging.getLogger(__name__)

CAMPAIGN_BATCH_SIZE = 50
# Stations of one campaign batch that are sent their update at once (each waits for its charger's answer).
CAMPAIGN_CONCURRENCY = 20


def firmware_campaign_create(
    *,
    actor: User,
    firmware_id: int,
    station_identities: list[str] | None = None,
    site_id: int | None = None,
    retrieve_at: datetime | None = None,
) -> CommandJob:
    """A firmware campaign: a CommandJob (kind firmware) with one target per station, run by
    stations.tasks_firmware.firmware_campaign_run once this commits.

    Campaigns are organisation-wide operations: COMMAND on the firmware's organisation (not only on some
    of its sites), and every station named must be one the actor may command there (stations_for_command).
    """
    from stations.tasks_firmware import firmware_campaign_run  # tasks import services, not at load

    firmware = firmware_file_list(user=actor).filter(pk=firmware_id).first()
    if firmware is None:
        raise ValidationFailed(f"Firmware file {firmware_id} not found.")
    if not user_can(user=actor, capability=Capability.COMMAND, organisation_id=firmware.organisation_id):
        raise PermissionDenied(
            f"You may not run firmware campaigns in organisation {firmware.organisation_id}."
        )
    if (station_identities is None) == (site_id is None):
        raise ValidationFailed("Give either the stations (identities) or a site.")
    if station_identities is not None and not station_identities:
        raise ValidationFailed("Choose at least one station.")
    stations = stations_for_command(
        user=actor, organisation_id=firmware.organisation_id, identities=station_identities, site_id=site_id
    )
    with transaction.atomic():
        job = CommandJob.objects.create(
            organisation_id=firmware.organisation_id,
            kind=JobKind.FIRMWARE,
            action="UpdateFirmware",
            request={"retrieve_at": retrieve_at.isoformat() if retrieve_at else None},
            firmware=firmware,
            total=len(stations),
            created_by=actor,
        )
        CommandJobTarget.objects.bulk_create(CommandJobTarget(job=job, station=s) for s in stations)
        transaction.on_commit(lambda: firmware_campaign_run.delay(job.pk))
    return job


@dataclass(frozen=True)
class CampaignProgress:
    job_id: int
    status: str
    total: int
    done: int
    failed: int
    # Targets whose command is still on its way (sent by an earlier run): the task comes back for them.
    in_flight: int


def firmware_campaign_run(*, job_id: int, batch_size: int = CAMPAIGN_BATCH_SIZE) -> CampaignProgress | None:
    """Send the campaign's firmware to its pending targets, a batch at a time, and record each station's
    outcome (the counters move as targets finish). None when the job no longer exists.

    Idempotent: a target that is ok or failed is not sent again, and a target whose command an earlier
    run already sent takes that command's outcome instead of a second update. A duplicate delivery while
    another worker runs the campaign (recent progress) leaves it alone. The job is `done` once every target
    has an outcome, whatever the outcomes: `failed_count` says how many stations did not take it.
    """
    job = (
        CommandJob.objects.filter(pk=job_id, kind=JobKind.FIRMWARE)
        .select_related("firmware", "created_by")
        .first()
    )
    if job is None:
        return None
    claim = job_claim(job=job)
    if claim is None:  # running alive elsewhere, finished, or claimed meanwhile
        return campaign_progress(job_id=job_id, in_flight=0)
    raw_retrieve_at = job.request.get("retrieve_at")
    retrieve_at = datetime.fromisoformat(raw_retrieve_at) if raw_retrieve_at else None
    in_flight = 0
    after = 0
    with job_heartbeat(job_id=job_id, claim=claim):
        while True:
            batch = list(
                CommandJobTarget.objects.filter(job=job, status=JobTargetStatus.PENDING, pk__gt=after)
                .select_related("station")
                .order_by("pk")[:batch_size]
            )
            if not batch:
                break
            after = batch[-1].pk
            in_flight += _campaign_batch_run(job=job, targets=batch, retrieve_at=retrieve_at)
    mine = CommandJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, started_at=claim)
    if in_flight == 0:
        mine.update(status=JobStatus.DONE, heartbeat_at=None, finished_at=timezone.now())
    else:
        # Back to queued: the task's retry claims it again (queued -> running) once those commands ended;
        # left running, the retry would take it for a run in progress and leave it alone. heartbeat_at:
        # when it was queued, so that the recovery sweep waits a lease (> IN_FLIGHT_RETRY_S) for the retry.
        mine.update(status=JobStatus.QUEUED, heartbeat_at=timezone.now())
    return campaign_progress(job_id=job_id, in_flight=in_flight)


def _campaign_batch_run(
    *,
    job: CommandJob,
    targets: list[CommandJobTarget],
    retrieve_at: datetime | None,
) -> int:
    """One batch: targets already sent take their command's outcome, the others are sent concurrently.
    Returns how many targets are still in flight."""
    firmware = job.firmware
    assert firmware is not None  # a firmware campaign names its file (firmware_campaign_create)
    in_flight = 0
    sends: list[tuple[CommandJobTarget, FirmwareUpdate, Call]] = []
    for target in targets:
        earlier = Command.objects.filter(job=job, station_id=target.station_id).order_by("-id").first()
        if earlier is not None:
            outcome = command_outcome(earlier)
            if outcome is None:
                in_flight += 1  # its outcome comes when the process holding the station records it
                continue
            update = (
                FirmwareUpdate.objects.filter(job=job, station_id=target.station_id).order_by("-id").first()
            )
            if update is not None:
                firmware_update_finish(update=update, command=earlier)
            job_target_finish(target=target, ok=outcome.ok, detail=outcome.detail)
            continue
        try:
            update, call = firmware_update_prepare(
                station=target.station,
                firmware=firmware,
                job=job,
                retrieve_at=retrieve_at or timezone.now(),
            )
        except DomainError as exc:
            job_target_finish(target=target, ok=False, detail=exc.message)
            continue
        sends.append((target, update, call))
    if sends:
        async_to_sync(_campaign_send)(job, sends)
        for target, _update, _call in sends:
            if CommandJobTarget.objects.filter(pk=target.pk, status=JobTargetStatus.PENDING).exists():
                in_flight += 1
    return in_flight


async def _campaign_send(job: CommandJob, sends: list[tuple[CommandJobTarget, FirmwareUpdate, Call]]) -> None:
    slots = asyncio.Semaphore(CAMPAIGN_CONCURRENCY)

    async def one(target: CommandJobTarget, update: FirmwareUpdate, call: Call) -> None:
        async with slots:
            try:
                command = await command_send_async(
                    station=target.station,
                    call=call,
                    requested_by=job.created_by,
                    source=CommandSource.JOB,
                    job=job,
                )
            except Exception:
                # The target stays pending: the next run reads the command if it was recorded.
                logger.exception("campaign %s: sending to %s failed", job.pk, target.station.identity)
                return
        await sync_to_async(_campaign_command_record, thread_sensitive=True)(
            target=target, update=update, command=command
        )

    await asyncio.gather(*(one(*send) for send in sends))


def _campaign_command_record(*, target: CommandJobTarget, update: FirmwareUpdate, command: Command) -> None:
    firmware_update_finish(update=update, command=command)
    outcome = command_outcome(command)
    if outcome is not None:
        job_target_finish(target=target, ok=outcome.ok, detail=outcome.detail)


def campaign_progress(*, job_id: int, in_flight: int) -> CampaignProgress:
    job = CommandJob.objects.get(pk=job_id)
    return CampaignProgress(
        job_id=job.pk,
        status=job.status,
        total=job.total,
        done=job.done_count,
        failed=job.failed_count,
        in_flight=in_flight,
    )
