"""Pushes what chargers report to the portal's live status (cpms.portal.live), without delaying the charger.

Called after the report is committed; the publish runs as a background task so that the answer to the
charger never waits for the channel layer (Redis may be slow or down: RELIABILITY D32).
"""

import asyncio

from cpms.ocpp.chargepoint import StationContext
from cpms.ocpp.mappers import format_datetime
from cpms.portal.live import connection_event, live_publish, status_event
from stations.types import ConnectorStatusReport

# Running publishes, referenced so they are not garbage-collected before they finish.
_pending: set[asyncio.Task] = set()


def _publish_soon(station: StationContext, event: dict) -> None:
    task = asyncio.get_running_loop().create_task(
        live_publish(organisation_id=station.organisation_id, site_id=station.site_id, event=event)
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def status_reported(station: StationContext, report: ConnectorStatusReport) -> None:
    _publish_soon(
        station,
        status_event(
            identity=station.identity,
            evse_id=report.evse_id,
            connector_id=report.connector_id if report.evse_id is not None else None,
            status=report.status,
            at=format_datetime(report.occurred_at),
        ),
    )


def connection_changed(station: StationContext, *, connected: bool, at) -> None:
    _publish_soon(
        station, connection_event(identity=station.identity, connected=connected, at=format_datetime(at))
    )
