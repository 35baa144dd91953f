"""Handlers the versions share: boot, status, heartbeat, and notifications that are recorded and answered
with a fixed result. Version differences come in as the version's mapper; what follows a report is in
cpms.ocpp.effects."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cpms.ocpp import effects, seen
from cpms.ocpp.batching import GroupCommit
from cpms.ocpp.chargepoint import Handler, Request, run_db
from cpms.ocpp.mappers import format_datetime, parse_datetime, text
from sessions.services.ingest import MeterValuesItem, meter_values_record_many, transaction_events_record_many
from sessions.types import TransactionEventRequest, TransactionEventResult
from stations.services.ocpp import (
    connector_statuses_update,
    station_event_record,
    stations_boot,
)
from stations.services.security_events import security_event_report
from stations.types import BootResult, ConnectorStatusReport, IncidentOpened, StationInfo, StatusReported

# MeterValues and TransactionEvents of every connection in this process, written in shared transactions.
meter_values_writer: GroupCommit[MeterValuesItem, int | None] = GroupCommit(meter_values_record_many)
transaction_events_writer: GroupCommit[tuple[TransactionEventRequest, int], TransactionEventResult] = (
    GroupCommit(transaction_events_record_many)
)
# BootNotifications and StatusNotifications likewise (a reconnect storm brings a boot and a status per
# connector from every charger): each item is the single-item service's keyword arguments, and gets what
# that service returns.
boot_writer: GroupCommit[dict[str, Any], BootResult] = GroupCommit(stations_boot)
status_writer: GroupCommit[dict[str, Any], tuple[StatusReported | IncidentOpened, ...]] = GroupCommit(
    connector_statuses_update
)


def boot_notification(station_info: Callable[[dict], StationInfo]) -> Handler:
    """BootNotification in either version: `station_info` is the version's mapper."""

    async def handler(req: Request) -> dict:
        result = await boot_writer.submit(
            {
                "station_id": req.station.station_id,
                "info": station_info(req.payload),
                "received_at": req.received_at,
            }
        )
        req.station.registration_status = result.status
        await effects.apply(result.outcomes, station=req.station, version=req.version)
        return {
            "status": result.status,
            "currentTime": format_datetime(result.current_time),
            "interval": result.interval_s,
        }

    return handler


def status_notification(status_report: Callable[[dict, datetime], ConnectorStatusReport]) -> Handler:
    """StatusNotification in either version: `status_report` is the version's mapper."""

    async def handler(req: Request) -> dict:
        report = status_report(req.payload, req.received_at)
        outcomes = await status_writer.submit({"station_id": req.station.station_id, "report": report})
        await effects.apply(outcomes, station=req.station, version=req.version)
        return {}

    return handler


async def heartbeat(req: Request) -> dict:
    await seen.mark(req.station.station_id, req.received_at)
    return {"currentTime": format_datetime(req.received_at)}


def recorded(
    kind: str,
    answer: dict | None = None,
    *,
    status_field: str | None = None,
    status_key: str = "status",
    detail: Callable[[dict], dict] = dict,
) -> Handler:
    """A handler that keeps the notification as a StationEvent (optionally mirroring its status into
    `status_field` on the station) and answers `answer`."""
    response = answer or {}

    async def handler(req: Request) -> dict:
        timestamp = req.payload.get("timestamp") or req.payload.get("generatedAt")
        await run_db(
            station_event_record,
            station_id=req.station.station_id,
            kind=kind,
            detail=detail(req.payload),
            occurred_at=parse_datetime(timestamp, "timestamp") if timestamp else req.received_at,
            received_at=req.received_at,
            status_field=status_field,
            status=str(req.payload.get(status_key, "")),
        )
        return dict(response)

    handler.__name__ = f"record_{kind}"
    return handler


async def security_event_notification(req: Request) -> dict:
    """SecurityEventNotification (1.6 security whitepaper, 2.0.1 A04): into the security log with its
    severity; a critical one opens an incident whose alert is due (stations/services/security_events.py)."""
    outcomes = await run_db(
        security_event_report,
        station_id=req.station.station_id,
        version=req.version,
        event_type=str(req.payload["type"]),
        timestamp=str(req.payload["timestamp"]),
        occurred_at=parse_datetime(req.payload["timestamp"], "timestamp"),
        tech_info=text(req.payload.get("techInfo"), 255),
        received_at=req.received_at,
    )
    await effects.apply(outcomes, station=req.station, version=req.version)
    return {}
