"""Bulk command jobs: the same operation over many stations (a configuration template, reading every
station's configuration, one command to a fleet), run by a Celery task in batches with progress and a
result per station.

The calls are built by the caller, per protocol, when the job is created (`calls` maps a station protocol
to a list of [action, payload], built by cpms.ocpp_wire): a job must send what the operator saw when
starting it.
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Organisation, User
from cpms.errors import ValidationFailed
from cpms.jobs import Heartbeat, Recovered, jobs_recover
from cpms.jobs import job_claim as claim_job
from cpms.ocpp_wire.calls import Call
from stations.enums import CommandSource, CommandStatus, JobKind, JobStatus, JobTargetStatus
from stations.models import ChargingStation, Command, CommandJob, CommandJobTarget, ConfigurationTemplate
from stations.services.commands import FINAL_STATUSES, command_send_async, command_wait

logger = logging.getLogger(__name__)

BATCH_SIZE = 50
# Commands in flight at once within a job: each waits for its charger, the database work is small.
CONCURRENCY = 20
# Answers that mean "done" (ChangeConfiguration RebootRequired: stored, applied at the next reboot).
OK_STATUSES = frozenset({"Accepted", "RebootRequired", "Scheduled"})

Calls = Mapping[str, list[list[Any]]]


def command_job_create(
    *,
    organisation: Organisation,
    kind: str,
    stations: Iterable[ChargingStation],
    calls: Calls,
    user: User | None = None,
    action: str = "",
    template: ConfigurationTemplate | None = None,
) -> CommandJob:
    """Create the job and one target per station; the task is queued once this commits."""
    from stations.tasks import command_job_run  # tasks import services, not the other way round at load

    stations = list(stations)
    if not stations:
        raise ValidationFailed("Choose at least one station.")
    foreign = sorted(s.identity for s in stations if s.organisation_id != organisation.pk)
    if foreign:
        raise ValidationFailed(f"Stations of another organisation: {', '.join(foreign)}.")
    with transaction.atomic():
        job = CommandJob.objects.create(
            organisation=organisation,
            kind=kind,
            action=action,
            request={"calls": {protocol: list(map(list, items)) for protocol, items in calls.items()}},
            template=template,
            total=len(stations),
            created_by=user,
        )
        CommandJobTarget.objects.bulk_create(CommandJobTarget(job=job, station=s) for s in stations)
        transaction.on_commit(lambda: command_job_run.delay(job.pk))
    return job


def command_job_run(*, job_id: int, batch_size: int = BATCH_SIZE) -> CommandJob:
    """Run the job's pending targets in batches. Idempotent: a target already ok or failed is not sent
    again, so a rerun after a crash finishes the rest and changes nothing twice. A job that is running
    alive (its heartbeat within JOB_LEASE_S) is left to its runner: a duplicate delivery does nothing."""
    job = CommandJob.objects.select_related("created_by").get(pk=job_id)
    claim = job_claim(job=job)
    if claim is None:
        return CommandJob.objects.get(pk=job_id)
    calls = job.request.get("calls", {})
    with job_heartbeat(job_id=job_id, claim=claim):
        while True:
            batch = list(
                CommandJobTarget.objects.filter(job=job, status=JobTargetStatus.PENDING)
                .select_related("station")
                .order_by("pk")[:batch_size]
            )
            if not batch:
                break
            async_to_sync(_run_batch)(job, batch, calls)
    CommandJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, started_at=claim).update(
        status=JobStatus.DONE, heartbeat_at=None, finished_at=timezone.now()
    )
    return CommandJob.objects.get(pk=job_id)


def job_claim(*, job: CommandJob) -> datetime | None:
    """Claim `job` for this run (cpms/jobs.py `job_claim`): a queued job becomes running; a running one is
    taken over only when its run was lost (no heartbeat for JOB_LEASE_S: its worker died), as its next
    attempt, or failed after JOB_MAX_ATTEMPTS lost attempts. Returns the claim (`started_at`), or None: a
    duplicate delivery while it runs, a finished job, or another run that claimed it meanwhile."""
    return claim_job(model=CommandJob, job_id=job.pk, on_failed=_pending_targets_fail)


def job_heartbeat(*, job_id: int, claim: datetime) -> Heartbeat:
    """The lease of the run holding `claim`, kept while the `with` block runs."""
    return Heartbeat(CommandJob.objects.filter(pk=job_id, status=JobStatus.RUNNING, started_at=claim))


def _pending_targets_fail(job: CommandJob) -> None:
    """A job failed after its last lost attempt: its stations still pending did not get it."""
    with transaction.atomic():
        failed = CommandJobTarget.objects.filter(job_id=job.pk, status=JobTargetStatus.PENDING).update(
            status=JobTargetStatus.FAILED, detail="Not sent: the job was stopped.", finished_at=timezone.now()
        )
        CommandJob.objects.filter(pk=job.pk).update(failed_count=F("failed_count") + failed)


def command_jobs_recover() -> Recovered:
    """The sweep of bulk command jobs and firmware campaigns (Celery beat every JOB_SWEEP_S; cpms/jobs.py):
    a job whose worker died is queued again as its next attempt (its rerun sends only what is pending), or
    failed after JOB_MAX_ATTEMPTS lost attempts with its pending stations failed; a queued job nobody took
    within the lease has its task sent again."""
    from stations.tasks import command_job_run as command_job_task  # tasks import services, not at load
    from stations.tasks_firmware import firmware_campaign_run

    def enqueue(job: CommandJob) -> None:
        task = firmware_campaign_run if job.kind == JobKind.FIRMWARE else command_job_task
        task.delay(job.pk)

    return jobs_recover(model=CommandJob, enqueue=enqueue, on_failed=_pending_targets_fail)


def job_target_finish(*, target: CommandJobTarget, ok: bool, detail: str) -> bool:
    """pending -> ok/failed once; the job's counter moves with it, in the same transaction."""
    with transaction.atomic():
        finished = CommandJobTarget.objects.filter(pk=target.pk, status=JobTargetStatus.PENDING).update(
            status=JobTargetStatus.OK if ok else JobTargetStatus.FAILED,
            detail=detail[:500],
            finished_at=timezone.now(),
        )
        if finished:
            counter = "done_count" if ok else "failed_count"
            CommandJob.objects.filter(pk=target.job_id).update(**{counter: F(counter) + 1})
    return finished == 1


async def _run_batch(job: CommandJob, targets: list[CommandJobTarget], calls: Calls) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(target: CommandJobTarget) -> None:
        async with slots:
            ok, detail = await _run_target(job, target.station, calls.get(target.station.protocol))
        await sync_to_async(job_target_finish, thread_sensitive=True)(target=target, ok=ok, detail=detail)

    await asyncio.gather(*(one(target) for target in targets))


async def _run_target(
    job: CommandJob, station: ChargingStation, calls: list[list[Any]] | None
) -> tuple[bool, str]:
    if not calls:
        return False, f"Nothing to send to a station speaking {station.protocol or 'no protocol yet'}."
    # Calls an earlier run of this job already sent to the station (its worker died before the station's
    # outcome was recorded): their outcome is taken, never a second send (a bulk Reset must not reset twice).
    earlier = await sync_to_async(_earlier_commands, thread_sensitive=True)(
        job_id=job.pk, station_id=station.pk
    )
    details = []
    for index, (action, payload) in enumerate(calls):
        if index < len(earlier):
            command = earlier[index]
            if command.status not in FINAL_STATUSES:
                # Still on its way: the process holding the station records the answer, or the command's
                # timeout fails it (the same wait as the run that sent it).
                command = await command_wait(command)
        else:
            command = await command_send_async(
                station=station,
                call=Call(action, payload),
                requested_by=job.created_by,
                source=CommandSource.JOB,
                job=job,
            )
        if command.status != CommandStatus.ANSWERED:
            return False, f"{action}: {command.error_description or command.status}"
        refused = _refusals(command.response or {})
        if refused:
            return False, f"{action}: {', '.join(refused)}"
        details.append(f"{action}: {(command.response or {}).get('status', 'answered')}")
    return True, "; ".join(details)


def _earlier_commands(*, job_id: int, station_id: int) -> list[Command]:
    """The commands earlier runs of the job sent to the station, in the order of the job's calls."""
    return list(Command.objects.filter(job_id=job_id, station_id=station_id).order_by("pk"))


def _refusals(response: dict[str, Any]) -> list[str]:
    """What an answer refused: its own status, or (2.0.1 SetVariables) each refused variable."""
    refused = []
    if "status" in response and response["status"] not in OK_STATUSES:
        refused.append(str(response["status"]))
    for result in response.get("setVariableResult", []):
        if result.get("attributeStatus") not in OK_STATUSES:
            name = f"{result.get('component', {}).get('name')}.{result.get('variable', {}).get('name')}"
            refused.append(f"{name} {result.get('attributeStatus')}")
    return refused


def configuration_template_create(
    *, organisation: Organisation, name: str, protocol: str, settings: list[dict[str, Any]]
) -> ConfigurationTemplate:
    if ConfigurationTemplate.objects.filter(organisation=organisation, name=name).exists():
        raise ValidationFailed(f"A template named {name!r} already exists.")
    return ConfigurationTemplate.objects.create(
        organisation=organisation, name=name, protocol=protocol, settings=settings
    )


def configuration_template_update(
    *, template: ConfigurationTemplate, data: Mapping[str, Any]
) -> ConfigurationTemplate:
    for field in ("name", "settings"):
        if field in data:
            setattr(template, field, data[field])
    template.save(update_fields=[f for f in ("name", "settings") if f in data])
    return template
