"""The billing API: tariffs, versions, assignments, site energy prices, CDRs, credits, and session costs.

Standing objects (`billing` fixture, next to the `world` and `tenants` of tests/conftest.py and tests/tenants.py):
tariff A (org A) assigned at site A1, so that host_a1 sees it; tariff A2 (org A) assigned at station A2 only;
tariff B (org B) assigned at station B1; a CDR per site (A1: session_a1; A2 and B1: a completed session made
here) and an energy price for site A1.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.services import membership_set
from billing.models import (
    CdrCredit,
    CdrLine,
    ChargeDetailRecord,
    SessionPricing,
    SiteEnergyPrice,
    Tariff,
    TariffAssignment,
    TariffVersion,
)
from billing.services.cdrs import cdr_credit_create
from billing.services.energy_prices import EnergyPriceInput, site_energy_price_create
from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from billing.tariff_json import elements_parse, tariff_dump
from billing.types import Tariff as EngineTariff
from sessions.models import MeterValue
from tests.factories import ChargingSessionFactory, UserFactory
from tests.support import at, iso, row

ENERGY_030 = [{"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]}]
FLAT_ENERGY = [
    {
        "price_components": [
            {"type": "FLAT", "price": "1.00", "step_size": 1},
            {"type": "ENERGY", "price": "0.30", "step_size": 1},
        ]
    }
]


@dataclass
class Billing:
    tariff_a: Tariff
    version_a: TariffVersion
    tariff_a2: Tariff
    tariff_b: Tariff
    assignment_a1: TariffAssignment
    assignment_a2: TariffAssignment
    assignment_b1: TariffAssignment
    price_a1: SiteEnergyPrice
    session_a2_done: object
    session_b1_done: object
    cdr_a1: ChargeDetailRecord
    cdr_a2: ChargeDetailRecord
    cdr_b1: ChargeDetailRecord


def version_input(**overrides) -> TariffVersionInput:
    fields = {
        "valid_from": datetime(2025, 1, 1, tzinfo=UTC),
        "currency": "EUR",
        "tax_rate": Decimal("0.19"),
        "elements": FLAT_ENERGY,
    }
    return TariffVersionInput(**{**fields, **overrides})


def cdr_make(session, *, version, label, lines, energy_wh, subtotal, tax, energy_cost=None):
    """A CDR with every field filled, and its lines ((dimension, quantity, unit, unit_price, amount), all
    priced by element 0). The per-dimension amounts are the sums of the lines."""
    station = session.station
    amounts = {"FLAT": Decimal(0), "ENERGY": Decimal(0), "TIME": Decimal(0)}
    for dimension, _, _, _, amount in lines:
        amounts[dimension] += Decimal(amount)
    cdr = ChargeDetailRecord.objects.create(
        session=session,
        organisation_id=station.organisation_id,
        site_id=station.site_id,
        station=station,
        station_identity=station.identity,
        evse_number=session.evse.evse_id if session.evse else None,
        connector_number=session.connector.connector_id if session.connector else None,
        id_tag=session.id_tag,
        time_zone=station.site.time_zone,
        tariff_version=version,
        tariff_label=label,
        started_at=session.started_at,
        stopped_at=session.stopped_at,
        energy_wh=energy_wh,
        charging_s=Decimal((session.stopped_at - session.started_at).total_seconds()),
        parking_s=Decimal(0),
        currency="EUR",
        tax_rate=Decimal("0.19"),
        flat_amount=amounts["FLAT"],
        energy_amount=amounts["ENERGY"],
        time_amount=amounts["TIME"],
        parking_amount=Decimal(0),
        adjustment_amount=Decimal(0),
        subtotal=Decimal(subtotal),
        tax=Decimal(tax),
        total=Decimal(subtotal) + Decimal(tax),
        energy_cost=energy_cost,
    )
    for position, (dimension, quantity, unit, unit_price, amount) in enumerate(lines, start=1):
        CdrLine.objects.create(
            cdr=cdr,
            position=position,
            dimension=dimension,
            element_index=0,
            quantity=Decimal(quantity),
            used_quantity=Decimal(quantity),
            unit=unit,
            unit_price=Decimal(unit_price),
            amount=Decimal(amount),
        )
    return cdr


def billing_make(world, tenants) -> Billing:
    tariff_a = tariff_create(organisation=world.org_a, name="Standard A", description="30 ct/kWh + 1 EUR")
    version_a = tariff_version_create(tariff=tariff_a, data=version_input())
    tariff_a2 = tariff_create(organisation=world.org_a, name="Highway A2")
    tariff_version_create(tariff=tariff_a2, data=version_input(elements=ENERGY_030))
    tariff_b = tariff_create(organisation=world.org_b, name="Standard B")
    version_b = tariff_version_create(tariff=tariff_b, data=version_input(elements=ENERGY_030))
    session_a2_done = ChargingSessionFactory(
        station=world.station_a2,
        transaction_id="2002",
        id_tag="AAAA0001",
        started_at=at(5),
        stopped_at=at(6),
        meter_start_wh=0,
        meter_stop_wh=10000,
        energy_wh=10000,
        status="completed",
    )
    session_b1_done = ChargingSessionFactory(
        station=world.station_b1,
        transaction_id="3002",
        id_tag="BBBB0001",
        started_at=at(6),
        stopped_at=at(7),
        meter_start_wh=0,
        meter_stop_wh=20000,
        energy_wh=20000,
        status="completed",
    )
    # 7.5 kWh x 0.30 = 2.25, + 1.00 flat = 3.25; tax 19 % = 0.6175 -> 0.62; total 3.87.
    cdr_a1 = cdr_make(
        tenants.session_a1,
        version=version_a,
        label="Standard A v1",
        lines=[("FLAT", "1", "session", "1.00", "1.00"), ("ENERGY", "7.5", "kWh", "0.30", "2.25")],
        energy_wh=7500,
        subtotal="3.25",
        tax="0.62",
        energy_cost=Decimal("1.50"),
    )
    # 10 kWh x 0.30 = 3.00; tax 0.57.
    cdr_a2 = cdr_make(
        session_a2_done,
        version=None,
        label="",
        lines=[("ENERGY", "10", "kWh", "0.30", "3.00")],
        energy_wh=10000,
        subtotal="3.00",
        tax="0.57",
    )
    # 20 kWh x 0.30 = 6.00; tax 1.14.
    cdr_b1 = cdr_make(
        session_b1_done,
        version=version_b,
        label="Standard B v1",
        lines=[("ENERGY", "20", "kWh", "0.30", "6.00")],
        energy_wh=20000,
        subtotal="6.00",
        tax="1.14",
    )
    return Billing(
        tariff_a=tariff_a,
        version_a=version_a,
        tariff_a2=tariff_a2,
        tariff_b=tariff_b,
        assignment_a1=tariff_assign(tariff=tariff_a, site=world.site_a1),
        assignment_a2=tariff_assign(tariff=tariff_a2, station=world.station_a2),
        assignment_b1=tariff_assign(tariff=tariff_b, station=world.station_b1),
        price_a1=site_energy_price_create(
            site=world.site_a1,
            data=EnergyPriceInput(
                valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                currency="EUR",
                price_per_kwh=Decimal("0.2"),
                time_of_use=[],
            ),
        ),
        session_a2_done=session_a2_done,
        session_b1_done=session_b1_done,
        cdr_a1=cdr_a1,
        cdr_a2=cdr_a2,
        cdr_b1=cdr_b1,
    )


@pytest.fixture
def billing(world, tenants) -> Billing:
    return billing_make(world, tenants)


@pytest.fixture
def staff_a(world):
    """An operator_staff member of org A: manages, but may not credit."""
    user = UserFactory(username="staff_a")
    membership_set(user=user, organisation=world.org_a, role="operator_staff")
    return user


def billing_state() -> dict:
    """Every billing row as stored now: compare before and after a refused write."""
    models = (
        Tariff,
        TariffVersion,
        TariffAssignment,
        SiteEnergyPrice,
        CdrCredit,
        ChargeDetailRecord,
        CdrLine,
    )
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in models}


def tariff_json(tariff) -> dict:
    return {
        "id": tariff.pk,
        "organisation": tariff.organisation_id,
        "name": tariff.name,
        "description": tariff.description,
        "created_at": iso(tariff.created_at),
        "updated_at": iso(tariff.updated_at),
    }


def results(response) -> list:
    assert response.status_code == 200, response.content
    return response.json()["results"]


# --- tariffs --------------------------------------------------------------------------------------------


def test_tariff_list_and_retrieve(world, billing, api):
    client = api(world.operator_a)
    a, a2 = billing.tariff_a, billing.tariff_a2
    # Ordered by organisation, then name.
    assert results(client.get("/api/v1/tariffs/")) == [tariff_json(a2), tariff_json(a)]
    response = client.get(f"/api/v1/tariffs/{a.pk}/")
    assert response.status_code == 200
    assert response.json() == {
        "id": a.pk,
        "organisation": world.org_a.pk,
        "name": "Standard A",
        "description": "30 ct/kWh + 1 EUR",
        "created_at": iso(a.created_at),
        "updated_at": iso(a.updated_at),
    }


def test_tariff_list_filter_by_organisation(world, billing, api):
    client = api(world.superuser)
    names = [t["name"] for t in results(client.get(f"/api/v1/tariffs/?organisation={world.org_b.pk}"))]
    assert names == ["Standard B"]
    assert client.get("/api/v1/tariffs/?organisation=x").status_code == 400


def test_site_host_sees_only_the_tariffs_assigned_at_their_sites(world, billing, api):
    client = api(world.host_a1)
    assert [t["id"] for t in results(client.get("/api/v1/tariffs/"))] == [billing.tariff_a.pk]
    assert client.get(f"/api/v1/tariffs/{billing.tariff_a2.pk}/").status_code == 404
    # A station-level assignment at their site counts as well.
    tariff_assign(tariff=billing.tariff_a2, station=world.station_a1)
    assert {t["id"] for t in results(client.get("/api/v1/tariffs/"))} == {
        billing.tariff_a.pk,
        billing.tariff_a2.pk,
    }


def test_tariff_create(world, api):
    response = api(world.operator_a).post(
        "/api/v1/tariffs/",
        {"organisation": world.org_a.pk, "name": " Night ", "description": "Cheaper at night"},
        format="json",
    )
    assert response.status_code == 201
    tariff = Tariff.objects.get(pk=response.json()["id"])
    assert (tariff.organisation_id, tariff.name, tariff.description) == (
        world.org_a.pk,
        "Night",
        "Cheaper at night",
    )
    assert response.json() == tariff_json(tariff)


def test_tariff_create_refuses_a_taken_name_and_unknown_fields(world, billing, api):
    client = api(world.operator_a)
    before = billing_state()
    taken = client.post(
        "/api/v1/tariffs/", {"organisation": world.org_a.pk, "name": "Standard A"}, format="json"
    )
    assert taken.status_code == 409
    assert taken.json() == {"detail": "A tariff named 'Standard A' already exists in this organisation."}
    unknown = client.post(
        "/api/v1/tariffs/", {"organisation": world.org_a.pk, "name": "X", "currency": "EUR"}, format="json"
    )
    assert unknown.status_code == 400
    assert unknown.json() == {"currency": ["Unknown or read-only field; it cannot be set."]}
    missing = client.post("/api/v1/tariffs/", {"name": "X"}, format="json")
    assert missing.status_code == 400
    assert missing.json() == {"organisation": ["This field is required."]}
    assert billing_state() == before


def test_tariff_patch_changes_name_and_description_only(world, billing, api):
    client = api(world.operator_a)
    url = f"/api/v1/tariffs/{billing.tariff_a.pk}/"
    response = client.patch(url, {"name": "Standard A (2025)", "description": ""}, format="json")
    assert response.status_code == 200
    billing.tariff_a.refresh_from_db()
    assert (billing.tariff_a.name, billing.tariff_a.description) == ("Standard A (2025)", "")
    assert response.json() == tariff_json(billing.tariff_a)
    before = row(billing.tariff_a)
    refused = client.patch(url, {"organisation": world.org_b.pk}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"organisation": ["Unknown or read-only field; it cannot be set."]}
    taken = client.patch(url, {"name": "Highway A2"}, format="json")
    assert taken.status_code == 409
    assert row(billing.tariff_a) == before


def test_tariffs_cannot_be_deleted(world, billing, api):
    response = api(world.operator_a).delete(f"/api/v1/tariffs/{billing.tariff_a.pk}/")
    assert response.status_code == 405
    assert Tariff.objects.filter(pk=billing.tariff_a.pk).exists()


# --- versions -------------------------------------------------------------------------------------------


def test_version_list_and_retrieve(world, billing, api):
    v1 = billing.version_a
    v2 = tariff_version_create(
        tariff=billing.tariff_a,
        data=version_input(valid_from=datetime(2025, 6, 1, tzinfo=UTC), elements=ENERGY_030),
    )
    client = api(world.host_a1)  # a site host reads the prices of the tariffs at their sites
    listed = results(client.get(f"/api/v1/tariffs/{billing.tariff_a.pk}/versions/"))
    assert [v["version"] for v in listed] == [2, 1]
    response = client.get(f"/api/v1/tariffs/{billing.tariff_a.pk}/versions/1/")
    assert response.status_code == 200
    assert response.json() == {
        "tariff": billing.tariff_a.pk,
        "version": 1,
        "valid_from": "2025-01-01T00:00:00Z",
        "valid_until": None,
        "currency": "EUR",
        "tax_rate": "0.1900",
        "min_price": None,
        "max_price": None,
        "parking_grace_s": 0,
        "parking_cap": None,
        "elements": FLAT_ENERGY,
        "created_by": None,
        "created_at": iso(v1.created_at),
    }
    assert listed[0]["valid_from"] == iso(v2.valid_from)
    missing = client.get(f"/api/v1/tariffs/{billing.tariff_a.pk}/versions/3/")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"Tariff {billing.tariff_a.pk} has no version 3."}


def test_version_create(world, billing, api):
    body = {
        "valid_from": "2025-06-01T00:00:00+02:00",
        "valid_until": "2026-01-01T00:00:00Z",
        "currency": "eur",
        "tax_rate": "0.19",
        "min_price": "2.50",
        "max_price": 50,
        "parking_grace_s": 600,
        "parking_cap": "10",
        "elements": [
            {
                "price_components": [{"type": "ENERGY", "price": 0.25, "step_size": 100}],
                "restrictions": {"start_time": "22:00", "end_time": "06:00"},
            },
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.35"},
                    {"type": "PARKING_TIME", "price": "6"},
                ]
            },
        ],
    }
    response = api(world.operator_a).post(
        f"/api/v1/tariffs/{billing.tariff_a.pk}/versions/", body, format="json"
    )
    assert response.status_code == 201, response.content
    version = TariffVersion.objects.get(tariff=billing.tariff_a, version=2)
    assert response.json() == {
        "tariff": billing.tariff_a.pk,
        "version": 2,
        "valid_from": "2025-05-31T22:00:00Z",
        "valid_until": "2026-01-01T00:00:00Z",
        "currency": "EUR",
        "tax_rate": "0.1900",
        "min_price": "2.5000",
        "max_price": "50.0000",
        "parking_grace_s": 600,
        "parking_cap": "10.0000",
        # Stored in canonical form: prices as the strings of their decimals, step sizes filled in.
        "elements": [
            {
                "price_components": [{"type": "ENERGY", "price": "0.25", "step_size": 100}],
                "restrictions": {"start_time": "22:00", "end_time": "06:00"},
            },
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.35", "step_size": 1},
                    {"type": "PARKING_TIME", "price": "6", "step_size": 1},
                ]
            },
        ],
        "created_by": "operator_a",
        "created_at": iso(version.created_at),
    }
    assert version.created_by == world.operator_a


@pytest.mark.parametrize(
    ("change", "status", "expected"),
    [
        (
            {"elements": [{"price_components": [{"type": "ENERGY", "price": "abc"}]}]},
            400,
            {"detail": "elements[0].price_components[0].price: 'abc' is not a number"},
        ),
        (
            {"elements": [ENERGY_030[0], {"price_components": [{"type": "KWH", "price": "1"}]}]},
            400,
            {"detail": "elements[1].price_components[0]: unknown price component type 'KWH'"},
        ),
        (
            {
                "elements": [
                    {"price_components": ENERGY_030[0]["price_components"], "restrictions": {"foo": 1}}
                ]
            },
            400,
            {"detail": "elements[0].restrictions: unknown field(s) foo"},
        ),
        # A date restriction that is not YYYY-MM-DD is refused, never read as "no restriction".
        *(
            (
                {
                    "elements": [
                        {
                            "price_components": ENERGY_030[0]["price_components"],
                            "restrictions": {"start_date": value},
                        }
                    ]
                },
                400,
                {"detail": "elements[0].restrictions.start_date: expected YYYY-MM-DD"},
            )
            for value in (20250101, "2025-1-1", "2025-01-01T00:00", "2025-02-30", True)
        ),
        ({"elements": []}, 400, {"detail": "elements: a non-empty list is required"}),
        ({"min_price": "5", "max_price": "1"}, 400, {"detail": "min_price 5.0000 exceeds max_price 1.0000"}),
        (
            {"valid_until": "2025-01-01T00:00:00Z"},
            400,
            {"detail": "valid_until: must be after valid_from"},
        ),
        ({"tax_rate": "-0.1"}, 400, {"tax_rate": ["Ensure this value is greater than or equal to 0."]}),
        ({"currency": "EURO"}, 400, {"currency": ["Ensure this field has no more than 3 characters."]}),
        ({"valid_from": None}, 400, {"valid_from": ["This field may not be null."]}),
        ({"version": 7}, 400, {"version": ["Unknown or read-only field; it cannot be set."]}),
        (
            {"valid_from": "2025-01-01T01:00:00+01:00"},
            409,
            {"detail": "Tariff {tariff} already has a version starting at 2025-01-01T00:00:00+00:00."},
        ),
    ],
)
def test_version_create_refuses_bad_input(world, billing, api, change, status, expected):
    body = {
        "valid_from": "2025-01-01T00:00:00Z",
        "currency": "EUR",
        "tax_rate": "0.19",
        "elements": ENERGY_030,
    }
    before = billing_state()
    response = api(world.operator_a).post(
        f"/api/v1/tariffs/{billing.tariff_a.pk}/versions/", {**body, **change}, format="json"
    )
    assert response.status_code == status
    if "detail" in expected:
        expected = {"detail": expected["detail"].format(tariff=billing.tariff_a.pk)}
    assert response.json() == expected
    assert billing_state() == before


def test_versions_are_never_edited(world, billing, api):
    client = api(world.operator_a)
    url = f"/api/v1/tariffs/{billing.tariff_a.pk}/versions/1/"
    before = row(billing.version_a)
    assert client.patch(url, {"tax_rate": "0"}, format="json").status_code == 405
    assert client.put(url, {"tax_rate": "0"}, format="json").status_code == 405
    assert client.delete(url).status_code == 405
    assert row(billing.version_a) == before


# --- assignments ----------------------------------------------------------------------------------------


def assignment_json(assignment) -> dict:
    return {
        "id": assignment.pk,
        "organisation": assignment.organisation_id,
        "tariff": assignment.tariff_id,
        "level": assignment.level,
        "site": assignment.site_id,
        "station": assignment.station.identity if assignment.station else None,
        "id_token_group": assignment.id_token_group_id,
        "scope_key": assignment.scope_key,
        "created_by": assignment.created_by.username if assignment.created_by else None,
        "created_at": iso(assignment.created_at),
    }


def test_assignment_list_and_retrieve(world, billing, api):
    a1, a2 = billing.assignment_a1, billing.assignment_a2
    # Ordered by organisation, then scope key ("site:..." < "station:...").
    assert results(api(world.operator_a).get("/api/v1/tariff-assignments/")) == [
        assignment_json(a1),
        assignment_json(a2),
    ]
    assert results(api(world.host_a1).get("/api/v1/tariff-assignments/")) == [assignment_json(a1)]
    response = api(world.finance_a).get(f"/api/v1/tariff-assignments/{a2.pk}/")
    assert response.json() == {
        "id": a2.pk,
        "organisation": world.org_a.pk,
        "tariff": billing.tariff_a2.pk,
        "level": "station",
        "site": None,
        "station": "A2-CP1",
        "id_token_group": None,
        "scope_key": f"station:{world.station_a2.pk}",
        "created_by": None,
        "created_at": iso(a2.created_at),
    }
    filtered = api(world.operator_a).get(f"/api/v1/tariff-assignments/?tariff={billing.tariff_a2.pk}")
    assert [a["id"] for a in results(filtered)] == [a2.pk]
    assert [
        a["id"] for a in results(api(world.operator_a).get("/api/v1/tariff-assignments/?level=site"))
    ] == [a1.pk]


@pytest.mark.parametrize(
    ("scope", "level", "scope_key"),
    [
        ({}, "organisation", "organisation"),
        ({"site": "site_a2"}, "site", "site:{site_a2}"),
        ({"station": "A1-CP1"}, "station", "station:{station_a1}"),
        ({"id_token_group": "token_a_group"}, "id_token_group", "token:{token_a_group}"),
        (
            {"id_token_group": "token_a", "site": "site_a1"},
            "id_token_group",
            "token:{token_a}/site:{site_a1}",
        ),
        (
            {"id_token_group": "token_a", "station": "A1-CP1"},
            "id_token_group",
            "token:{token_a}/station:{station_a1}",
        ),
    ],
)
def test_assignment_create(world, tenants, billing, api, scope, level, scope_key):
    ids = {
        "site_a1": world.site_a1.pk,
        "site_a2": world.site_a2.pk,
        "station_a1": world.station_a1.pk,
        "token_a": tenants.token_a.pk,
        "token_a_group": tenants.token_a_group.pk,
    }
    body = {"tariff": billing.tariff_a2.pk, **{key: ids.get(value, value) for key, value in scope.items()}}
    response = api(world.operator_a).post("/api/v1/tariff-assignments/", body, format="json")
    assert response.status_code == 201, response.content
    assignment = TariffAssignment.objects.get(pk=response.json()["id"])
    assert (assignment.level, assignment.scope_key) == (level, scope_key.format(**ids))
    assert assignment.created_by == world.operator_a
    assert response.json() == assignment_json(assignment)


def test_assignment_to_a_taken_scope_replaces_it(world, billing, api):
    response = api(world.operator_a).post(
        "/api/v1/tariff-assignments/",
        {"tariff": billing.tariff_a2.pk, "site": world.site_a1.pk},
        format="json",
    )
    assert response.status_code == 201
    # The same row, now naming the other tariff: one tariff per scope.
    assert response.json()["id"] == billing.assignment_a1.pk
    assert response.json()["tariff"] == billing.tariff_a2.pk
    assert (
        TariffAssignment.objects.filter(
            organisation=world.org_a, scope_key=f"site:{world.site_a1.pk}"
        ).count()
        == 1
    )
    assert TariffAssignment.objects.get(pk=billing.assignment_a1.pk).tariff_id == billing.tariff_a2.pk


def test_assignment_delete(world, billing, api):
    response = api(world.operator_a).delete(f"/api/v1/tariff-assignments/{billing.assignment_a1.pk}/")
    assert response.status_code == 204
    assert not TariffAssignment.objects.filter(pk=billing.assignment_a1.pk).exists()
    assert (
        api(world.operator_a).get(f"/api/v1/tariff-assignments/{billing.assignment_a1.pk}/").status_code
        == 404
    )


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            {"site": "site_a1", "station": "A1-CP1"},
            400,
            {"non_field_errors": ["Give a site or a station, not both."]},
        ),
        ({"site": "site_b1"}, 404, {"detail": "Site {site_b1} not found."}),
        ({"station": "B1-CP1"}, 404, {"detail": "Station 'B1-CP1' not found."}),
        ({"id_token_group": "token_b"}, 404, {"detail": "Id token {token_b} not found."}),
        ({"tariff": "tariff_b"}, 404, {"detail": "Tariff {tariff_b} not found."}),
        ({"level": "site"}, 400, {"level": ["Unknown or read-only field; it cannot be set."]}),
        ({"site": "x"}, 400, {"site": ["A valid integer is required."]}),
    ],
)
def test_assignment_create_refuses(world, tenants, billing, api, body, status, expected):
    ids = {
        "site_a1": world.site_a1.pk,
        "site_b1": world.site_b1.pk,
        "token_b": tenants.token_b.pk,
        "tariff_b": billing.tariff_b.pk,
    }
    body = {"tariff": billing.tariff_a.pk, **{key: ids.get(value, value) for key, value in body.items()}}
    before = billing_state()
    response = api(world.operator_a).post("/api/v1/tariff-assignments/", body, format="json")
    assert response.status_code == status
    if "detail" in expected:
        expected = {"detail": expected["detail"].format(**ids)}
    assert response.json() == expected
    assert billing_state() == before


def test_superuser_cannot_mix_organisations_in_an_assignment(world, billing, api):
    before = billing_state()
    response = api(world.superuser).post(
        "/api/v1/tariff-assignments/",
        {"tariff": billing.tariff_a.pk, "site": world.site_b1.pk},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "site: not in the tariff's organisation"}
    assert billing_state() == before


# --- site energy prices ---------------------------------------------------------------------------------


def test_energy_prices(world, billing, api):
    client = api(world.operator_a)
    url = f"/api/v1/sites/{world.site_a1.pk}/energy-prices/"
    body = {
        "valid_from": "2025-04-01T00:00:00Z",
        "currency": "EUR",
        "price_per_kwh": "0.25",
        "time_of_use": [
            {"start_time": "22:00", "end_time": "06:00", "day_of_week": ["SATURDAY"], "price_per_kwh": "0.12"}
        ],
    }
    response = client.post(url, body, format="json")
    assert response.status_code == 201, response.content
    price = SiteEnergyPrice.objects.get(pk=response.json()["id"])
    assert response.json() == {
        "id": price.pk,
        "site": world.site_a1.pk,
        "valid_from": "2025-04-01T00:00:00Z",
        "currency": "EUR",
        "price_per_kwh": "0.250000",
        "time_of_use": body["time_of_use"],
        "created_at": iso(price.created_at),
    }
    listed = results(api(world.host_a1).get(url))
    assert [(p["id"], p["price_per_kwh"]) for p in listed] == [
        (price.pk, "0.250000"),
        (billing.price_a1.pk, "0.200000"),
    ]


@pytest.mark.parametrize(
    ("change", "status", "expected"),
    [
        (
            {"time_of_use": [{"start_time": "25:00"}]},
            400,
            {"detail": "time_of_use[0].start_time: expected HH:MM"},
        ),
        ({"time_of_use": [{"price": "1"}]}, 400, {"detail": "time_of_use[0]: unknown field(s) price"}),
        (
            {"price_per_kwh": "-1"},
            400,
            {"price_per_kwh": ["Ensure this value is greater than or equal to 0."]},
        ),
        ({"site": 1}, 400, {"site": ["Unknown or read-only field; it cannot be set."]}),
        (
            {"valid_from": "2025-01-01T00:00:00Z"},
            409,
            {"detail": "Site {site} already has an energy price from 2025-01-01T00:00:00+00:00."},
        ),
    ],
)
def test_energy_price_refuses_bad_input(world, billing, api, change, status, expected):
    body = {"valid_from": "2025-04-01T00:00:00Z", "currency": "EUR", "price_per_kwh": "0.25"}
    before = billing_state()
    response = api(world.operator_a).post(
        f"/api/v1/sites/{world.site_a1.pk}/energy-prices/", {**body, **change}, format="json"
    )
    assert response.status_code == status
    if "detail" in expected:
        expected = {"detail": expected["detail"].format(site=world.site_a1.pk)}
    assert response.json() == expected
    assert billing_state() == before


# --- CDRs -----------------------------------------------------------------------------------------------


def cdr_json(cdr) -> dict:
    return {
        "id": cdr.pk,
        "session": cdr.session_id,
        "organisation": cdr.organisation_id,
        "site": cdr.site_id,
        "station": cdr.station_identity,
        "evse_number": cdr.evse_number,
        "connector_number": cdr.connector_number,
        "id_tag": cdr.id_tag,
        "time_zone": cdr.time_zone,
        "tariff_version": cdr.tariff_version_id,
        "tariff_label": cdr.tariff_label,
        "started_at": iso(cdr.started_at),
        "stopped_at": iso(cdr.stopped_at),
        "energy_wh": cdr.energy_wh,
        "charging_s": f"{cdr.charging_s:.6f}",
        "parking_s": f"{cdr.parking_s:.6f}",
        "currency": cdr.currency,
        "tax_rate": f"{cdr.tax_rate:.4f}",
        "flat_amount": f"{cdr.flat_amount:.4f}",
        "energy_amount": f"{cdr.energy_amount:.4f}",
        "time_amount": f"{cdr.time_amount:.4f}",
        "parking_amount": f"{cdr.parking_amount:.4f}",
        "adjustment_amount": f"{cdr.adjustment_amount:.4f}",
        "subtotal": f"{cdr.subtotal:.4f}",
        "tax": f"{cdr.tax:.4f}",
        "total": f"{cdr.total:.4f}",
        "energy_cost": None if cdr.energy_cost is None else f"{cdr.energy_cost:.4f}",
        "created_at": iso(cdr.created_at),
    }


def test_cdr_list_newest_stop_first(world, billing, api):
    assert results(api(world.operator_a).get("/api/v1/cdrs/")) == [
        cdr_json(billing.cdr_a1),
        cdr_json(billing.cdr_a2),
    ]
    assert results(api(world.host_a1).get("/api/v1/cdrs/")) == [cdr_json(billing.cdr_a1)]
    assert results(api(world.operator_b).get("/api/v1/cdrs/")) == [cdr_json(billing.cdr_b1)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("organisation={org_a}", ["a1", "a2"]),
        ("site={site_a2}", ["a2"]),
        ("station=B1-CP1", ["b1"]),
        ("station=b1-cp1", []),
        # cdr_a2 stopped 06:00, cdr_b1 07:00, cdr_a1 09:00; stopped_after inclusive, stopped_before exclusive.
        ("stopped_after=2025-03-01T07:00:00Z", ["a1", "b1"]),
        ("stopped_before=2025-03-01T07:00:00Z", ["a2"]),
        ("stopped_after=2025-03-01T06:00:00Z&stopped_before=2025-03-01T09:00:00Z", ["b1", "a2"]),
        ("currency=eur", ["a1", "b1", "a2"]),
        ("currency=USD", []),
    ],
)
def test_cdr_filters(world, billing, api, query, expected):
    names = {billing.cdr_a1.pk: "a1", billing.cdr_a2.pk: "a2", billing.cdr_b1.pk: "b1"}
    query = query.format(org_a=world.org_a.pk, site_a2=world.site_a2.pk)
    assert [names[c["id"]] for c in results(api(world.superuser).get(f"/api/v1/cdrs/?{query}"))] == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [("stopped_after=yesterday", "stopped_after"), ("site=A1", "site"), ("currency=EURO", "currency")],
)
def test_cdr_bad_filters_are_a_400(world, billing, api, query, field):
    response = api(world.operator_a).get(f"/api/v1/cdrs/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_cdr_retrieve_with_lines_credits_and_net_total(world, billing, api):
    cdr = billing.cdr_a1
    credit = cdr_credit_create(cdr=cdr, user=world.finance_a, reason="Goodwill", subtotal=Decimal("1.00"))
    response = api(world.host_a1).get(f"/api/v1/cdrs/{cdr.pk}/")
    assert response.status_code == 200
    assert response.json() == {
        **cdr_json(cdr),
        "station": "A1-CP1",
        "subtotal": "3.2500",
        "tax": "0.6200",
        "total": "3.8700",
        "energy_cost": "1.5000",
        "lines": [
            {
                "position": 1,
                "dimension": "FLAT",
                "element_index": 0,
                "quantity": "1.000000",
                "used_quantity": "1.000000",
                "unit": "session",
                "unit_price": "1.000000",
                "amount": "1.0000",
            },
            {
                "position": 2,
                "dimension": "ENERGY",
                "element_index": 0,
                "quantity": "7.500000",
                "used_quantity": "7.500000",
                "unit": "kWh",
                "unit_price": "0.300000",
                "amount": "2.2500",
            },
        ],
        # 1.00 credited at 19 %: tax 0.19, total 1.19; 3.87 - 1.19 = 2.68.
        "credits": [
            {
                "id": credit.pk,
                "cdr": cdr.pk,
                "currency": "EUR",
                "subtotal": "-1.0000",
                "tax": "-0.1900",
                "total": "-1.1900",
                "reason": "Goodwill",
                "created_by": "finance_a",
                "created_at": iso(credit.created_at),
            }
        ],
        "credited_subtotal": "-1.0000",
        "credited_total": "-1.1900",
        "net_total": "2.6800",
    }


def test_cdrs_are_read_only(world, billing, api):
    client = api(world.superuser)
    url = f"/api/v1/cdrs/{billing.cdr_a1.pk}/"
    before = billing_state()
    assert client.patch(url, {"total": "0"}, format="json").status_code == 405
    assert client.put(url, {"total": "0"}, format="json").status_code == 405
    assert client.delete(url).status_code == 405
    assert client.post("/api/v1/cdrs/", {}, format="json").status_code == 405
    assert client.delete(f"{url}credits/").status_code == 405
    assert billing_state() == before


# --- credits --------------------------------------------------------------------------------------------


def credit_url(cdr) -> str:
    return f"/api/v1/cdrs/{cdr.pk}/credits/"


def test_partial_credit_then_the_remainder(world, billing, api):
    client = api(world.operator_a)
    cdr = billing.cdr_a1
    first = client.post(credit_url(cdr), {"subtotal": "1.5", "reason": "Slow charging"}, format="json")
    assert first.status_code == 201, first.content
    credit = CdrCredit.objects.get(pk=first.json()["id"])
    # 1.50 x 0.19 = 0.285 -> 0.29 (half up); total 1.79.
    assert first.json() == {
        "id": credit.pk,
        "cdr": cdr.pk,
        "currency": "EUR",
        "subtotal": "-1.5000",
        "tax": "-0.2900",
        "total": "-1.7900",
        "reason": "Slow charging",
        "created_by": "operator_a",
        "created_at": iso(credit.created_at),
    }
    # The rest: 3.25 - 1.50 = 1.75 and exactly the tax left, 0.62 - 0.29 = 0.33: the CDR nets to 0.
    rest = client.post(credit_url(cdr), {"reason": "Refund"}, format="json")
    assert rest.status_code == 201
    assert (rest.json()["subtotal"], rest.json()["tax"], rest.json()["total"]) == (
        "-1.7500",
        "-0.3300",
        "-2.0800",
    )
    detail = client.get(f"/api/v1/cdrs/{cdr.pk}/").json()
    assert (detail["credited_subtotal"], detail["credited_total"], detail["net_total"]) == (
        "-3.2500",
        "-3.8700",
        "0.0000",
    )
    listed = results(client.get(credit_url(cdr)))
    assert [c["reason"] for c in listed] == ["Slow charging", "Refund"]
    # Fully credited: nothing is left, whatever the amount.
    before = billing_state()
    again = client.post(credit_url(cdr), {"subtotal": "0.01", "reason": "More"}, format="json")
    assert again.status_code == 409
    assert again.json() == {"detail": f"CDR {cdr.pk} is fully credited."}
    assert billing_state() == before


def test_credit_of_the_whole_cdr_at_once(world, billing, api):
    response = api(world.finance_a).post(
        credit_url(billing.cdr_a2), {"subtotal": None, "reason": "Broken charger"}, format="json"
    )
    assert response.status_code == 201
    assert (response.json()["subtotal"], response.json()["tax"], response.json()["total"]) == (
        "-3.0000",
        "-0.5700",
        "-3.5700",
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"subtotal": "3.26", "reason": "Too much"},
            {"detail": "subtotal: at most 3.25 EUR is left to credit on CDR {cdr}"},
        ),
        ({"subtotal": "0", "reason": "Nothing"}, {"detail": "subtotal: must be greater than 0"}),
        ({"subtotal": "-1", "reason": "Negative"}, {"detail": "subtotal: must be greater than 0"}),
        ({"subtotal": "0.001", "reason": "Sub-cent"}, {"detail": "subtotal: at most 2 decimals for EUR"}),
        ({"subtotal": "1"}, {"reason": ["This field is required."]}),
        ({"subtotal": "1", "reason": "   "}, {"reason": ["This field may not be blank."]}),
        (
            {"subtotal": "1", "reason": "x", "tax": "0"},
            {"tax": ["Unknown or read-only field; it cannot be set."]},
        ),
    ],
)
def test_credit_refuses_bad_input(world, billing, api, body, expected):
    before = billing_state()
    response = api(world.finance_a).post(credit_url(billing.cdr_a1), body, format="json")
    assert response.status_code == 400
    if "detail" in expected:
        expected = {"detail": expected["detail"].format(cdr=billing.cdr_a1.pk)}
    assert response.json() == expected
    assert billing_state() == before


def test_trailing_zeros_do_not_count_as_decimals(world, billing, api):
    response = api(world.finance_a).post(
        credit_url(billing.cdr_a1), {"subtotal": "1.0000", "reason": "Four zeros"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["subtotal"] == "-1.0000"


@pytest.mark.parametrize(
    ("actor", "cdr", "status"),
    [
        ("staff_a", "cdr_a1", 403),  # operator staff: sees the CDR, may not credit
        ("host_a1", "cdr_a1", 403),  # site host: sees their site's CDR, may not credit
        ("host_a1", "cdr_a2", 404),  # another site's CDR
        ("operator_b", "cdr_a1", 404),  # another organisation
        ("finance_a", "cdr_b1", 404),
    ],
)
def test_credit_denials_change_nothing(world, billing, staff_a, api, actor, cdr, status):
    user = staff_a if actor == "staff_a" else getattr(world, actor)
    cdr = getattr(billing, cdr)
    before = billing_state()
    response = api(user).post(credit_url(cdr), {"subtotal": "1", "reason": "Try"}, format="json")
    assert response.status_code == status
    assert set(response.json()) == {"detail"}
    assert billing_state() == before


# --- sessions: their cost -------------------------------------------------------------------------------


def test_session_cost_is_null_until_billed(world, tenants, billing, api):
    client = api(world.operator_a)
    session = tenants.session_a2  # active, no CDR
    assert client.get(f"/api/v1/sessions/{session.pk}/").json()["cost"] is None
    done = client.get(f"/api/v1/sessions/{tenants.session_a1.pk}/").json()
    assert done["cost"] == {
        "cdr_id": billing.cdr_a1.pk,
        "currency": "EUR",
        "subtotal": "3.2500",
        "tax": "0.6200",
        "total": "3.8700",
        "net_total": "3.8700",
    }
    cdr_credit_create(cdr=billing.cdr_a1, user=None, reason="Goodwill", subtotal=Decimal("1"))
    listed = {s["id"]: s["cost"] for s in results(client.get("/api/v1/sessions/"))}
    assert listed[tenants.session_a1.pk]["net_total"] == "2.6800"
    assert listed[tenants.session_a2.pk] is None
    assert listed[billing.session_a2_done.pk]["total"] == "3.5700"


def test_session_list_reads_costs_in_a_fixed_number_of_queries(world, tenants, billing, api):
    client = api(world.superuser)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/sessions/").status_code == 200
        return len(captured)

    baseline = queries()
    for n in range(4):
        session = ChargingSessionFactory(
            station=world.station_a1, started_at=at(13, n), stopped_at=at(14, n), status="completed"
        )
        cdr = cdr_make(
            session,
            version=None,
            label="",
            lines=[("ENERGY", "1", "kWh", "0.30", "0.30")],
            energy_wh=1000,
            subtotal="0.30",
            tax="0.06",
        )
        cdr_credit_create(cdr=cdr, user=None, reason="Test", subtotal=Decimal("0.10"))
    assert queries() == baseline


def running_session(world, billing):
    """Active at station A1 since 12:00Z, 1000 Wh at the start, readings every 10 minutes up to 4000 Wh at
    12:30Z, priced with a snapshot of: FLAT 1.00, ENERGY 0.30/kWh, TIME 1.20/h (per minute), tax 19 %, minimum
    price 10.00."""
    session = ChargingSessionFactory(
        station=world.station_a1,
        transaction_id="1002",
        started_at=at(12),
        meter_start_wh=1000,
        meter_last_wh=4000,
        meter_last_at=at(12, 30),
        status="active",
    )
    for minute, wh in ((10, 2000), (20, 3000), (30, 4000)):
        MeterValue.objects.create(
            station=world.station_a1,
            session=session,
            timestamp=at(12, minute),
            measurand="Energy.Active.Import.Register",
            unit="Wh",
            value=wh,
            received_at=at(12, minute),
        )
    elements = [
        {
            "price_components": [
                {"type": "FLAT", "price": "1.00"},
                {"type": "ENERGY", "price": "0.30", "step_size": 1},
                {"type": "TIME", "price": "1.20", "step_size": 60},
            ]
        }
    ]
    snapshot = tariff_dump(
        EngineTariff(
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=elements_parse(elements),
            min_price=Decimal("10.00"),
            time_zone="Europe/Berlin",
        )
    )
    SessionPricing.objects.create(
        session=session,
        tariff_version=billing.version_a,
        assignment_scope=f"site:{world.site_a1.pk}",
        tariff=snapshot,
        snapshotted_at=at(12),
    )
    return session


def test_cost_of_a_running_session(world, billing, api):
    session = running_session(world, billing)
    response = api(world.host_a1).get(f"/api/v1/sessions/{session.pk}/cost/")
    assert response.status_code == 200
    # By hand: 12:00-12:30, 3000 Wh, charging throughout (6 kW).
    #   FLAT    1.00
    #   ENERGY  3 kWh x 0.30   = 0.90
    #   TIME    0.5 h x 1.20   = 0.60  (1800 s, a whole number of 60 s steps)
    #   subtotal 2.50 (the 10.00 minimum applies only to the final price), tax 2.50 x 0.19 = 0.475 -> 0.48,
    #   total 2.98.
    assert response.json() == {
        "session": session.pk,
        "state": "running",
        "cdr": None,
        "currency": "EUR",
        "subtotal": "2.5000",
        "tax": "0.4800",
        "total": "2.9800",
        "net_total": None,
        "lines": [
            {
                "position": 1,
                "dimension": "FLAT",
                "element_index": 0,
                "quantity": "1.000000",
                "used_quantity": "1.000000",
                "unit": "session",
                "unit_price": "1.000000",
                "amount": "1.0000",
            },
            {
                "position": 2,
                "dimension": "ENERGY",
                "element_index": 0,
                "quantity": "3.000000",
                "used_quantity": "3.000000",
                "unit": "kWh",
                "unit_price": "0.300000",
                "amount": "0.9000",
            },
            {
                "position": 3,
                "dimension": "TIME",
                "element_index": 0,
                "quantity": "0.500000",
                "used_quantity": "0.500000",
                "unit": "h",
                "unit_price": "1.200000",
                "amount": "0.6000",
            },
        ],
        "as_of": "2025-03-01T12:30:00Z",
    }
    assert api(world.operator_b).get(f"/api/v1/sessions/{session.pk}/cost/").status_code == 404


def test_cost_of_a_billed_session_is_the_cdrs(world, tenants, billing, api):
    cdr_credit_create(cdr=billing.cdr_a1, user=None, reason="Goodwill", subtotal=Decimal("1"))
    response = api(world.finance_a).get(f"/api/v1/sessions/{tenants.session_a1.pk}/cost/")
    body = response.json()
    assert (body["state"], body["cdr"], body["currency"]) == ("billed", billing.cdr_a1.pk, "EUR")
    assert (body["subtotal"], body["tax"], body["total"], body["net_total"]) == (
        "3.2500",
        "0.6200",
        "3.8700",
        "2.6800",
    )
    assert [(line["dimension"], line["amount"]) for line in body["lines"]] == [
        ("FLAT", "1.0000"),
        ("ENERGY", "2.2500"),
    ]
    assert body["as_of"] == "2025-03-01T09:00:00Z"


def test_cost_of_an_ended_session_not_yet_billed(world, api):
    session = ChargingSessionFactory(
        station=world.station_a1,
        started_at=at(13),
        stopped_at=at(14),
        status="completed",
        held_for_review=True,
    )
    response = api(world.operator_a).get(f"/api/v1/sessions/{session.pk}/cost/")
    assert response.json() == {
        "session": session.pk,
        "state": "pending",
        "cdr": None,
        "currency": None,
        "subtotal": None,
        "tax": None,
        "total": None,
        "net_total": None,
        "lines": [],
        "as_of": None,
    }


def test_cost_of_a_running_session_without_readings_has_no_figures(world, tenants, billing, api):
    response = api(world.operator_a).get(f"/api/v1/sessions/{tenants.session_a2.pk}/cost/")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["total"], response.json()["lines"]) == (
        "running",
        None,
        [],
    )


# --- denials: every write x {site host, finance, another organisation} ----------------------------------


def write_requests(world, tenants, billing) -> dict:
    """name -> (method, url, body): one harmless, valid write per endpoint, against org A's objects."""
    version = {
        "valid_from": "2026-01-01T00:00:00Z",
        "currency": "EUR",
        "tax_rate": "0.19",
        "elements": ENERGY_030,
    }
    price = {"valid_from": "2026-01-01T00:00:00Z", "currency": "EUR", "price_per_kwh": "0.2"}
    return {
        "tariff_create": ("post", "/api/v1/tariffs/", {"organisation": world.org_a.pk, "name": "New"}),
        "tariff_patch_a1": ("patch", f"/api/v1/tariffs/{billing.tariff_a.pk}/", {"name": "Renamed"}),
        "tariff_patch_a2": ("patch", f"/api/v1/tariffs/{billing.tariff_a2.pk}/", {"name": "Renamed"}),
        "version_create_a1": ("post", f"/api/v1/tariffs/{billing.tariff_a.pk}/versions/", version),
        "version_create_a2": ("post", f"/api/v1/tariffs/{billing.tariff_a2.pk}/versions/", version),
        "assign_a1": (
            "post",
            "/api/v1/tariff-assignments/",
            {"tariff": billing.tariff_a.pk, "site": world.site_a1.pk},
        ),
        "assign_a2": (
            "post",
            "/api/v1/tariff-assignments/",
            {"tariff": billing.tariff_a2.pk, "site": world.site_a2.pk},
        ),
        "unassign_a1": ("delete", f"/api/v1/tariff-assignments/{billing.assignment_a1.pk}/", None),
        "unassign_a2": ("delete", f"/api/v1/tariff-assignments/{billing.assignment_a2.pk}/", None),
        "energy_price_a1": ("post", f"/api/v1/sites/{world.site_a1.pk}/energy-prices/", price),
        "energy_price_a2": ("post", f"/api/v1/sites/{world.site_a2.pk}/energy-prices/", price),
        "credit_a1": ("post", credit_url(billing.cdr_a1), {"reason": "Try"}),
        "credit_a2": ("post", credit_url(billing.cdr_a2), {"reason": "Try"}),
    }


WRITE_NAMES = [
    "tariff_create",
    "tariff_patch_a1",
    "tariff_patch_a2",
    "version_create_a1",
    "version_create_a2",
    "assign_a1",
    "assign_a2",
    "unassign_a1",
    "unassign_a2",
    "energy_price_a1",
    "energy_price_a2",
    "credit_a1",
    "credit_a2",
]
# Objects "a1" are at host_a1's site (visible to them: 403), "a2" at another site of org A (404); for
# operator B everything of org A is 404. Finance sees all of org A and may only credit. A site host is a
# member of org A, so the organisation named in a tariff POST is visible to them (403).
DENIED = {
    "host_a1": {
        "tariff_create": 403,
        "tariff_patch_a1": 403,
        "tariff_patch_a2": 404,
        "version_create_a1": 403,
        "version_create_a2": 404,
        "assign_a1": 403,
        "assign_a2": 404,
        "unassign_a1": 403,
        "unassign_a2": 404,
        "energy_price_a1": 403,
        "energy_price_a2": 404,
        "credit_a1": 403,
        "credit_a2": 404,
    },
    "finance_a": {
        "tariff_create": 403,
        "tariff_patch_a1": 403,
        "tariff_patch_a2": 403,
        "version_create_a1": 403,
        "version_create_a2": 403,
        "assign_a1": 403,
        "assign_a2": 403,
        "unassign_a1": 403,
        "unassign_a2": 403,
        "energy_price_a1": 403,
        "energy_price_a2": 403,
    },
    "operator_b": dict.fromkeys(WRITE_NAMES, 404),
}


@pytest.mark.parametrize(
    ("actor", "name", "status"),
    [(actor, name, status) for actor, cases in DENIED.items() for name, status in cases.items()],
)
def test_denied_writes_change_nothing(world, tenants, billing, api, actor, name, status):
    method, url, body = write_requests(world, tenants, billing)[name]
    before = billing_state()
    response = getattr(api(getattr(world, actor)), method)(url, body, format="json")
    assert response.status_code == status, response.content
    assert set(response.json()) == {"detail"}
    assert billing_state() == before


@pytest.mark.parametrize(
    "name",
    [
        "tariff_create",
        "tariff_patch_a1",
        "version_create_a1",
        "assign_a1",
        "unassign_a1",
        "energy_price_a1",
        "credit_a1",
    ],
)
def test_the_same_writes_succeed_for_operator_admin(world, tenants, billing, api, name):
    """The denial cases above are valid requests: an operator admin of org A gets them through."""
    method, url, body = write_requests(world, tenants, billing)[name]
    response = getattr(api(world.operator_a), method)(url, body, format="json")
    assert response.status_code in {200, 201, 204}, response.content


def test_foreign_objects_are_404_even_with_a_bad_body(world, billing, api):
    """Scope first: a 400 would tell operator B that the object exists."""
    client = api(world.operator_b)
    assert (
        client.patch(f"/api/v1/tariffs/{billing.tariff_a.pk}/", {"name": ""}, format="json").status_code
        == 404
    )
    assert (
        client.post(f"/api/v1/tariffs/{billing.tariff_a.pk}/versions/", {}, format="json").status_code == 404
    )
    assert (
        client.post(f"/api/v1/sites/{world.site_a1.pk}/energy-prices/", {}, format="json").status_code == 404
    )
    assert client.post(credit_url(billing.cdr_a1), {"subtotal": "x"}, format="json").status_code == 404
