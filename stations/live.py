"""Live station status for the portal: which channel-layer groups carry a station's events, which groups a
user's browser may join, and publishing an event.

Scoping is by group: a station's events go to its organisation's group and, when it is on a site, to that
site's group. Organisation-wide roles join their organisations' groups; a site host joins only the groups of
the sites they were granted; superusers join every organisation's group. A browser therefore never receives
an event about a station its user may not see.
"""

import asyncio
import logging

from channels.layers import get_channel_layer

from accounts.enums import Capability
from accounts.models import Organisation, User
from accounts.selectors import organisation_ids_with, site_host_site_ids

logger = logging.getLogger(__name__)

# A browser's event must never hold up the charger's answer: publishing is given this long, then dropped.
PUBLISH_TIMEOUT_S = 2.0


def organisation_group(organisation_id: int) -> str:
    return f"live.org.{organisation_id}"


def site_group(site_id: int) -> str:
    return f"live.site.{site_id}"


def station_groups(*, organisation_id: int, site_id: int | None) -> list[str]:
    groups = [organisation_group(organisation_id)]
    if site_id is not None:
        groups.append(site_group(site_id))
    return groups


def user_live_groups(*, user: User) -> list[str]:
    """The groups `user`'s browser may join (empty for an anonymous or role-less user)."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return [organisation_group(pk) for pk in Organisation.objects.values_list("pk", flat=True)]
    return [organisation_group(pk) for pk in organisation_ids_with(user=user, capability=Capability.VIEW)] + [
        site_group(pk) for pk in site_host_site_ids(user=user, capability=Capability.VIEW)
    ]


async def live_publish(*, organisation_id: int, site_id: int | None, event: dict) -> None:
    """Send `event` to the station's groups. Best effort: a channel layer that is down or slow loses the event
    (the page shows the truth on its next load) and never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "live.event", "event": event}
    for group in station_groups(organisation_id=organisation_id, site_id=site_id):
        try:
            await asyncio.wait_for(layer.group_send(group, message), timeout=PUBLISH_TIMEOUT_S)
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
