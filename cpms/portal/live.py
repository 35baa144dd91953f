"""Live station status for the portal: which channel-layer groups carry a station's events, which groups a
user's browser may join, and publishing an event.

Scoping is by group, and each event is published once (a Redis PUBLISH costs ~140 us of CPU): a station's
events go to its site's group, or, for a station not on a site, to its organisation's group. A site host joins
only the groups of the sites they were granted; organisation-wide roles join their organisations' groups and
the groups of every site of those organisations (as the socket opens: a site created later is joined at the
next page load); superusers join them all. A browser therefore never receives an event about a station its
user may not see.
"""

import asyncio
import logging

from channels.layers import get_channel_layer

from accounts.enums import Capability
from accounts.models import Organisation, User
from accounts.selectors import organisation_ids_with
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


async def live_publish(*, organisation_id: int, site_id: int | None, event: dict) -> None:
    """Send `event` to the station's group. Best effort: a channel layer that is down or slow loses the event
    (the page shows the truth on its next load) and never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    group = station_group(organisation_id=organisation_id, site_id=site_id)
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):  # no extra task, unlike wait_for
            await layer.group_send(group, {"type": "live.event", "event": event})
    except Exception:
        logger.warning("live status event for %s not delivered", group, exc_info=True)


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
