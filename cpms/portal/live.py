"""Live station status for the portal: which channel-layer groups carry a station's events, which groups a
user's browser may join, and publishing an event.

Scoping is by group, and events are published in batches (a Redis PUBLISH costs ~140 us of CPU, and a storm of
thousands of boots and statuses made a publish per event queue behind the layer until they timed out): each web
process gathers a group's events for LIVE_BATCH_S and sends them as one message, which the browser's consumer
unpacks (cpms/portal/consumers.py). A station's events go to its site's group, or, for a station not on a site, to its organisation's group. A site host joins
only the groups of the sites they were granted; organisation-wide roles join their organisations' groups and
the groups of every site of those organisations (as the socket opens: a site created later is joined at the
next page load); superusers join them all. A browser therefore never receives an event about a station its
user may not see.
"""

import asyncio
import logging

from channels.layers import get_channel_layer
from django.conf import settings

from accounts.enums import Capability
from accounts.models import Organisation, User
from accounts.selectors import organisation_ids_with
from cpms.flushing import PeriodicFlush
from stations.models import Site
from stations.scope import site_host_site_ids

logger = logging.getLogger(__name__)

# A browser's event must never hold up the charger's answer: publishing is given this long, then dropped.
PUBLISH_TIMEOUT_S = 2.0


def organisation_group(organisation_id: int) -> str:
    return f"live.org.{organisation_id}"


def site_group(site_id: int) -> str:
    return f"live.site.{site_id}"


def station_group(*, organisation_id: int, site_id: int | None) -> str:
    return organisation_group(organisation_id) if site_id is None else site_group(site_id)


def user_live_groups(*, user: User) -> list[str]:
    """The groups `user`'s browser may join (empty for an anonymous or role-less user)."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        organisation_ids = list(Organisation.objects.order_by("pk").values_list("pk", flat=True))
    else:
        organisation_ids = sorted(organisation_ids_with(user=user, capability=Capability.VIEW))
    site_ids = set(Site.objects.filter(organisation_id__in=organisation_ids).values_list("pk", flat=True))
    if not user.is_superuser:
        site_ids.update(site_host_site_ids(user=user, capability=Capability.VIEW))
    return [organisation_group(pk) for pk in organisation_ids] + [site_group(pk) for pk in sorted(site_ids)]


# The events gathered in this process per group (sent by _flusher, below).
_batches: dict[str, list[dict]] = {}
# A group whose events are not being sent keeps at most this many (the newest); the page's next load shows the
# truth anyway.
MAX_BATCH = 1000


async def live_publish(*, organisation_id: int, site_id: int | None, event: dict) -> None:
    """Queue `event` for the station's group; sent within LIVE_BATCH_S with the group's other events (at once
    when it is 0). Best effort: a channel layer that is down or slow loses the batch (the page shows the truth
    on its next load) and this never raises."""
    group = station_group(organisation_id=organisation_id, site_id=site_id)
    if settings.LIVE_BATCH_S <= 0:
        await _send(group, [event])
        return
    batch = _batches.setdefault(group, [])
    batch.append(event)
    if len(batch) > MAX_BATCH:
        del batch[: len(batch) - MAX_BATCH]
    _flusher.wake()


async def live_flush() -> None:
    """Send every group's gathered events, one message per group."""
    global _batches
    batches, _batches = _batches, {}
    for group, events in batches.items():
        await _send(group, events)


async def _send(group: str, events: list[dict]) -> None:
    layer = get_channel_layer()
    if layer is None or not events:
        return
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):  # no extra task, unlike wait_for
            await layer.group_send(group, {"type": "live.events", "events": events})
    except TimeoutError:
        # A busy layer: expected in a storm, no traceback to read.
        logger.warning(
            "%d live status event(s) for %s not delivered in %s s", len(events), group, PUBLISH_TIMEOUT_S
        )
    except Exception:
        logger.warning("%d live status event(s) for %s not delivered", len(events), group, exc_info=True)


_flusher = PeriodicFlush(live_flush, pending=lambda: bool(_batches), interval_s=lambda: settings.LIVE_BATCH_S)


def status_event(
    *, identity: str, evse_id: int | None, connector_id: int | None, status: str, at: str
) -> dict:
    return {
        "type": "status",
        "identity": identity,
        "evse_id": evse_id or 0,
        "connector_id": connector_id or 0,
        "status": status,
        "at": at,
    }


def connection_event(*, identity: str, connected: bool, at: str) -> dict:
    return {"type": "connection", "identity": identity, "connected": connected, "at": at}
