"""Waitlists at the edge: a connector that reports Available may be the one the next driver in a site's queue
is waiting for. The check (one indexed query) and the site's advance are started in the background once the
status is committed, so the charger's answer waits for neither the database nor the broker; the periodic
`waitlists_advance` catches up if the publish is lost."""

import asyncio

from cpms.ocpp import task_queue
from cpms.ocpp.chargepoint import Handler, Request, run_db
from cpms.ocpp.common import status_notification as plain_status_notification
from sessions.selectors import waitlist_site_for_station
from sessions.tasks import waitlist_advance_site
from stations.enums import ConnectorStatus

# Running checks, referenced so they are not garbage-collected before they finish.
_pending: set[asyncio.Task] = set()


async def connector_available(station_id: int) -> None:
    """Queue the advance of the station's site, if someone waits there (one indexed query, after the status
    was committed)."""
    site_id = await run_db(waitlist_site_for_station, station_id=station_id)
    if site_id is not None:
        task_queue.submit(waitlist_advance_site, site_id)


def status_notification(status_report) -> Handler:
    """StatusNotification as `cpms.ocpp.common.status_notification` handles it, then, when the new status
    is Available, `connector_available`."""
    handler = plain_status_notification(status_report)

    async def with_waitlist(req: Request) -> dict:
        answer = await handler(req)
        if status_report(req.payload, req.received_at).status == ConnectorStatus.AVAILABLE:
            task = asyncio.get_running_loop().create_task(connector_available(req.station.station_id))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
        return answer

    return with_waitlist
