"""Bulk command jobs: the same operation over many stations (a configuration template, reading every
station's configuration, one command to a fleet), run by a Celery task in batches with progress and a
result per station.

The calls are built by the caller, per protocol, when the job is created (`calls` maps a station protocol
to a list of [action, payload]): the version-specific payloads belong to the OCPP layer, and a job must
send what the operator saw when starting it.
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta

from asgiref.sync import async_to_sync, sync_to_async
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from accounts.models import Organisation, User
from cpms.errors import ValidationFailed
from stations.enums import CommandSource, CommandStatus, JobStatus, JobTargetStatus
from stations.models import ChargingStation, CommandJob, CommandJobTarget, ConfigurationTemplate
from stations.services.commands import command_execute_async

logger = logging.getLogger(__name__)

BATCH_SIZE = 50
# Commands in flight at once within a job: each waits for its charger, the database work is small.
CONCURRENCY = 20
# Answers that mean "done" (ChangeConfiguration RebootRequired: stored, applied at the next reboot).
OK_STATUSES = frozenset({"Accepted", "RebootRequired", "Scheduled"})

# A running job with no progress for this long is taken to be orphaned (its worker died): a redelivered
# task takes it over.
STALE_AFTER = timedelta(minutes=15)

Calls = Mapping[str, list[list]]


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
    (recent progress) is left to its runner: a duplicate delivery of the task does nothing."""
    job = CommandJob.objects.select_related("created_by").get(pk=job_id)
    if not job_claim(job=job):
        return CommandJob.objects.get(pk=job_id)
    calls = job.request.get("calls", {})
    while True:
        batch = list(
            CommandJobTarget.objects.filter(job=job, status=JobTargetStatus.PENDING)
            .select_related("station")
            .order_by("pk")[:batch_size]
        )
        if not batch:
            break
        async_to_sync(_run_batch)(job, batch, calls)
    CommandJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.DONE, finished_at=timezone.now()
    )
    return CommandJob.objects.get(pk=job_id)


def job_claim(*, job: CommandJob) -> bool:
    """Whether this run may work on `job`: a queued job becomes running; a running one is taken over only
    when it has made no progress for STALE_AFTER (its worker died). A duplicate delivery while it runs, a
    finished job, or another run that claimed it between our read and this write: False."""
    now = timezone.now()
    if job.status == JobStatus.RUNNING:
        last_finished = job.targets.aggregate(last=Max("finished_at"))["last"]
        last_activity = max(filter(None, [job.started_at, last_finished]), default=now)
        if last_activity > now - STALE_AFTER:
            return False
    elif job.status != JobStatus.QUEUED:
        return False
    claimed = CommandJob.objects.filter(pk=job.pk, status=job.status, started_at=job.started_at).update(
        status=JobStatus.RUNNING, started_at=now
    )
    return claimed == 1


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
    job: CommandJob, station: ChargingStation, calls: list[list] | None
) -> tuple[bool, str]:
    if not calls:
        return False, f"Nothing to send to a station speaking {station.protocol or 'no protocol yet'}."
    details = []
    for action, payload in calls:
        command = await command_execute_async(
            station=station,
            action=action,
            request=payload,
            user=job.created_by,
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


def _refusals(response: dict) -> list[str]:
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
    *, organisation: Organisation, name: str, protocol: str, settings: list[dict]
) -> ConfigurationTemplate:
    if ConfigurationTemplate.objects.filter(organisation=organisation, name=name).exists():
        raise ValidationFailed(f"A template named {name!r} already exists.")
    return ConfigurationTemplate.objects.create(
        organisation=organisation, name=name, protocol=protocol, settings=settings
    )


def configuration_template_update(*, template: ConfigurationTemplate, data: Mapping) -> ConfigurationTemplate:
    for field in ("name", "settings"):
        if field in data:
            setattr(template, field, data[field])
    template.save(update_fields=[f for f in ("name", "settings") if f in data])
    return template
