"""Billing in the admin: scoped like the rest (tests/admin/test_admin_scope.py covers every changelist), writes
through the billing services, CDRs, lines and credits never changed, credits issued by the billing right."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.services import membership_set
from billing.models import (
    CdrCredit,
    CdrLine,
    ChargeDetailRecord,
    SiteEnergyPrice,
    Tariff,
    TariffAssignment,
    TariffVersion,
)
from tests.factories import UserFactory
from tests.support import row


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def add_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")


def delete_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_delete", args=[obj.pk])


def rows(*models) -> dict:
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in models}


BILLING_MODELS = (
    Tariff,
    TariffVersion,
    TariffAssignment,
    SiteEnergyPrice,
    ChargeDetailRecord,
    CdrLine,
    CdrCredit,
)


@pytest.fixture
def staff_a(world):
    user = UserFactory(username="staff_a")
    membership_set(user=user, organisation=world.org_a, role="operator_staff")
    return user


@pytest.fixture
def a1(logs) -> dict:
    """The billing rows of station A1 (tests/admin/conftest.py: `billing_rows`)."""
    return logs.by_station["A1-CP1"]


# --- CDRs: final, scoped ----------------------------------------------------------------------------------


def test_another_organisations_cdr_is_not_there(world, a1, admin_client_for):
    client = admin_client_for(world.operator_b)
    for model in (ChargeDetailRecord, CdrLine, CdrCredit):
        response = client.get(change_url(a1[model]))
        assert (response.status_code, response["Location"]) == (302, reverse("admin:index")), model.__name__


@pytest.mark.parametrize("actor", ["operator_a", "finance_a", "superuser"])
def test_nobody_changes_or_deletes_a_cdr(world, a1, admin_client_for, actor):
    client = admin_client_for(getattr(world, actor))
    cdr = a1[ChargeDetailRecord]
    before = rows(*BILLING_MODELS)
    page = client.get(change_url(cdr))
    assert page.status_code == 200
    assert (page.context["has_change_permission"], page.context["has_delete_permission"]) == (False, False)
    # Lines and credits are shown, read-only, with nothing to add.
    for inline in page.context["inline_admin_formsets"]:
        assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
            False,
            False,
            False,
        ), inline.opts.model.__name__
    assert client.post(change_url(cdr), {"total": "0", "subtotal": "0"}).status_code == 403
    assert client.post(delete_url(cdr), {"post": "yes"}).status_code == 403
    assert client.get(add_url(ChargeDetailRecord)).status_code == 403
    for model in (CdrLine, CdrCredit):
        assert client.post(change_url(a1[model]), {"amount": "0", "total": "0"}).status_code == 403
        assert client.post(delete_url(a1[model]), {"post": "yes"}).status_code == 403
    assert client.get(add_url(CdrLine)).status_code == 403
    assert rows(*BILLING_MODELS) == before


def test_cdr_changelist_never_counts_the_whole_table(world, logs, admin_client_for):
    response = admin_client_for(world.operator_a).get(reverse("admin:billing_chargedetailrecord_changelist"))
    assert response.context["cl"].show_full_result_count is False


def test_cdr_changelist_filters_by_currency_and_site(world, logs, admin_client_for):
    client = admin_client_for(world.operator_a)
    url = reverse("admin:billing_chargedetailrecord_changelist")
    by_site = client.get(f"{url}?site__id__exact={world.site_a2.pk}")
    assert {cdr.station_identity for cdr in by_site.context["cl"].result_list} == {"A2-CP1"}
    assert client.get(f"{url}?currency=USD").context["cl"].result_list.count() == 0
    # The site filter offers the sites of the CDRs the user sees, nothing of org B.
    specs = client.get(url).context["cl"].filter_specs
    site_filter = next(spec for spec in specs if getattr(spec, "field_path", "") == "site")
    assert sorted(name for _, name in site_filter.lookup_choices) == ["A1", "A2"]


# --- credits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["finance_a", "operator_a"])
def test_credit_issued_through_the_service(world, a1, admin_client_for, actor):
    client = admin_client_for(getattr(world, actor))
    cdr = a1[ChargeDetailRecord]
    page = client.get(change_url(cdr))
    link = f"{add_url(CdrCredit)}?cdr={cdr.pk}"
    assert link in page.content.decode()
    form = client.get(link)
    assert form.status_code == 200
    assert form.context["adminform"].form.initial["cdr"] == str(cdr.pk)
    # The fixture credited 1.00 of 3.00 already: 2.00 is left. 1.50 at 19 %: tax 0.285 -> 0.29.
    response = client.post(add_url(CdrCredit), {"cdr": cdr.pk, "amount": "1.5000", "reason": "Goodwill"})
    assert response.status_code == 302
    credit = CdrCredit.objects.exclude(pk=a1[CdrCredit].pk).get(cdr=cdr)
    assert (credit.subtotal, credit.tax, credit.total, credit.reason, credit.created_by) == (
        Decimal("-1.50"),
        Decimal("-0.29"),
        Decimal("-1.79"),
        "Goodwill",
        getattr(world, actor),
    )
    # Empty amount: the rest (0.50, and the tax left: 0.57 - 0.19 - 0.29 = 0.09).
    assert client.post(add_url(CdrCredit), {"cdr": cdr.pk, "amount": "", "reason": "Rest"}).status_code == 302
    rest = CdrCredit.objects.get(cdr=cdr, reason="Rest")
    assert (rest.subtotal, rest.tax, rest.total) == (Decimal("-0.50"), Decimal("-0.09"), Decimal("-0.59"))


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ("2.01", "At most 2.00 EUR is left to credit on CDR {cdr}."),
        ("-1", "The amount must be greater than 0."),
        ("0", "The amount must be greater than 0."),
        ("0.001", "At most 2 decimals for EUR."),
    ],
)
def test_credit_form_errors(world, a1, admin_client_for, amount, error):
    cdr = a1[ChargeDetailRecord]
    before = rows(CdrCredit)
    response = admin_client_for(world.finance_a).post(
        add_url(CdrCredit), {"cdr": cdr.pk, "amount": amount, "reason": "Too much"}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [error.format(cdr=cdr.pk)]
    assert rows(CdrCredit) == before


def test_fully_credited_cdr_is_a_form_error(world, a1, admin_client_for):
    client = admin_client_for(world.finance_a)
    cdr = a1[ChargeDetailRecord]
    assert client.post(add_url(CdrCredit), {"cdr": cdr.pk, "reason": "All"}).status_code == 302
    before = rows(CdrCredit)
    response = client.post(add_url(CdrCredit), {"cdr": cdr.pk, "reason": "Again"})
    assert response.context["adminform"].form.non_field_errors() == [f"CDR {cdr.pk} is fully credited."]
    assert rows(CdrCredit) == before


@pytest.mark.parametrize("actor", ["staff_a", "host_a1"])
def test_credit_refused_without_the_billing_right(world, a1, staff_a, admin_client_for, actor):
    client = admin_client_for(staff_a if actor == "staff_a" else getattr(world, actor))
    cdr = a1[ChargeDetailRecord]
    before = rows(CdrCredit)
    page = client.get(change_url(cdr))
    assert page.status_code == 200  # they see the CDR...
    assert add_url(CdrCredit) not in page.content.decode()  # ...without the credit link
    assert client.get(add_url(CdrCredit)).status_code == 403
    assert client.post(add_url(CdrCredit), {"cdr": cdr.pk, "reason": "Try"}).status_code == 403
    assert rows(CdrCredit) == before


def test_credit_of_another_organisations_cdr_is_not_offered(world, a1, admin_client_for):
    before = rows(CdrCredit)
    response = admin_client_for(world.operator_b).post(
        add_url(CdrCredit), {"cdr": a1[ChargeDetailRecord].pk, "reason": "Try"}
    )
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["cdr"]
    assert rows(CdrCredit) == before


# --- tariffs, versions, assignments, energy prices ---------------------------------------------------------

NO_VERSIONS = {"versions-TOTAL_FORMS": 0, "versions-INITIAL_FORMS": 0}


def test_tariff_created_and_renamed_through_the_service(world, logs, admin_client_for):
    client = admin_client_for(world.operator_a)
    response = client.post(
        add_url(Tariff), {"organisation": world.org_a.pk, "name": " Night ", "description": "", **NO_VERSIONS}
    )
    assert response.status_code == 302
    tariff = Tariff.objects.get(organisation=world.org_a, name="Night")
    response = client.post(change_url(tariff), {"name": "Night 2", "description": "22-06", **NO_VERSIONS})
    assert response.status_code == 302
    tariff.refresh_from_db()
    assert (tariff.name, tariff.description) == ("Night 2", "22-06")
    taken = client.post(change_url(tariff), {"name": "Tariff org-a", "description": "", **NO_VERSIONS})
    assert taken.context["adminform"].form.non_field_errors() == [
        "A tariff named 'Tariff org-a' already exists in this organisation."
    ]


def test_site_host_sees_their_tariff_read_only(world, a1, admin_client_for):
    client = admin_client_for(world.host_a1)
    tariff = a1[Tariff]
    page = client.get(change_url(tariff))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    before = row(tariff)
    assert client.post(change_url(tariff), {"name": "Host's", **NO_VERSIONS}).status_code == 403
    assert row(tariff) == before
    assert client.get(add_url(Tariff)).status_code == 403


def version_form(tariff, **changes) -> dict:
    return {
        "tariff": tariff.pk,
        "valid_from_0": "2025-06-01",
        "valid_from_1": "00:00:00",
        "valid_until_0": "",
        "valid_until_1": "",
        "currency": "EUR",
        "tax_rate": "0.19",
        "min_price": "",
        "max_price": "",
        "parking_grace_s": "0",
        "parking_cap": "",
        "elements": '[{"price_components": [{"type": "ENERGY", "price": "0.35"}]}]',
        **changes,
    }


def test_version_added_through_the_service(world, a1, admin_client_for):
    tariff = a1[Tariff]
    response = admin_client_for(world.operator_a).post(add_url(TariffVersion), version_form(tariff))
    assert response.status_code == 302
    version = TariffVersion.objects.get(tariff=tariff, version=2)
    assert (version.valid_from, version.currency, version.tax_rate, version.created_by) == (
        datetime(2025, 6, 1, tzinfo=UTC),
        "EUR",
        Decimal("0.19"),
        world.operator_a,
    )
    # The service stored the canonical form.
    assert version.elements == [{"price_components": [{"type": "ENERGY", "price": "0.35", "step_size": 1}]}]


def test_version_form_names_the_bad_element(world, a1, admin_client_for):
    before = rows(TariffVersion)
    response = admin_client_for(world.operator_a).post(
        add_url(TariffVersion),
        version_form(a1[Tariff], elements='[{"price_components": [{"type": "ENERGY", "price": "x"}]}]'),
    )
    assert response.context["adminform"].form.non_field_errors() == [
        "elements[0].price_components[0].price: 'x' is not a number"
    ]
    assert rows(TariffVersion) == before


@pytest.mark.parametrize("actor", ["operator_a", "superuser"])
def test_versions_are_never_edited(world, a1, admin_client_for, actor):
    client = admin_client_for(getattr(world, actor))
    version = a1[TariffVersion]
    before = row(version)
    page = client.get(change_url(version))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert client.post(change_url(version), version_form(a1[Tariff], currency="USD")).status_code == 403
    assert row(version) == before


def test_version_of_another_organisations_tariff_is_not_offered(world, a1, admin_client_for):
    before = rows(TariffVersion)
    response = admin_client_for(world.operator_b).post(add_url(TariffVersion), version_form(a1[Tariff]))
    assert list(response.context["adminform"].form.errors) == ["tariff"]
    assert rows(TariffVersion) == before


def test_finance_and_site_hosts_add_no_versions(world, a1, admin_client_for):
    for user in (world.finance_a, world.host_a1):
        assert admin_client_for(user).get(add_url(TariffVersion)).status_code == 403


def assignment_form(tariff, **changes) -> dict:
    return {"tariff": tariff.pk, "site": "", "station": "", "id_token_group": "", **changes}


def test_assignment_added_through_the_service_replaces_the_scope(world, logs, a1, admin_client_for):
    client = admin_client_for(world.operator_a)
    tariff = Tariff.objects.create(organisation=world.org_a, name="Other")
    existing = a1[TariffAssignment]  # tariff org-a at station A1
    response = client.post(add_url(TariffAssignment), assignment_form(tariff, station=world.station_a1.pk))
    assert response.status_code == 302
    existing.refresh_from_db()
    assert (existing.tariff, existing.level, existing.created_by) == (tariff, "station", world.operator_a)
    assert TariffAssignment.objects.filter(scope_key=f"station:{world.station_a1.pk}").count() == 1
    response = client.post(add_url(TariffAssignment), assignment_form(tariff, site=world.site_a2.pk))
    assert response.status_code == 302
    assert TariffAssignment.objects.get(scope_key=f"site:{world.site_a2.pk}").tariff == tariff


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"site": "site_b1"}, "site"),
        ({"station": "station_b1"}, "station"),
        ({"id_token_group": "token_b"}, "id_token_group"),
    ],
)
def test_assignment_to_another_organisations_objects_is_refused(
    world, tenants, logs, a1, admin_client_for, changes, field
):
    ids = {"site_b1": world.site_b1.pk, "station_b1": world.station_b1.pk, "token_b": tenants.token_b.pk}
    before = rows(TariffAssignment)
    response = admin_client_for(world.operator_a).post(
        add_url(TariffAssignment), assignment_form(a1[Tariff], **{k: ids[v] for k, v in changes.items()})
    )
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    assert rows(TariffAssignment) == before


def test_superuser_cannot_mix_organisations_in_an_assignment(world, a1, admin_client_for):
    before = rows(TariffAssignment)
    response = admin_client_for(world.superuser).post(
        add_url(TariffAssignment), assignment_form(a1[Tariff], site=world.site_b1.pk)
    )
    assert response.context["adminform"].form.non_field_errors() == ["Not in the tariff's organisation: B1."]
    assert rows(TariffAssignment) == before


def test_assignment_removed_by_its_managers_only(world, a1, admin_client_for):
    assignment = a1[TariffAssignment]
    before = rows(TariffAssignment)
    for user in (world.host_a1, world.finance_a):
        assert admin_client_for(user).post(delete_url(assignment), {"post": "yes"}).status_code == 403
    assert admin_client_for(world.operator_b).post(delete_url(assignment), {"post": "yes"}).status_code == 302
    assert rows(TariffAssignment) == before
    assert admin_client_for(world.operator_a).post(delete_url(assignment), {"post": "yes"}).status_code == 302
    assert not TariffAssignment.objects.filter(pk=assignment.pk).exists()


def test_energy_price_added_through_the_service(world, logs, admin_client_for):
    client = admin_client_for(world.operator_a)
    response = client.post(
        add_url(SiteEnergyPrice),
        {
            "site": world.site_a1.pk,
            "valid_from_0": "2025-06-01",
            "valid_from_1": "00:00:00",
            "currency": "eur",
            "price_per_kwh": "0.25",
            "time_of_use": "",
        },
    )
    assert response.status_code == 302
    price = SiteEnergyPrice.objects.get(site=world.site_a1, valid_from=datetime(2025, 6, 1, tzinfo=UTC))
    assert (price.currency, price.price_per_kwh, price.time_of_use) == ("EUR", Decimal("0.25"), [])
    assert client.get(change_url(price)).context["has_change_permission"] is False
    # A site host may look, not add.
    assert admin_client_for(world.host_a1).get(add_url(SiteEnergyPrice)).status_code == 403
