"""Celery jobs of the OCPI commands and charging profiles modules: each sends one partner's request to the
charger, waits for its answer and queues the asynchronous result to the partner's response_url; a sweep
queues again what a broker outage lost."""

from celery import shared_task

from cpms.ocpi.enums import Module
from cpms.ocpi.services import charging_profiles, commands


@shared_task(acks_late=True, ignore_result=True)
def command_execute(ocpi_command_id: int) -> None:
    """Idempotent: a command already taken (delivered twice) is not sent again."""
    commands.command_execute(ocpi_command_id=ocpi_command_id)


@shared_task(acks_late=True, ignore_result=True)
def charging_profile_execute(ocpi_command_id: int) -> None:
    """Idempotent like command_execute."""
    charging_profiles.charging_profile_execute(ocpi_command_id=ocpi_command_id)


@shared_task(acks_late=True, ignore_result=True)
def commands_sweep() -> None:
    """Commands and profile requests stored but never taken are queued again (periodic)."""
    for pk in commands.commands_due(module=Module.COMMANDS):
        command_execute.delay(pk)
    for pk in commands.commands_due(module=Module.CHARGING_PROFILES):
        charging_profile_execute.delay(pk)
