"""Tariffs, their assignment, the snapshot a session is priced with, CDRs, credits, energy prices, exports.

Billing records (ChargeDetailRecord, CdrLine, CdrCredit) are written once and never changed: the models refuse
`save()` of an existing row and `delete()`, and database triggers (migration 0002) refuse UPDATE and DELETE
on PostgreSQL and UPDATE on SQLite, whatever code runs the statement. A correction is a CdrCredit.
"""

from django.conf import settings
from django.db import models

from accounts.models import Organisation
from billing.enums import (
    AssignmentLevel,
    ExportKind,
    ExportStatus,
    PaymentProviderKind,
    PaymentStatus,
    RefundStatus,
)
from cpms.db import (  # noqa: F401 (ImmutableRecordError re-exported)
    DecimalDigits,
    ImmutableModel,
    ImmutableQuerySet,
    ImmutableRecordError,
)
from sessions.models import ChargingSession, IdToken
from stations.models import ChargingStation, Command, Evse, Site

# Amounts are rounded to the minor unit (<= 4 decimals); unit prices may carry more decimals than the currency.
MONEY: DecimalDigits = {"max_digits": 14, "decimal_places": 4}
PRICE: DecimalDigits = {"max_digits": 14, "decimal_places": 6}


class Tariff(models.Model):
    """A named price list of one organisation; its prices live in versions (TariffVersion)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="tariffs")
    name = models.CharField(max_length=100)
    # Shown to drivers (OCPI tariff_alt_text).
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organisation_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="tariff_name_unique_per_org")
        ]

    def __str__(self) -> str:
        return self.name


class TariffVersion(models.Model):
    """The prices of a tariff from `valid_from` on: OCPI 2.2.1 elements plus the session-wide fields.

    The version in force at an instant is the one with the latest `valid_from` at or before it, unless its
    `valid_until` has passed. A version is never edited: a price change is a new version, so a session's
    snapshot and a CDR always name the prices they were computed with.
    """

    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    tax_rate = models.DecimalField(max_digits=6, decimal_places=4, help_text="A fraction: 0.19 = 19 %.")
    min_price = models.DecimalField(**MONEY, null=True, blank=True, help_text="Per session, excl. tax.")
    max_price = models.DecimalField(**MONEY, null=True, blank=True, help_text="Per session, excl. tax.")
    parking_grace_s = models.PositiveIntegerField(default=0)
    parking_cap = models.DecimalField(**MONEY, null=True, blank=True, help_text="Per session, excl. tax.")
    # OCPI 2.2.1 TariffElement list: [{"price_components": [{"type", "price", "step_size"}], "restrictions"}]
    elements = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tariff_id", "-valid_from", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["tariff", "version"], name="tariffversion_unique_number"),
            models.UniqueConstraint(fields=["tariff", "valid_from"], name="tariffversion_unique_start"),
            models.CheckConstraint(
                condition=models.Q(valid_until__isnull=True)
                | models.Q(valid_until__gt=models.F("valid_from")),
                name="tariffversion_valid_range",
            ),
            models.CheckConstraint(
                condition=models.Q(tax_rate__gte=0), name="tariffversion_tax_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tariff_id} v{self.version}"


class TariffAssignment(models.Model):
    """Puts a tariff in force for an organisation, a site, a station, or an id token / token group (which may
    be narrowed to a site or a station). `scope_key` spells the scope so that each scope has one tariff."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="tariff_assignments"
    )
    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="assignments")
    level = models.CharField(max_length=16, choices=AssignmentLevel.choices)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    id_token_group = models.ForeignKey(
        IdToken, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    scope_key = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation_id", "scope_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "scope_key"], name="tariffassignment_one_per_scope"
            ),
            models.CheckConstraint(
                condition=models.Q(site__isnull=True) | models.Q(station__isnull=True),
                name="tariffassignment_site_or_station",
            ),
            models.CheckConstraint(
                condition=models.Q(level__in=AssignmentLevel.values), name="tariffassignment_level_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope_key} -> {self.tariff_id}"


class SessionPricing(models.Model):
    """The tariff in force when a session started, copied in full (`tariff` is the engine's input as JSON,
    with the site's time zone), so later tariff changes never reprice it. `tariff` null: no tariff applied
    (the session is free)."""

    session = models.OneToOneField(ChargingSession, on_delete=models.CASCADE, related_name="pricing")
    tariff_version = models.ForeignKey(
        TariffVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    assignment_scope = models.CharField(max_length=64, blank=True)
    tariff = models.JSONField(null=True, blank=True)
    snapshotted_at = models.DateTimeField()
    # The last running cost sent to the charger (2.0.1 CostUpdated) and when.
    cost_sent_at = models.DateTimeField(null=True, blank=True)
    cost_sent_total = models.DecimalField(**MONEY, null=True, blank=True)

    class Meta:
        verbose_name = "session tariff snapshot"


class ChargeDetailRecord(ImmutableModel):
    """The final price of one completed session (one per session: the unique session key is what makes a
    duplicate stop or a rerun of the billing job harmless). Station, site and token are copied as they were.

    Amounts are excl. tax unless named `total`; all are rounded to the currency's minor unit. The per-dimension
    amounts are sums of the lines, kept here so exports read one row per CDR.
    """

    session = models.OneToOneField(ChargingSession, on_delete=models.PROTECT, related_name="cdr")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    # Null for a station not (yet) placed at a site; its times are then in UTC.
    site = models.ForeignKey(Site, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    station = models.ForeignKey(ChargingStation, on_delete=models.PROTECT, related_name="+")
    station_identity = models.CharField(max_length=48)
    evse_number = models.PositiveIntegerField(null=True, blank=True)
    connector_number = models.PositiveIntegerField(null=True, blank=True)
    id_tag = models.CharField(max_length=255, blank=True)
    time_zone = models.CharField(max_length=64)
    tariff_version = models.ForeignKey(
        TariffVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    tariff_label = models.CharField(
        max_length=120, blank=True, help_text="Tariff name and version, or empty."
    )
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField()
    energy_wh = models.BigIntegerField()
    charging_s = models.DecimalField(max_digits=14, decimal_places=6)
    parking_s = models.DecimalField(max_digits=14, decimal_places=6)
    currency = models.CharField(max_length=3)
    tax_rate = models.DecimalField(max_digits=6, decimal_places=4)
    flat_amount = models.DecimalField(**MONEY)
    energy_amount = models.DecimalField(**MONEY)
    time_amount = models.DecimalField(**MONEY)
    parking_amount = models.DecimalField(**MONEY)
    adjustment_amount = models.DecimalField(**MONEY, help_text="Parking cap and minimum/maximum price.")
    subtotal = models.DecimalField(**MONEY)
    tax = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    # What the electricity cost the site (excl. tax), in the CDR's currency; null if no price was set.
    energy_cost = models.DecimalField(**MONEY, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-stopped_at", "-id"]
        verbose_name = "charge detail record"
        indexes = [
            models.Index(fields=["organisation", "stopped_at"], name="cdr_org_stopped"),
            models.Index(fields=["site", "stopped_at"], name="cdr_site_stopped"),
        ]

    def __str__(self) -> str:
        return f"CDR {self.pk} ({self.total} {self.currency})"


class CdrLine(ImmutableModel):
    """One priced line of a CDR, as the tariff engine computed it (billing.types.PriceLine)."""

    cdr = models.ForeignKey(ChargeDetailRecord, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveSmallIntegerField()
    dimension = models.CharField(max_length=24)
    element_index = models.PositiveSmallIntegerField(null=True, blank=True)
    quantity = models.DecimalField(max_digits=18, decimal_places=6)
    used_quantity = models.DecimalField(max_digits=18, decimal_places=6)
    unit = models.CharField(max_length=8)
    unit_price = models.DecimalField(**PRICE)
    amount = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["cdr_id", "position"]
        constraints = [models.UniqueConstraint(fields=["cdr", "position"], name="cdrline_unique_position")]


class CdrCredit(ImmutableModel):
    """A correction of a CDR: negative amounts (subtotal, tax at the CDR's rate, total) and why. The credits
    of a CDR never exceed it (billing/services/cdrs.py, under a lock on the CDR)."""

    cdr = models.ForeignKey(ChargeDetailRecord, on_delete=models.PROTECT, related_name="credits")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(**MONEY)
    tax = models.DecimalField(**MONEY)
    total = models.DecimalField(**MONEY)
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(subtotal__lt=0), name="cdrcredit_negative"),
        ]
        indexes = [models.Index(fields=["organisation", "created_at"], name="cdrcredit_org_created")]


class SiteEnergyPrice(models.Model):
    """What the site pays for electricity from `valid_from` on, excl. tax: `price_per_kwh`, except inside the
    `time_of_use` windows ([{"start_time": "HH:MM", "end_time": "HH:MM", "day_of_week": [...],
    "price_per_kwh": "0.21"}], first match wins, local to the site)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="energy_prices")
    valid_from = models.DateTimeField()
    currency = models.CharField(max_length=3)
    price_per_kwh = models.DecimalField(**PRICE)
    time_of_use = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site_id", "-valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["site", "valid_from"], name="siteenergyprice_unique_start"),
            models.CheckConstraint(
                condition=models.Q(price_per_kwh__gte=0), name="siteenergyprice_non_negative"
            ),
        ]


class ExportJob(models.Model):
    """A CSV export run by a Celery worker, with progress; the file is downloaded through the API."""

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=ExportKind.choices)
    # The validated filters (period, organisation, sites), as given to billing.services.exports.
    filters = models.JSONField(default=dict)
    # The organisations the requester could export when asking: the job never reads beyond them.
    organisation_ids = models.JSONField(default=list)
    status = models.CharField(max_length=8, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    rows_total = models.BigIntegerField(null=True, blank=True)
    rows_done = models.BigIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The lease (cpms/jobs.py): set while a run lives; a job whose worker died is queued again by the sweep.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=1, help_text="Which attempt this is: 1, and one more each time its worker was lost."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=ExportKind.values), name="exportjob_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=ExportStatus.values), name="exportjob_status_valid"
            ),
        ]


class KpiDay(models.Model):
    """One station's KPI components for one local day (its site's time zone; UTC for a station without a
    site), written by `billing.services.kpis.kpi_days_compute`. Only sums and counts are stored, never ratios:
    a summary over many days and stations adds the components first and divides once (docs/kpis.md)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="kpi_days")
    day = models.DateField(help_text="The local day of the station's site.")
    ports = models.PositiveIntegerField(default=0, help_text="EVSEs of the station.")
    observed_s = models.BigIntegerField(default=0, help_text="Port-seconds with a known state.")
    in_service_s = models.BigIntegerField(default=0, help_text="Port-seconds in service.")
    sessions = models.PositiveIntegerField(default=0, help_text="Sessions started this day.")
    energy_wh = models.BigIntegerField(default=0, help_text="Energy of the sessions started this day.")
    incidents_detected = models.PositiveIntegerField(default=0)
    detect_s = models.BigIntegerField(default=0, help_text="Sum of detected_at - occurred_at.")
    incidents_resolved = models.PositiveIntegerField(default=0)
    repair_s = models.BigIntegerField(default=0, help_text="Sum of resolved_at - detected_at.")
    resolved_remotely = models.PositiveIntegerField(default=0)
    cdrs = models.PositiveIntegerField(
        default=0, help_text="CDRs in `currency` whose session stopped this day."
    )
    cdr_energy_wh = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, help_text="The organisation's currency when computed.")
    revenue = models.DecimalField(**MONEY, default=0, help_text="CDR amounts excl. tax, net of credits.")
    energy_cost = models.DecimalField(**MONEY, default=0)
    disputed_sessions = models.PositiveIntegerField(default=0, help_text="CDRs that got a first credit.")
    other_currency_cdrs = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["-day", "station_id"]
        verbose_name = "KPI day"
        constraints = [models.UniqueConstraint(fields=["station", "day"], name="kpiday_unique_station_day")]
        indexes = [
            models.Index(fields=["organisation", "day"], name="kpiday_org_day"),
            models.Index(fields=["site", "day"], name="kpiday_site_day"),
        ]

    def __str__(self) -> str:
        return f"KPIs {self.station_id} {self.day}"


class RoiInputs(models.Model):
    """An organisation's annual figures for the ROI view, in its currency (docs/kpis.md#roi)."""

    organisation = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="roi_inputs")
    cpms_cost_annual = models.DecimalField(
        **MONEY, default=0, help_text="Subscription and licences per year."
    )
    integration_cost = models.DecimalField(**MONEY, default=0, help_text="One-off, amortised over the years.")
    integration_years = models.PositiveSmallIntegerField(default=3)
    support_cost_annual = models.DecimalField(**MONEY, default=0)
    energy_savings_annual = models.DecimalField(**MONEY, default=0)
    truck_roll_cost = models.DecimalField(**MONEY, default=0, help_text="The cost of one site visit.")
    incremental_costs_annual = models.DecimalField(
        **MONEY, default=0, help_text="Roaming fees, payment processing."
    )
    baseline_uptime_pct = models.DecimalField(
        max_digits=6, decimal_places=3, null=True, blank=True, help_text="Uptime before the CPMS, in %."
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = "ROI inputs"
        verbose_name_plural = "ROI inputs"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(integration_years__gte=1), name="roiinputs_years_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(baseline_uptime_pct__isnull=True)
                | models.Q(baseline_uptime_pct__gte=0, baseline_uptime_pct__lte=100),
                name="roiinputs_baseline_pct",
            ),
        ]

    def __str__(self) -> str:
        return f"ROI inputs of {self.organisation_id}"


class PaymentSettings(models.Model):
    """Ad-hoc card payment of one organisation: its provider account, the hold, the receipt's operator lines.

    The provider's secret key and webhook secret are stored encrypted (billing/providers/keys.py) and never
    shown again once set. `api_base`/`js_url` point at a Stripe-compatible server instead of Stripe (tests,
    demos); empty means Stripe itself. `adhoc_group` is the id token group of every one-off payment token:
    tariffs assigned to it price ad-hoc sessions (AssignmentLevel.ID_TOKEN_GROUP)."""

    organisation = models.OneToOneField(
        Organisation, on_delete=models.CASCADE, related_name="payment_settings"
    )
    enabled = models.BooleanField(default=False)
    provider = models.CharField(
        max_length=16, choices=PaymentProviderKind.choices, default=PaymentProviderKind.STRIPE
    )
    publishable_key = models.CharField(max_length=255, blank=True)
    secret_key_encrypted = models.TextField(blank=True)
    webhook_secret_encrypted = models.TextField(blank=True)
    api_base = models.URLField(blank=True)
    js_url = models.URLField(blank=True)
    hold_amount = models.DecimalField(**MONEY, default=50)
    # How long after the hold the charger has to start a session (the driver plugs in) before it is released.
    start_timeout_s = models.PositiveIntegerField(default=180)
    adhoc_group = models.OneToOneField(
        IdToken, on_delete=models.PROTECT, null=True, blank=True, related_name="payment_settings_group"
    )
    operator_legal_name = models.CharField(max_length=200, blank=True)
    operator_address = models.TextField(blank=True)
    operator_vat_id = models.CharField(max_length=40, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "payment settings"
        verbose_name_plural = "payment settings"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(hold_amount__gt=0), name="paymentsettings_hold_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"Payments of {self.organisation_id}"


class Payment(models.Model):
    """One ad-hoc card payment for one charging session: a hold on the driver's card, then the CDR's total
    captured and the rest released (billing/services/payments.py). The driver's pages find it by the hash of
    the secret in their URL; the secret itself is never stored."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    station = models.ForeignKey(ChargingStation, on_delete=models.PROTECT, related_name="+")
    evse = models.ForeignKey(Evse, on_delete=models.PROTECT, related_name="+")
    id_token = models.OneToOneField(IdToken, on_delete=models.PROTECT, related_name="payment")
    session = models.OneToOneField(
        ChargingSession, on_delete=models.PROTECT, null=True, blank=True, related_name="payment"
    )
    start_command = models.ForeignKey(
        Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    access_key_hash = models.CharField(max_length=64, unique=True)
    provider = models.CharField(max_length=16, choices=PaymentProviderKind.choices)
    provider_ref = models.CharField(max_length=255, blank=True, help_text="The provider's PaymentIntent id.")
    card_hint = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.PENDING)
    currency = models.CharField(max_length=3)
    hold_amount = models.DecimalField(**MONEY)
    captured_amount = models.DecimalField(**MONEY, default=0)
    refunded_amount = models.DecimalField(**MONEY, default=0)
    unpaid_amount = models.DecimalField(
        **MONEY, default=0, help_text="What the session cost beyond the capture."
    )
    email = models.EmailField(blank=True)
    language = models.CharField(max_length=8, blank=True)
    # The price the driver was shown before paying (billing/services/payments.py: adhoc_offer).
    tariff_version = models.ForeignKey(
        TariffVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    failure = models.TextField(blank=True, help_text="Why the card was declined or the last error.")
    capture_attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    authorised_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    receipt_sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=PaymentStatus.values), name="payment_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(captured_amount__gte=0, refunded_amount__gte=0, unpaid_amount__gte=0),
                name="payment_amounts_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(captured_amount__lte=models.F("hold_amount")),
                name="payment_capture_within_hold",
            ),
            models.CheckConstraint(
                condition=models.Q(refunded_amount__lte=models.F("captured_amount")),
                name="payment_refund_within_capture",
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_ref"],
                condition=~models.Q(provider_ref=""),
                name="payment_provider_ref_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["organisation", "created_at"], name="payment_org_created"),
            models.Index(fields=["status", "next_attempt_at"], name="payment_status_next"),
        ]

    def __str__(self) -> str:
        return f"Payment {self.pk} ({self.status}, {self.currency})"


class PaymentEvent(models.Model):
    """The payment's audit trail: what we asked the provider and what it told us. A provider webhook is
    stored once (`provider_event_id` unique): delivered twice, it is applied once."""

    payment = models.ForeignKey(
        Payment, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=40)
    amount = models.DecimalField(**MONEY, null=True, blank=True)
    provider_event_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} ({self.payment_id})"


class PaymentRefund(models.Model):
    """Money given back to the driver: always with a CdrCredit of the same total, created together; the
    provider's refund carries this row's id, so a retry after a lost answer finds it instead of refunding
    twice."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    credit = models.OneToOneField(CdrCredit, on_delete=models.PROTECT, related_name="refund")
    amount = models.DecimalField(**MONEY)
    status = models.CharField(max_length=16, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    provider_ref = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="paymentrefund_positive"),
        ]

    def __str__(self) -> str:
        return f"Refund {self.pk} of payment {self.payment_id}"
