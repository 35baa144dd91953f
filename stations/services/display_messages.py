"""What a station's display shows: the payment URL of each EVSE (issue 18, ad-hoc charging), so that a
driver without the printed QR label finds the page where they see the price, pay and charge."""

from django.http import HttpRequest

from accounts.enums import Capability
from accounts.models import User
from cpms.errors import PermissionDenied, ValidationFailed
from cpms.ocpp_wire.display import set_display_message
from stations.enums import CommandSource
from stations.models import ChargingStation, Command, Evse
from stations.scope import user_can
from stations.selectors import evse_label, evse_public_url
from stations.services.commands import command_send, station_version

# The display message of EVSE n has id PAYMENT_URL_MESSAGE_ID + n, the same every time: sending again replaces
# the message the station holds (2.0.1 O01: a SetDisplayMessage with a known id replaces that message)
# instead of piling up copies in its limited message store. Far above the small ids an operator would pick.
PAYMENT_URL_MESSAGE_ID = 1_800_000


def station_payment_url_display(
    *,
    station: ChargingStation,
    user: User,
    request: HttpRequest | None = None,
    source: str = CommandSource.API,
    queue_for_s: float | None = None,
    timeout_s: float | None = None,
) -> list[Command]:
    """Send the station one SetDisplayMessage per EVSE (by EVSE number) showing that EVSE's public URL
    (stations.selectors.evse_public_url: PUBLIC_BASE_URL, else the host of `request`), without waiting for
    the answers. Returns the recorded commands in EVSE order (failed NotConnected for an offline station
    unless `queue_for_s` keeps them in the outbox).

    PermissionDenied unless `user` may command the station; ValidationFailed for a 1.6 station (no display
    messages), a station without EVSEs, or no absolute URL to show (no PUBLIC_BASE_URL and no request).
    Every call is built and checked before the first is sent: all or nothing is recorded.

    The message (OCPP 2.0.1 MessageInfoType), and why:
    - format: 2.1 QRCODE with the bare URL, so that the station draws the QR code; 2.0.1 has no QR format,
      so UTF8 text naming the EVSE and its URL. Never URI: that format tells the station to download the URI
      and display its content, i.e. render our payment page on its own screen.
    - priority InFront: ahead of the normal cycle, and InFront messages are cycled among themselves, so every
      EVSE's message is shown on a shared display. Not AlwaysFront: a newer AlwaysFront message replaces the
      older one (only the last EVSE's would remain) and it would hide the station's own messages.
    - state Idle: shown while the station is not charging, when a driver walks up to pay; during a session the
      display is the session's.
    """
    if not user_can(
        user=user,
        capability=Capability.COMMAND,
        organisation_id=station.organisation_id,
        site_id=station.site_id,
    ):
        raise PermissionDenied(f"You may not {Capability.COMMAND} station {station.identity!r}.")
    version = station_version(station)
    if version == "1.6":
        raise ValidationFailed(
            f"Station {station.identity!r} speaks OCPP 1.6, which has no display messages: print its QR "
            "labels instead (the site page in the portal)."
        )
    evses = list(Evse.objects.filter(station=station).select_related("station").order_by("evse_id"))
    if not evses:
        raise ValidationFailed(f"Station {station.identity!r} has reported no EVSEs yet: no URL to show.")
    calls = []
    for evse in evses:
        url = evse_public_url(evse, request)
        if not url.startswith(("https://", "http://")):
            raise ValidationFailed(
                "No absolute URL to show: set PUBLIC_BASE_URL (the address drivers reach the platform at)."
            )
        if version == "2.0.1":
            message_format, content = "UTF8", f"{evse_label(evse)}: pay and charge at {url}"
        else:
            message_format, content = "QRCODE", url
        calls.append(
            set_display_message(
                version,
                message_id=PAYMENT_URL_MESSAGE_ID + evse.evse_id,
                content=content,
                message_format=message_format,
                priority="InFront",
                state="Idle",
            )
        )
    return [
        command_send(
            station=station,
            call=call,
            requested_by=user,
            source=source,
            queue_for_s=queue_for_s,
            timeout_s=timeout_s,
            wait=False,
        )
        for call in calls
    ]
