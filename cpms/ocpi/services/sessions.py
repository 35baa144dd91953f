"""Roaming sessions as OCPI 2.2.1 Session objects (mod_sessions, we are the Sender) and their pushes.

A roaming session is a `ChargingSession` whose id token has an `OcpiToken` (docs/ocpi.md). The push sweep
(`sessions_push_changes`, every OCPI_PUSH_SWEEP_S) finds, in one query, the roaming sessions that changed
since they were last pushed and, per session under a lock on its `OcpiSession`:

- the first time: creates the `OcpiSession` (auth_method and authorization_reference from the oldest unused
  `OcpiAuthorization` of the token, else WHITELIST) and queues a PUT of the whole Session object to the
  partner's Sessions receiver, `/{country_code}/{party_id}/{session_id}` where country_code/party_id are
  OURS (OCPI 2.2.1 mod_sessions 2.2: the receiver URL names the CPO that owns the session);
- later: a PATCH with only the fields that changed plus `last_updated` (compared with `OcpiSession.pushed`,
  the whole object as last pushed); `charging_periods` in a PATCH are only the new ones, as the receiver
  appends them to those it has (mod_sessions 2.2.3), and a period is sent once it is final
  (`charging_periods`).

"Changed" is exact, without a clock cursor: `OcpiSession.pushed_at` holds the version pushed, the session's
`last_updated` = the later of `ChargingSession.updated_at` (bumped by every write that moves the meter, the
status or the end, including the batched meter-value ingest) and the CDR's creation (the final cost). A
session is due when that is later than `pushed_at`. Items of one session share the object key
`session:<pk>`, which the CDR uses too, so the partner gets PUT, PATCHes and then the CDR, in that order.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from billing.models import ChargeDetailRecord, SessionPricing
from billing.services.cdrs import BillingError, session_usage
from billing.tariff_json import tariff_load
from billing.tariffs import price_session, running_cost, usage_from_readings
from billing.types import PriceResult, SessionUsage, Tariff
from cpms.ocpi import ids
from cpms.ocpi.enums import Module, PartnerStatus
from cpms.ocpi.models import OcpiAuthorization, OcpiPartner, OcpiSession, OcpiToken
from cpms.ocpi.protocol import Page, format_datetime
from cpms.ocpi.services.outbox import outbox_enqueue
from sessions.enums import SessionStatus
from sessions.models import ChargingSession
from sessions.selectors import session_energy_readings

logger = logging.getLogger(__name__)

# Sessions started longer ago than this are no longer looked at by the sweep (keeps its query on the
# started_at index); a session is not expected to run this long.
SESSION_PUSH_DAYS = 30
SWEEP_BATCH = 200
# How far from a session's start an authorisation may have been given to be the session's (_authorization_take).
AUTHORIZATION_WINDOW = timedelta(minutes=15)

# Everything a Session (and a CDR) object reads, in one query.
SESSION_RELATED = (
    "station__site",
    "station__organisation",
    "evse",
    "connector",
    "ocpi__partner__party",
    "ocpi__token",
    "pricing",
    "cdr",
)

# OCPI numbers carry 4 decimals unless a field says otherwise (2.2.1 16.4): hours to 0.36 s.
_HOURS_PLACES = Decimal("0.0001")
# Charging periods are cut on this UTC grid (charging_periods).
PERIOD_GRID = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


# --- numbers (OCPI 2.2.1 16.1: JSON numbers) ---------------------------------------------------------------
def number(value: Decimal | int) -> float:
    """A Decimal as a JSON number. Amounts are rounded to the currency's minor unit and kWh to the Wh, so
    they have at most 15 significant digits and the float's shortest repr is the Decimal's exact text:
    a receiver that parses numbers as decimals reads back exactly our Decimal."""
    return float(value)


def kwh(wh: int) -> Decimal:
    return Decimal(wh) / 1000


def hours(seconds: Decimal) -> Decimal:
    return (seconds / 3600).quantize(_HOURS_PLACES)


def price(excl_vat: Decimal, incl_vat: Decimal) -> dict[str, float]:
    """OCPI Price."""
    return {"excl_vat": number(excl_vat), "incl_vat": number(incl_vat)}


def cdr_token(token: OcpiToken) -> dict[str, str]:
    """OCPI CdrToken: the token as its eMSP pushed it."""
    return {
        "country_code": token.country_code,
        "party_id": token.party_id,
        "uid": token.uid,
        "type": token.type,
        "contract_id": token.contract_id,
    }


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_US


def charging_periods(
    usage: SessionUsage, *, final_until: datetime | None = None, tariff_id: str | None = None
) -> list[dict[str, Any]]:
    """OCPI ChargingPeriods (mod_cdrs 4.4.6) of a session's usage (the usage billing prices).

    Periods are cut on a fixed UTC grid of PERIOD_GRID (quarter hours, which every time zone's hours and
    half hours fall on, so a tariff's time-of-day change starts a period, mod_cdrs 4.1 "a new Charging Period
    at every moment that has relevance for the total costs") and where charging stops or resumes. Energy is
    split inside a meter interval as billing splits it (constant power: floor(E * elapsed / duration) Wh
    delivered at each instant), so the ENERGY volumes are whole Wh and add up to the session's energy.
    With `final_until` (a session in progress: its last reading), only periods of grid slots that end by
    then are given: they never change again, which is what the Sessions receiver needs, since a PATCH
    appends charging_periods to those it has (mod_sessions 2.2.3)."""
    grid = PERIOD_GRID // _ONE_US
    pieces: list[list[Any]] = []  # [start µs, end µs, Wh, charging], merged within a slot and a state
    for period in usage.periods:
        start, end = _us(period.start), _us(period.end)
        cuts = [start, *range((start // grid + 1) * grid, end, grid), end]
        for a, b in pairwise(cuts):
            energy_wh = period.energy_wh * (b - start) // (end - start) - period.energy_wh * (a - start) // (
                end - start
            )
            last = pieces[-1] if pieces else None
            if last is not None and last[3] == period.charging and last[0] // grid == a // grid:
                last[1], last[2] = b, last[2] + energy_wh
            else:
                pieces.append([a, b, energy_wh, period.charging])
    limit = _us(final_until) if final_until is not None else None
    result = []
    for start, end, energy_wh, charging in pieces:
        if limit is not None and (start // grid + 1) * grid > limit:
            break
        item: dict[str, Any] = {
            "start_date_time": format_datetime(_EPOCH + timedelta(microseconds=start)),
            "dimensions": [
                {"type": "ENERGY", "volume": number(kwh(energy_wh))},
                {
                    "type": "TIME" if charging else "PARKING_TIME",
                    "volume": number(hours(Decimal(end - start) / 1_000_000)),
                },
            ],
        }
        if tariff_id is not None:
            item["tariff_id"] = tariff_id
        result.append(item)
    return result


def periods_appended(pushed: list[dict[str, Any]], periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The periods of `periods` after the last one the partner has (`pushed`)."""
    if not pushed:
        return periods
    last = pushed[-1]["start_date_time"]  # "YYYY-MM-DDTHH:MM:SSZ": sorts as it runs
    return [period for period in periods if period["start_date_time"] > last]


# --- the Session object -------------------------------------------------------------------------------------
def _related(instance: Any, name: str) -> Any:
    """A reverse one-to-one (select_related or not), or None when there is none."""
    try:
        return getattr(instance, name)
    except ObjectDoesNotExist:
        return None


def session_last_updated(session: ChargingSession) -> datetime:
    """The session's OCPI last_updated: its last write, or its CDR's creation (the final cost) if later."""
    cdr = _related(session, "cdr")
    return max(session.updated_at, cdr.created_at) if cdr is not None else session.updated_at


def _usage_so_far(session: ChargingSession) -> SessionUsage | None:
    """An active session's usage up to its last register reading (billing.services.cdrs.session_cost_so_far
    reads the same way), or None before the second reading."""
    if (
        session.meter_last_at is None
        or session.meter_last_wh is None
        or session.meter_last_at <= session.started_at
    ):
        return None
    start_wh = session.meter_start_wh if session.meter_start_wh is not None else session.meter_last_wh
    readings = [(session.started_at, start_wh)]
    readings += [
        (at, wh)
        for at, wh in session_energy_readings(session=session)
        if session.started_at < at < session.meter_last_at
    ]
    readings.append((session.meter_last_at, session.meter_last_wh))
    try:
        return usage_from_readings(
            session.started_at,
            session.meter_last_at,
            readings,
            idle_power_w=Decimal(settings.BILLING_IDLE_POWER_W),
        )
    except (TypeError, ValueError):
        return None  # a register that went backwards: held for review, nothing to show


@dataclass(frozen=True, slots=True)
class _Figures:
    usage: SessionUsage | None
    cost: PriceResult | None
    currency: str


def _figures(session: ChargingSession, cdr: ChargeDetailRecord | None) -> _Figures:
    """The session's usage so far, its cost (None: no tariff, not priceable, or billed: the CDR says) and
    currency."""
    pricing: SessionPricing | None = _related(session, "pricing")
    tariff = tariff_load(pricing.tariff) if pricing is not None and pricing.tariff is not None else None
    currency = (
        cdr.currency
        if cdr is not None
        else tariff.currency
        if tariff
        else session.station.organisation.currency
    )
    if session.status == SessionStatus.COMPLETED and session.stopped_at is not None:
        try:
            usage = session_usage(session)
        except BillingError:
            return _Figures(None, None, currency)
        if cdr is not None or tariff is None or session.held_for_review:
            return _Figures(usage, None, currency)
        # Not billed yet: the price the CDR will have (same engine, usage and snapshot as session_bill).
        return _Figures(usage, _priced(price_session, tariff, usage), currency)
    so_far = _usage_so_far(session)
    if so_far is None or tariff is None:
        return _Figures(so_far, None, currency)
    return _Figures(so_far, _priced(running_cost, tariff, so_far), currency)


def _priced(
    engine: Callable[[Tariff, SessionUsage], PriceResult], tariff: Tariff, usage: SessionUsage
) -> PriceResult | None:
    try:
        return engine(tariff, usage)
    except ValueError:  # UnsupportedTariffError: billing holds such a session; we show no cost
        return None


def _session_kwh(session: ChargingSession) -> Decimal:
    if session.energy_wh is not None:
        return kwh(session.energy_wh)
    if session.meter_last_wh is not None and session.meter_start_wh is not None:
        return kwh(max(session.meter_last_wh - session.meter_start_wh, 0))
    return Decimal(0)


def session_object(*, session: ChargingSession, ocpi: OcpiSession) -> dict[str, Any]:
    """The OCPI 2.2.1 Session object of a roaming session (mod_sessions 4.1). `session` is loaded with
    SESSION_RELATED."""
    party = ocpi.partner.party
    station = session.station
    cdr: ChargeDetailRecord | None = _related(session, "cdr")
    stopped_at = session.stopped_at if session.status == SessionStatus.COMPLETED else None
    completed = stopped_at is not None
    figures = _figures(session, cdr)
    data: dict[str, Any] = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": str(session.pk),
        "start_date_time": format_datetime(session.started_at),
    }
    if stopped_at is not None:
        data["end_date_time"] = format_datetime(stopped_at)
    data["kwh"] = number(kwh(cdr.energy_wh) if cdr is not None else _session_kwh(session))
    data["cdr_token"] = cdr_token(ocpi.token)
    data["auth_method"] = ocpi.auth_method
    if ocpi.authorization_reference:
        data["authorization_reference"] = ocpi.authorization_reference
    data["location_id"] = ids.location_id(station.site_id) if station.site_id else ""
    data["evse_uid"] = ids.evse_uid(session.evse_id) if session.evse_id else ""
    data["connector_id"] = str(session.connector.connector_id) if session.connector else ""
    if station.meter_serial_number:
        data["meter_id"] = station.meter_serial_number
    data["currency"] = figures.currency
    if figures.usage is not None:
        periods = charging_periods(figures.usage, final_until=None if completed else figures.usage.stopped_at)
        if periods:
            data["charging_periods"] = periods
    if cdr is not None:
        data["total_cost"] = price(cdr.subtotal, cdr.total)
    elif figures.cost is not None:
        data["total_cost"] = price(figures.cost.subtotal, figures.cost.total)
    data["status"] = "COMPLETED" if completed else "ACTIVE"
    data["last_updated"] = format_datetime(session_last_updated(session))
    return data


# --- pushes -------------------------------------------------------------------------------------------------
def session_object_key(session_id: int) -> str:
    """The outbox key of everything about one session (its PUT, PATCHes, CDR and credit CDRs)."""
    return f"session:{session_id}"


def _authorization_take(session: ChargingSession, token: OcpiToken) -> OcpiAuthorization | None:
    """The authorisation a session of this token opened with, marked used: the oldest unused one of the token
    (on the session's site, or on none) given within AUTHORIZATION_WINDOW of the session's start, so those
    given before it come first. Within, not only before: a 2.0.1 charger may start the
    transaction when the cable is plugged in (TxStartPoint EVConnected), and the driver's card (real-time
    authorisation) or the app's START_SESSION comes after. Bounded, so that an authorisation never followed
    by a session (a driver who walked away) does not name a session hours later. Judged on our clock
    (start_received_at), the one the authorisation was written with: a charger's clock may be off."""
    opened = session.start_received_at
    candidate = (
        OcpiAuthorization.objects.select_for_update(skip_locked=True)
        .filter(
            token=token,
            used_at__isnull=True,
            created_at__gte=opened - AUTHORIZATION_WINDOW,
            created_at__lte=opened + AUTHORIZATION_WINDOW,
        )
        .filter(Q(site__isnull=True) | Q(site_id=session.station.site_id))
        .order_by("created_at", "pk")
        .first()
    )
    if candidate is None:
        return None
    OcpiAuthorization.objects.filter(pk=candidate.pk, used_at__isnull=True).update(used_at=timezone.now())
    return candidate


def _ocpi_session_create(session: ChargingSession) -> OcpiSession | None:
    """The session's OcpiSession, created now; None when another sweep created it at the same moment."""
    token: OcpiToken = session.id_token.ocpi  # type: ignore[union-attr]
    try:
        with transaction.atomic():
            authorization = _authorization_take(session, token)
            ocpi = OcpiSession.objects.create(
                session=session,
                partner=token.partner,
                token=token,
                auth_method=authorization.auth_method if authorization else "WHITELIST",
                authorization_reference=authorization.authorization_reference if authorization else "",
            )
    except IntegrityError:
        return None
    return OcpiSession.objects.select_related("partner__party", "token").get(pk=ocpi.pk)


def session_sync(*, session: ChargingSession) -> tuple[OcpiSession | None, int]:
    """Brings the partner's copy of a roaming session up to date: creates its OcpiSession and queues the PUT,
    or queues a PATCH of what changed. Runs in the caller's transaction and leaves the OcpiSession row
    locked until it ends. Returns (the OcpiSession, items queued); (None, 0) when another worker holds the
    session (it does the same work)."""
    stamp = session_last_updated(session)
    ocpi = (
        OcpiSession.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("partner__party", "token")
        .filter(session_id=session.pk)
        .first()
    )
    if ocpi is None:
        if OcpiSession.objects.filter(session_id=session.pk).exists():
            return None, 0  # locked by another sweep
        ocpi = _ocpi_session_create(session)
        if ocpi is None:
            return None, 0
        OcpiSession.objects.select_for_update().filter(pk=ocpi.pk).first()
    elif ocpi.pushed is not None and ocpi.pushed_at is not None and ocpi.pushed_at >= stamp:
        return ocpi, 0
    data = session_object(session=session, ocpi=ocpi)
    party = ocpi.partner.party
    queued = 0
    if ocpi.pushed is None:
        body: dict[str, Any] | None = data
        method = "PUT"
    else:
        changed = {
            key: value
            for key, value in data.items()
            if key not in ("last_updated", "charging_periods") and ocpi.pushed.get(key) != value
        }
        appended = periods_appended(
            ocpi.pushed.get("charging_periods") or [], data.get("charging_periods") or []
        )
        if appended:
            changed["charging_periods"] = appended
        body = {**changed, "last_updated": data["last_updated"]} if changed else None
        method = "PATCH"
    if body is not None:
        outbox_enqueue(
            partner=ocpi.partner,
            module=Module.SESSIONS,
            object_key=session_object_key(session.pk),
            method=method,
            path=f"/{party.country_code}/{party.party_id}/{session.pk}",
            body=body,
            to_party=(ocpi.token.country_code, ocpi.token.party_id),
        )
        queued = 1
    ocpi.pushed = data
    ocpi.pushed_at = stamp
    ocpi.save(update_fields=["pushed", "pushed_at"])
    return ocpi, queued


def _sessions_due(limit: int) -> QuerySet[ChargingSession]:
    since = timezone.now() - timedelta(days=SESSION_PUSH_DAYS)
    return (
        ChargingSession.objects.filter(
            started_at__gte=since, id_token__ocpi__partner__status=PartnerStatus.REGISTERED
        )
        .filter(
            Q(ocpi__isnull=True)
            | Q(ocpi__pushed_at__isnull=True)
            | Q(updated_at__gt=F("ocpi__pushed_at"))
            | Q(cdr__created_at__gt=F("ocpi__pushed_at"))
        )
        .select_related(*SESSION_RELATED, "id_token__ocpi__partner__party")
        .order_by("updated_at", "pk")[:limit]
    )


def sessions_push_changes(*, limit: int = SWEEP_BATCH) -> int:
    """The push sweep of roaming sessions (module docstring): at most `limit` sessions per run, the least
    recently changed first; returns how many items it queued. Idempotent: a run right after another queues
    nothing."""
    queued = 0
    for session in _sessions_due(limit):
        try:
            with transaction.atomic():
                queued += session_sync(session=session)[1]
        except Exception:  # one session's failure must not stop the others' pushes
            logger.exception("OCPI session push of session %s failed", session.pk)
    return queued


# --- the Sender interface -----------------------------------------------------------------------------------
def _partner_sessions(partner: OcpiPartner, party: tuple[str, str] | None) -> QuerySet[OcpiSession]:
    sessions = OcpiSession.objects.filter(partner=partner)
    if party is not None:
        sessions = sessions.filter(token__country_code=party[0], token__party_id=party[1])
    return sessions


def session_list(
    *, partner: OcpiPartner, party: tuple[str, str] | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """The partner's roaming sessions (through a hub, only those of `party`, the one it speaks for), by
    last_updated, `date_from` inclusive and `date_to` exclusive (mod_sessions 2.1.1). Returns (this page's
    Session objects, the count of all). A session whose latest version was pushed is served as pushed
    (nothing to compute); others are built now."""
    sessions = _partner_sessions(partner, party).annotate(
        last_updated=Greatest(
            "session__updated_at", Coalesce("session__cdr__created_at", "session__updated_at")
        )
    )
    if page.date_from is not None:
        sessions = sessions.filter(last_updated__gte=page.date_from)
    if page.date_to is not None:
        sessions = sessions.filter(last_updated__lt=page.date_to)
    total = sessions.count()
    rows = list(
        sessions.select_related("partner__party", "token").order_by("last_updated", "pk")[
            page.offset : page.offset + page.limit
        ]
    )
    stale = [row.session_id for row in rows if row.pushed is None or row.pushed_at != row.last_updated]
    loaded = ChargingSession.objects.select_related(*SESSION_RELATED).in_bulk(stale)
    objects: list[dict[str, Any]] = []
    for row in rows:
        if row.session_id in loaded:
            objects.append(session_object(session=loaded[row.session_id], ocpi=row))
        elif isinstance(row.pushed, dict):  # not stale: pushed as it is now
            objects.append(row.pushed)
    return objects, total


@dataclass(frozen=True, slots=True)
class PreferencesAnswer:
    result: str  # OCPI ChargingPreferencesResponse


def session_charging_preferences(
    *, partner: OcpiPartner, party: tuple[str, str] | None, session_id: str
) -> PreferencesAnswer | None:
    """PUT .../sessions/{id}/charging_preferences (mod_sessions 2.1.2). None when the session is not one of
    this partner's. We do not plan charging around a driver's preferences (our load management shares a
    site's capacity, it takes no per-session targets), so an active session is answered NO_SMART_CHARGING
    ("Smart Charging is not supported by this Session") and nothing is stored; an ended one NOT_POSSIBLE."""
    if not session_id.isdigit():
        return None
    ocpi = (
        _partner_sessions(partner, party).select_related("session").filter(session_id=int(session_id)).first()
    )
    if ocpi is None:
        return None
    if ocpi.session.status != SessionStatus.ACTIVE:
        return PreferencesAnswer("NOT_POSSIBLE")
    return PreferencesAnswer("NO_SMART_CHARGING")
