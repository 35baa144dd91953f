"""A site's electrical topology, the limits and signals that bound it, each EVSE's electrical settings, what the
balancer decided, and every charging profile sent to a charger.

Currents are amps per phase. The balancing algorithm itself is a pure function (`energy.balancing`);
`energy.selectors` builds its input from these rows.
"""

from django.db import models

from cpms.db import DecimalDigits
from energy.enums import NodeKind, ProfileKind, SignalKind
from stations.models import ChargingStation, Command, Evse, Site

AMPS: DecimalDigits = {"max_digits": 8, "decimal_places": 1}


class GridNode(models.Model):
    """A grid connection, panel or circuit of a site. The root (no parent) is the grid connection. The
    limit is per phase (`limit_a`, the fuse), or per phase derived from `limit_kw` at `voltage_v` (the
    smaller wins when both are set)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="grid_nodes")
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=NodeKind.choices, default=NodeKind.CIRCUIT)
    limit_a = models.DecimalField(**AMPS, null=True, blank=True, help_text="Per phase; empty = unlimited.")
    limit_kw = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    voltage_v = models.PositiveIntegerField(default=230, help_text="Phase-to-neutral voltage, for kW limits.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="gridnode_name_unique_per_site"),
            models.UniqueConstraint(
                fields=["site"], condition=models.Q(parent__isnull=True), name="gridnode_one_root_per_site"
            ),
            models.CheckConstraint(
                condition=models.Q(limit_a__isnull=True) | models.Q(limit_a__gte=0),
                name="gridnode_limit_a_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(limit_kw__isnull=True) | models.Q(limit_kw__gte=0),
                name="gridnode_limit_kw_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class NodeLimitSchedule(models.Model):
    """A node limit that applies at some times of day (site local time), e.g. a lower site limit at the
    evening peak. The first matching row (by `position`) replaces the node's own limit; none: the node's."""

    node = models.ForeignKey(GridNode, on_delete=models.CASCADE, related_name="schedules")
    position = models.PositiveSmallIntegerField(default=0)
    start_time = models.TimeField()
    end_time = models.TimeField(help_text="Exclusive; at or before start_time it wraps past midnight.")
    day_of_week = models.JSONField(
        default=list, blank=True, help_text='e.g. ["MONDAY", ...]; empty = every day.'
    )
    limit_a = models.DecimalField(**AMPS)

    class Meta:
        ordering = ["node_id", "position", "id"]


class GridSignal(models.Model):
    """An external input for a node, valid until `valid_until`: a meter reading (current per phase measured
    at the node, all loads included) or a dynamic limit (per phase). The newest valid one of each kind is
    used by the next rebalance."""

    node = models.ForeignKey(GridNode, on_delete=models.CASCADE, related_name="signals")
    kind = models.CharField(max_length=16, choices=SignalKind.choices)
    l1_a = models.DecimalField(**AMPS)
    l2_a = models.DecimalField(**AMPS)
    l3_a = models.DecimalField(**AMPS)
    source = models.CharField(max_length=100, blank=True)
    measured_at = models.DateTimeField()
    valid_until = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-measured_at", "-id"]
        indexes = [models.Index(fields=["node", "kind", "valid_until"], name="gridsignal_node_kind_valid")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=SignalKind.values), name="gridsignal_kind_valid"
            )
        ]


class EvseElectrical(models.Model):
    """How an EVSE is wired and may be driven: the node it hangs off, its phases and rotation, its
    current range and priority. An EVSE without a row is not load-managed."""

    evse = models.OneToOneField(Evse, on_delete=models.CASCADE, related_name="electrical")
    node = models.ForeignKey(GridNode, on_delete=models.PROTECT, related_name="evses")
    # Grid phases (1-3) the charger's L1, L2, L3 are wired to, in order: "123" none, "231" rotated,
    # "3" a single-phase charger on grid L3.
    phase_rotation = models.CharField(max_length=3, default="123")
    min_current_a = models.DecimalField(**AMPS, default=6)
    max_current_a = models.DecimalField(**AMPS, default=32)
    priority = models.SmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_current_a__gte=0)
                & models.Q(max_current_a__gte=models.F("min_current_a")),
                name="evseelectrical_current_range",
            )
        ]


class EvseAllocation(models.Model):
    """What the balancer last decided for an EVSE and what was last sent to its charger."""

    evse = models.OneToOneField(Evse, on_delete=models.CASCADE, related_name="allocation")
    limit_a = models.DecimalField(**AMPS, default=0)
    paused = models.BooleanField(default=False)
    phases_used = models.CharField(max_length=3, blank=True)
    computed_at = models.DateTimeField()
    # The last TxProfile the charger accepted for this EVSE, and the transaction it was for (a profile dies
    # with its transaction: a new session on the EVSE has had none yet).
    sent_limit_a = models.DecimalField(**AMPS, null=True, blank=True)
    sent_transaction_id = models.CharField(max_length=36, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)


class ChargingProfileRecord(models.Model):
    """Every charging profile the platform sent (or cleared), with the command that carried it: what the
    charger should be doing, to compare with what it reports (GetCompositeSchedule)."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="charging_profiles")
    evse_id = models.PositiveIntegerField(default=0, help_text="OCPP EVSE/connector number; 0 = the station.")
    kind = models.CharField(max_length=12, choices=ProfileKind.choices)
    profile_id = models.IntegerField()
    stack_level = models.PositiveSmallIntegerField(default=0)
    limit_a = models.DecimalField(**AMPS, null=True, blank=True)
    transaction_id = models.CharField(max_length=36, blank=True)
    profile = models.JSONField(help_text="The profile exactly as sent (the version's wire format).")
    command = models.ForeignKey(Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(
        max_length=16, blank=True, help_text="The charger's answer status, or the failure."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["station", "created_at"], name="chargingprofile_station_time")]
