"""Tariff choice, the session snapshot, CDRs (exact figures), their immutability, credits and the billing jobs."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from billing.models import CdrCredit, CdrLine, ChargeDetailRecord, ImmutableRecordError, SessionPricing
from billing.services.cdrs import cdr_credit_create, session_bill, session_cost_so_far, sessions_to_bill
from billing.services.energy_prices import EnergyPriceInput, site_energy_price_create
from billing.services.tariffs import (
    TariffVersionInput,
    session_pricing_snapshot,
    tariff_assign,
    tariff_create,
    tariff_resolve,
    tariff_version_create,
)
from billing.tasks import sessions_bill_pending
from cpms.errors import Conflict, ValidationFailed
from sessions.models import MeterValue, SessionAnomaly
from tests.factories import ChargingSessionFactory, ConnectorFactory, EvseFactory, IdTokenFactory

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
# Tuesday 2026-03-10, 17:00 UTC = 18:00 in Berlin (CET, UTC+1).
T0 = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)


def energy(price: str, step: int = 1) -> dict:
    return {"price_components": [{"type": "ENERGY", "price": price, "step_size": step}]}


def make_tariff(org, name: str, elements: list, *, valid_from=EPOCH, tax="0.19", **fields):
    tariff = tariff_create(organisation=org, name=name)
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=valid_from, currency="EUR", tax_rate=Decimal(tax), elements=elements, **fields
        ),
    )
    return tariff


def completed_session(station, *, readings: list[tuple[int, int]], token=None, started_at=T0):
    """A completed session with register readings [(minutes after start, Wh)]: first = start, last = stop."""
    evse = EvseFactory(station=station, evse_id=1)
    connector = ConnectorFactory(evse=evse, connector_id=2)
    stop_minutes, stop_wh = readings[-1]
    session = ChargingSessionFactory(
        station=station,
        evse=evse,
        connector=connector,
        id_token=token,
        id_tag=token.value if token else "",
        started_at=started_at,
        stopped_at=started_at + timedelta(minutes=stop_minutes),
        meter_start_wh=readings[0][1],
        meter_stop_wh=stop_wh,
        energy_wh=stop_wh - readings[0][1],
        status="completed",
    )
    MeterValue.objects.bulk_create(
        MeterValue(
            station=station,
            session=session,
            timestamp=started_at + timedelta(minutes=minutes),
            value=Decimal(wh),
            unit="Wh",
            received_at=started_at,
        )
        for minutes, wh in readings
    )
    return session


# --- which tariff ---------------------------------------------------------------------------------


def test_precedence_token_then_group_then_station_site_organisation(world):
    org, site, station = world.org_a, world.site_a1, world.station_a1
    group = IdTokenFactory(organisation=org, value="MEMBERS")
    member = IdTokenFactory(organisation=org, value="M-1", group=group)
    vip = IdTokenFactory(organisation=org, value="VIP", group=group)
    stranger = IdTokenFactory(organisation=org, value="AD-HOC")
    names = ["org", "site", "station", "group", "group-at-site", "vip"]
    tariffs = {name: make_tariff(org, name, [energy("0.10")]) for name in names}
    tariff_assign(tariff=tariffs["org"])
    tariff_assign(tariff=tariffs["site"], site=site)
    tariff_assign(tariff=tariffs["station"], station=station)
    tariff_assign(tariff=tariffs["group"], id_token_group=group)
    tariff_assign(tariff=tariffs["group-at-site"], id_token_group=group, site=world.site_a2)
    tariff_assign(tariff=tariffs["vip"], id_token_group=vip)

    def chosen(token, station_obj=station):
        resolved = tariff_resolve(
            organisation_id=org.pk,
            site_id=station_obj.site_id,
            station_id=station_obj.pk,
            token=token,
            at=T0,
        )
        return resolved.version.tariff.name, resolved.scope_key

    assert chosen(vip) == ("vip", f"token:{vip.pk}")
    assert chosen(member) == ("group", f"token:{group.pk}")
    assert chosen(member, world.station_a2) == ("group-at-site", f"token:{group.pk}/site:{world.site_a2.pk}")
    assert chosen(stranger) == ("station", f"station:{station.pk}")
    assert chosen(None) == ("station", f"station:{station.pk}")
    assert chosen(None, world.station_a2) == ("org", "organisation")


def test_a_tariff_without_a_version_in_force_gives_way_to_the_next_level(world):
    later = make_tariff(
        world.org_a, "from-2027", [energy("0.50")], valid_from=datetime(2027, 1, 1, tzinfo=UTC)
    )
    ended = make_tariff(world.org_a, "ended", [energy("0.40")], valid_until=datetime(2026, 3, 1, tzinfo=UTC))
    base = make_tariff(world.org_a, "base", [energy("0.30")])
    tariff_assign(tariff=later, station=world.station_a1)
    tariff_assign(tariff=ended, site=world.site_a1)
    tariff_assign(tariff=base)
    resolved = tariff_resolve(
        organisation_id=world.org_a.pk,
        site_id=world.site_a1.pk,
        station_id=world.station_a1.pk,
        token=None,
        at=T0,
    )
    assert (resolved.version.tariff.name, resolved.scope_key) == ("base", "organisation")


def test_the_version_in_force_is_the_latest_started(world):
    tariff = make_tariff(world.org_a, "t", [energy("0.30")])
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=T0 - timedelta(days=1),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[energy("0.35")],
        ),
    )
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=T0 + timedelta(days=1),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[energy("0.40")],
        ),
    )
    tariff_assign(tariff=tariff)
    resolved = tariff_resolve(
        organisation_id=world.org_a.pk,
        site_id=world.site_a1.pk,
        station_id=world.station_a1.pk,
        token=None,
        at=T0,
    )
    assert (resolved.version.version, resolved.version.elements) == (2, [energy("0.35")])


def test_assigning_across_organisations_is_refused(world):
    tariff = make_tariff(world.org_a, "t", [energy("0.30")])
    with pytest.raises(ValidationFailed, match="site: not in the tariff's organisation"):
        tariff_assign(tariff=tariff, site=world.site_b1)


def test_an_invalid_version_is_refused_with_the_field_path(world):
    tariff = tariff_create(organisation=world.org_a, name="bad")
    with pytest.raises(ValidationFailed, match=r"elements\[0\]\.price_components\[0\]\.price"):
        tariff_version_create(
            tariff=tariff,
            data=TariffVersionInput(
                valid_from=EPOCH,
                currency="EUR",
                tax_rate=Decimal("0.19"),
                elements=[{"price_components": [{"type": "ENERGY", "price": "abc"}]}],
            ),
        )


# --- the snapshot and the CDR -----------------------------------------------------------------------


def test_a_session_is_priced_with_the_tariff_snapshotted_at_its_start(world):
    tariff = make_tariff(
        world.org_a,
        "standard",
        [{"price_components": [{"type": "FLAT", "price": "1.00"}]}, energy("0.30")],
    )
    tariff_assign(tariff=tariff, site=world.site_a1)
    session = completed_session(world.station_a1, readings=[(0, 1_000), (30, 7_000), (60, 12_500)])
    snapshot = session_pricing_snapshot(session_id=session.pk)
    # A price rise that applies to sessions started earlier changes nothing for this one.
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=EPOCH + timedelta(days=1),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[energy("9.99")],
        ),
    )
    assert session_pricing_snapshot(session_id=session.pk) == snapshot

    result = session_bill(session_id=session.pk)

    # By hand: FLAT 1.00; ENERGY 11.5 kWh x 0.30 = 3.45; subtotal 4.45; tax 19 % = 0.8455 -> 0.85; total 5.30.
    cdr = result.cdr
    assert result.outcome == "billed"
    assert (cdr.currency, cdr.flat_amount, cdr.energy_amount, cdr.subtotal, cdr.tax, cdr.total) == (
        "EUR",
        Decimal("1.00"),
        Decimal("3.45"),
        Decimal("4.45"),
        Decimal("0.85"),
        Decimal("5.30"),
    )
    assert (cdr.energy_wh, cdr.charging_s, cdr.parking_s, cdr.tariff_label) == (
        11_500,
        Decimal(3600),
        Decimal(0),
        "standard v1",
    )
    assert (cdr.station_identity, cdr.evse_number, cdr.connector_number, cdr.time_zone) == (
        "A1-CP1",
        1,
        2,
        "Europe/Berlin",
    )
    assert [(line.dimension, line.quantity, line.unit_price, line.amount) for line in cdr.lines.all()] == [
        ("FLAT", Decimal(1), Decimal("1.00"), Decimal("1.00")),
        ("ENERGY", Decimal("11.5"), Decimal("0.30"), Decimal("3.45")),
    ]
    assert cdr.tariff_version_id == snapshot.tariff_version_id


def test_billing_twice_changes_nothing(world):
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.30")]))
    session = completed_session(world.station_a1, readings=[(0, 0), (60, 10_000)])
    first = session_bill(session_id=session.pk)
    second = session_bill(session_id=session.pk)
    assert (first.outcome, second.outcome, second.cdr.pk) == ("billed", "exists", first.cdr.pk)
    assert ChargeDetailRecord.objects.count() == 1
    assert CdrLine.objects.count() == 1


def test_the_sweep_bills_what_the_session_end_job_missed_and_only_once(world):
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.30")]))
    session = completed_session(world.station_a1, readings=[(0, 0), (60, 10_000)], started_at=_recent())
    assert sessions_to_bill() == [session.pk]
    assert sessions_bill_pending() == 1
    assert sessions_bill_pending() == 0
    assert sessions_to_bill() == []
    assert ChargeDetailRecord.objects.get().total == Decimal("3.57")  # 10 kWh x 0.30 = 3.00 + 19 % = 3.57


def _recent():
    from django.utils import timezone

    return timezone.now().replace(microsecond=0) - timedelta(hours=2)


def test_a_session_held_for_review_is_not_billed(world):
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.30")]))
    session = completed_session(world.station_a1, readings=[(0, 5_000), (60, 4_000)], started_at=_recent())
    session.flags = ["meter_backwards"]
    session.held_for_review = True
    session.save()
    assert session_bill(session_id=session.pk).outcome == "held"
    assert sessions_to_bill() == []
    assert not ChargeDetailRecord.objects.exists()


def test_a_session_that_cannot_be_priced_is_held_with_an_anomaly(world):
    # A register that goes backwards inside the session, not flagged at ingest (a reading that came late).
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.30")]))
    session = completed_session(
        world.station_a1, readings=[(0, 1_000), (20, 6_000), (40, 5_000), (60, 7_000)]
    )
    assert session_bill(session_id=session.pk).outcome == "held"
    session.refresh_from_db()
    assert (session.held_for_review, session.flags) == (True, ["billing_error"])
    anomaly = SessionAnomaly.objects.get(session=session)
    assert anomaly.kind == "billing_error" and "went backwards" in anomaly.detail["error"]
    assert session_bill(session_id=session.pk).outcome == "held"
    assert SessionAnomaly.objects.filter(session=session).count() == 1
    assert not ChargeDetailRecord.objects.exists()


def test_a_session_without_a_tariff_gets_a_free_cdr_in_the_organisation_currency(world):
    world.org_a.currency = "CHF"
    world.org_a.save()
    session = completed_session(world.station_a1, readings=[(0, 0), (30, 5_000), (45, 5_000)])
    cdr = session_bill(session_id=session.pk).cdr
    assert (cdr.currency, cdr.total, cdr.tariff_version_id, cdr.tariff_label, cdr.lines.count()) == (
        "CHF",
        Decimal("0.00"),
        None,
        "",
        0,
    )
    assert (cdr.energy_wh, cdr.charging_s, cdr.parking_s) == (5_000, Decimal(1800), Decimal(900))


def test_idle_time_is_parking_and_priced_after_the_grace(world):
    tariff_assign(
        tariff=make_tariff(
            world.org_a,
            "t",
            [
                energy("0.30"),
                {"price_components": [{"type": "PARKING_TIME", "price": "6.00", "step_size": 60}]},
            ],
            parking_grace_s=600,
            tax="0",
        )
    )
    # Charges 10 kWh in the first hour, then stays plugged in 30 min: 20 min billed after a 10 min grace.
    session = completed_session(world.station_a1, readings=[(0, 0), (60, 10_000), (90, 10_000)])
    cdr = session_bill(session_id=session.pk).cdr
    # ENERGY 10 x 0.30 = 3.00; PARKING 20 min = 1/3 h x 6.00 = 2.00.
    assert (cdr.energy_amount, cdr.parking_amount, cdr.total) == (
        Decimal("3.00"),
        Decimal("2.00"),
        Decimal("5.00"),
    )


def test_energy_cost_follows_the_site_time_of_use(world):
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.50")]))
    site_energy_price_create(
        site=world.site_a1,
        data=EnergyPriceInput(
            valid_from=EPOCH,
            currency="EUR",
            price_per_kwh=Decimal("0.10"),
            time_of_use=[{"start_time": "18:30", "end_time": "22:00", "price_per_kwh": "0.30"}],
        ),
    )
    # 18:00-19:00 Berlin, 6 kWh evenly: 3 kWh before 18:30 at 0.10, 3 kWh after at 0.30 = 0.30 + 0.90 = 1.20.
    session = completed_session(world.station_a1, readings=[(0, 0), (60, 6_000)])
    cdr = session_bill(session_id=session.pk).cdr
    assert (cdr.subtotal, cdr.energy_cost) == (Decimal("3.00"), Decimal("1.20"))


def test_the_running_cost_of_an_active_session(world):
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.30")]))
    session = completed_session(world.station_a1, readings=[(0, 2_000), (30, 5_000), (45, 8_000)])
    session.status, session.stopped_at, session.meter_stop_wh = "active", None, None
    session.meter_last_wh, session.meter_last_at = 8_000, T0 + timedelta(minutes=45)
    session.save()
    assert session_cost_so_far(session=session) is None  # no snapshot (taken at the start): no cost
    session_pricing_snapshot(session_id=session.pk)
    cost = session_cost_so_far(session=session)
    assert (cost.subtotal, cost.total, cost.energy_wh) == (Decimal("1.80"), Decimal("2.14"), 6_000)


# --- immutability and credits ----------------------------------------------------------------------


@pytest.fixture
def cdr(world):
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.30")]))
    session = completed_session(world.station_a1, readings=[(0, 0), (60, 10_000)])
    return session_bill(session_id=session.pk).cdr  # 3.00 + 0.57 tax = 3.57


def test_a_cdr_cannot_be_changed_through_the_orm(cdr):
    cdr.total = Decimal("0.01")
    with pytest.raises(ImmutableRecordError):
        cdr.save()
    with pytest.raises(ImmutableRecordError):
        ChargeDetailRecord.objects.filter(pk=cdr.pk).update(total=Decimal("0.01"))
    with pytest.raises(ImmutableRecordError):
        cdr.delete()
    with pytest.raises(ImmutableRecordError):
        CdrLine.objects.filter(cdr=cdr).update(amount=0)
    assert ChargeDetailRecord.objects.get(pk=cdr.pk).total == Decimal("3.57")


@pytest.mark.parametrize("table", ["billing_chargedetailrecord", "billing_cdrline", "billing_cdrcredit"])
def test_the_database_refuses_an_update_whatever_code_runs_it(cdr, world, table):
    cdr_credit_create(cdr=cdr, user=world.finance_a, reason="goodwill", subtotal=Decimal("1.00"))
    column = {
        "billing_chargedetailrecord": "total",
        "billing_cdrline": "amount",
        "billing_cdrcredit": "total",
    }[table]
    with (
        pytest.raises(IntegrityError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"UPDATE {table} SET {column} = 0")  # noqa: S608 (table names from the parametrize list)
    if connection.vendor == "postgresql":  # SQLite keeps DELETE for its test flushes (migration 0002)
        with (
            pytest.raises(IntegrityError, match="immutable"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608
    assert ChargeDetailRecord.objects.get(pk=cdr.pk).total == Decimal("3.57")


def test_credits_correct_a_cdr_down_to_zero_and_no_further(cdr, world):
    partial = cdr_credit_create(
        cdr=cdr, user=world.finance_a, reason="slow charging", subtotal=Decimal("1.00")
    )
    assert (partial.subtotal, partial.tax, partial.total) == (
        Decimal("-1.00"),
        Decimal("-0.19"),
        Decimal("-1.19"),
    )
    with pytest.raises(ValidationFailed, match=r"at most 2\.00 EUR is left"):
        cdr_credit_create(cdr=cdr, user=world.finance_a, reason="too much", subtotal=Decimal("2.01"))
    with pytest.raises(ValidationFailed, match="at most 2 decimals"):
        cdr_credit_create(cdr=cdr, user=world.finance_a, reason="cents", subtotal=Decimal("0.001"))
    rest = cdr_credit_create(cdr=cdr, user=world.finance_a, reason="refund")
    assert (rest.subtotal, rest.tax, rest.total) == (Decimal("-2.00"), Decimal("-0.38"), Decimal("-2.38"))
    with pytest.raises(Conflict, match="fully credited"):
        cdr_credit_create(cdr=cdr, user=world.finance_a, reason="again")
    assert cdr.total + sum(credit.total for credit in CdrCredit.objects.filter(cdr=cdr)) == 0
    assert ChargeDetailRecord.objects.get(pk=cdr.pk).total == Decimal("3.57")  # the original never changes


def test_a_credit_needs_a_reason(cdr, world):
    with pytest.raises(ValidationFailed, match="reason"):
        cdr_credit_create(cdr=cdr, user=world.finance_a, reason="  ")
    assert not CdrCredit.objects.exists()


def test_the_snapshot_is_taken_once(world):
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.30")]))
    session = completed_session(world.station_a1, readings=[(0, 0), (60, 10_000)])
    first = session_pricing_snapshot(session_id=session.pk)
    assert session_pricing_snapshot(session_id=session.pk).pk == first.pk
    assert SessionPricing.objects.count() == 1
    assert first.tariff["time_zone"] == "Europe/Berlin" and first.tariff["tariff_label"] == "t v1"
