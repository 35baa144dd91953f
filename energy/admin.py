"""Admin for the energy app: grid nodes with their schedules, external signals, EVSE wiring, the balancer's
allocations and the charging profiles sent.

Scoped like the rest of the admin (stations/admin_scope.py): the topology (nodes, schedules, signals)
by its site, EVSE wiring, allocations and profiles by their station. Operators manage; site hosts and finance
read. Writes go through energy.services.topology: a node is created or changed there (the tree rules), its
schedule rows (the inline) are replaced as a whole, an EVSE's wiring is set there. Signals, allocations and
profiles are written by the system and only shown; schedule rows are edited on their node's page.
"""

from django import forms
from django.contrib import admin
from django.db.models import Q

from accounts.admin import (
    DomainValidatedForm,
    NoFullCountAdminMixin,
    ReadOnlyAdminMixin,
    ScopedInlineMixin,
    domain_errors_as_http,
    saved_adopt,
)
from cpms.errors import DomainError
from energy.models import (
    ChargingProfileRecord,
    EvseAllocation,
    EvseElectrical,
    GridNode,
    GridSignal,
    NodeLimitSchedule,
)
from energy.selectors import evse_electrical_scope_q, grid_node_scope_q
from energy.services.topology import (
    ScheduleRow,
    evse_electrical_set,
    evse_electrical_validate,
    grid_node_create,
    grid_node_delete,
    grid_node_update,
    grid_node_validate,
    node_schedule_set,
    schedule_row_validate,
)
from stations.admin_scope import SiteScopedAdminMixin
from stations.scope import station_scope_q

# --- grid nodes and their schedules ---------------------------------------------------------------------


def _node_choices_labelled(field):
    """Node choices named with their site: names repeat across sites ("Grid connection")."""
    if field is not None and field.queryset.model is GridNode:
        field.queryset = field.queryset.select_related("site")
        field.label_from_instance = lambda node: f"{node.site.name} / {node.name}"
    return field


class ScheduleRowForm(forms.ModelForm):
    class Meta:
        model = NodeLimitSchedule
        fields = ["position", "start_time", "end_time", "day_of_week", "limit_a"]
        help_texts = {
            "day_of_week": 'The days the period starts on, e.g. ["MONDAY", "FRIDAY"]; [] = every day.',
            "position": "The first matching row (lowest position) wins.",
        }

    def clean(self):
        cleaned = super().clean()
        if self.errors or cleaned.get("DELETE"):
            return cleaned
        days = cleaned.get("day_of_week") or []
        if not isinstance(days, list) or not all(isinstance(day, str) for day in days):
            raise forms.ValidationError('Days of the week: a list such as ["MONDAY", "FRIDAY"].')
        try:
            schedule_row_validate(_schedule_row(cleaned), field="row")
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc
        return cleaned


def _schedule_row(cleaned: dict) -> ScheduleRow:
    return ScheduleRow(
        start_time=cleaned["start_time"],
        end_time=cleaned["end_time"],
        limit_a=cleaned["limit_a"],
        day_of_week=tuple(cleaned.get("day_of_week") or ()),
    )


class NodeLimitScheduleInline(ScopedInlineMixin, admin.TabularInline):  # type: ignore[misc]  # the stubs' InlineModelAdmin.has_add_permission takes obj, BaseModelAdmin's not
    model = NodeLimitSchedule
    form = ScheduleRowForm
    extra = 0
    fields = ["position", "start_time", "end_time", "day_of_week", "limit_a"]
    ordering = ["position", "id"]

    def has_delete_permission(self, request, obj=None):
        # Removing a row is an edit of the node's schedule, not the deletion of a record.
        if self._is_unscoped(request):
            return super().has_delete_permission(request, obj)
        return self._parent_admin().has_change_permission(request, obj)


class DomainConstraintsForm(DomainValidatedForm):
    """A form whose model's database constraints (check constraints, the one root per site) are domain rules:
    Django's own check of them would only name the constraint ("Constraint ... is violated"), so the fields
    they involve are left to `domain_validate`, whose message says what the rule is. Their values are still
    validated by their form fields (type, digits)."""

    domain_checked: tuple[str, ...] = ()

    def _get_validation_exclusions(self):
        return {*super()._get_validation_exclusions(), *self.domain_checked}


class GridNodeAdminForm(DomainConstraintsForm):
    domain_checked = ("parent", "limit_a", "limit_kw")

    class Meta:
        model = GridNode
        fields = ["site", "parent", "name", "kind", "limit_a", "limit_kw", "voltage_v"]
        help_texts = {
            "parent": "A node of the same site; empty: the root, the site's grid connection (one per site).",
            "limit_kw": "Power of the whole connection, as amps per phase kW*1000/(3*voltage); the smaller "
            "of both limits applies.",
        }

    def domain_validate(self) -> None:
        grid_node_validate(self.instance)


@admin.register(GridNode)
class GridNodeAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    form = GridNodeAdminForm
    list_display = ["name", "site", "kind", "parent", "limit_a", "limit_kw", "voltage_v"]
    list_filter = [("site", admin.RelatedOnlyFieldListFilter), "kind"]
    list_select_related = ["site", "parent"]
    search_fields = ["name", "site__name"]
    ordering = ["site_id", "id"]
    fields = ["site", "parent", "name", "kind", "limit_a", "limit_kw", "voltage_v", "created_at"]
    readonly_fields = ["created_at"]
    inlines = [NodeLimitScheduleInline]

    def scope_q(self, *, user, capability) -> Q:
        return grid_node_scope_q(user=user, capability=capability)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return _node_choices_labelled(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def get_readonly_fields(self, request, obj=None):
        # A node never changes site or kind (energy.services.topology).
        if obj is not None:
            return ["site", "kind", "created_at"]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with domain_errors_as_http():
            if change:
                node = grid_node_update(
                    node=obj,
                    name=data["name"],
                    limit_a=data["limit_a"],
                    limit_kw=data["limit_kw"],
                    voltage_v=data["voltage_v"],
                    parent_id=obj.parent_id,
                )
            else:
                node = grid_node_create(
                    site=obj.site,
                    name=data["name"],
                    kind=data["kind"],
                    parent_id=obj.parent_id,
                    limit_a=data["limit_a"],
                    limit_kw=data["limit_kw"],
                    voltage_v=data["voltage_v"],
                )
        saved_adopt(obj, node)

    def save_formset(self, request, form, formset, change):
        if formset.model is not NodeLimitSchedule:
            return super().save_formset(request, form, formset, change)
        kept = []
        for index, row_form in enumerate(formset.forms):
            cleaned = getattr(row_form, "cleaned_data", None)
            if not cleaned or (formset.can_delete and formset._should_delete_form(row_form)):
                continue
            if row_form.instance.pk is None and not row_form.has_changed():
                continue  # an empty extra row
            kept.append((cleaned.get("position") or 0, index, _schedule_row(cleaned)))
        kept.sort(key=lambda item: item[:2])
        with domain_errors_as_http():
            node_schedule_set(node=form.instance, rows=[row for _, _, row in kept])
        # The change message reads what a formset saved; the service replaced the rows as a whole.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        return None

    def delete_model(self, request, obj):
        with domain_errors_as_http():
            grid_node_delete(node=obj)

    def delete_queryset(self, request, queryset):
        # Leaves first, so that a whole subtree selected at once can go.
        with domain_errors_as_http():
            for node in sorted(queryset, key=lambda node: -node.pk):
                grid_node_delete(node=node)


@admin.register(NodeLimitSchedule)
class NodeLimitScheduleAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Every schedule row, for lookups; they are edited on their node's page."""

    list_display = ["node", "position", "start_time", "end_time", "day_of_week", "limit_a"]
    list_select_related = ["node", "node__site"]
    ordering = ["node_id", "position", "id"]

    def scope_q(self, *, user, capability) -> Q:
        return grid_node_scope_q(user=user, capability=capability, prefix="node__")


@admin.register(GridSignal)
class GridSignalAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Meter readings and dynamic limits as received (POST /grid-nodes/{id}/signals/), newest first."""

    list_display = [
        "measured_at",
        "node",
        "kind",
        "l1_a",
        "l2_a",
        "l3_a",
        "valid_until",
        "source",
        "received_at",
    ]
    list_filter = ["kind"]
    list_select_related = ["node"]
    search_fields = ["node__name", "source"]
    ordering = ["-measured_at", "-id"]

    def scope_q(self, *, user, capability) -> Q:
        return grid_node_scope_q(user=user, capability=capability, prefix="node__")


# --- EVSE wiring, allocations, profiles ----------------------------------------------------------------


class EvseElectricalAdminForm(DomainConstraintsForm):
    domain_checked = ("min_current_a", "max_current_a")

    class Meta:
        model = EvseElectrical
        fields = ["evse", "node", "phase_rotation", "min_current_a", "max_current_a", "priority"]
        help_texts = {
            "node": "A grid node of the station's site.",
            "phase_rotation": "The grid phases (1-3) the charger's L1, L2, L3 are wired to: '123' none, "
            "'231' rotated, '3' a single-phase charger on grid L3.",
        }

    def domain_validate(self) -> None:
        evse_electrical_validate(self.instance)


@admin.register(EvseElectrical)
class EvseElectricalAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    form = EvseElectricalAdminForm
    list_display = ["evse", "station", "node", "phase_rotation", "min_current_a", "max_current_a", "priority"]
    list_select_related = ["evse__station", "node"]
    list_filter = [("node__site", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=evse__station__identity", "node__name"]
    raw_id_fields = ["evse"]

    def scope_q(self, *, user, capability) -> Q:
        return evse_electrical_scope_q(user=user, capability=capability)

    @admin.display(description="Station", ordering="evse__station__identity")
    def station(self, electrical: EvseElectrical) -> str:
        return electrical.evse.station.identity

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return _node_choices_labelled(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def get_readonly_fields(self, request, obj=None):
        return ["evse"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        with domain_errors_as_http():
            electrical = evse_electrical_set(
                evse=obj.evse,
                node_id=obj.node_id,
                phase_rotation=obj.phase_rotation,
                min_current_a=obj.min_current_a,
                max_current_a=obj.max_current_a,
                priority=obj.priority,
            )
        saved_adopt(obj, electrical)


@admin.register(EvseAllocation)
class EvseAllocationAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """What the balancer last decided per EVSE, and what the charger last accepted."""

    list_display = ["evse", "limit_a", "paused", "phases_used", "computed_at", "sent_limit_a", "sent_at"]
    list_select_related = ["evse__station"]
    list_filter = ["paused"]
    search_fields = ["=evse__station__identity"]

    def scope_q(self, *, user, capability) -> Q:
        return evse_electrical_scope_q(user=user, capability=capability)


@admin.register(ChargingProfileRecord)
class ChargingProfileRecordAdmin(
    ReadOnlyAdminMixin, NoFullCountAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin
):
    """Every charging profile sent (or cleared), newest first."""

    list_display = [
        "created_at",
        "station",
        "evse_id",
        "kind",
        "profile_id",
        "stack_level",
        "limit_a",
        "transaction_id",
        "status",
    ]
    list_filter = ["kind", "status"]
    list_select_related = ["station"]
    search_fields = ["=station__identity", "=transaction_id"]
    ordering = ["-created_at", "-id"]

    def scope_q(self, *, user, capability) -> Q:
        return station_scope_q(user=user, capability=capability, prefix="station__")
