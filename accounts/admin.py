"""Admin for accounts, and the scoping every app's admin shares (ScopedAdminMixin and friends).

Non-superuser staff get their admin rights from their roles (accounts.enums.ROLE_CAPABILITIES), not from
Django model permissions: they see what accounts.selectors (and stations.scope) lets them see, change what
they may `manage`, and delete nothing. An object outside their scope does not exist for them (its change page redirects to the
admin index, as for a deleted object). Superusers see and do everything, as Django's admin normally allows.
"""

from contextlib import contextmanager
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import BadRequest
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.db.models import Model, Q, QuerySet
from django.http import Http404
from django.utils.functional import cached_property

from accounts.enums import Capability
from accounts.models import AuditAction, AuditRecord, Membership, Organisation, User
from accounts.selectors import membership_roles, organisation_ids_with
from accounts.services import audit_record, membership_set, organisation_create
from cpms.errors import DomainError, NotFound, PermissionDenied


@contextmanager
def domain_errors_as_http():
    """For admin save paths: a service refusing what the form let through (a race, a rule the form does not
    know) becomes a 4xx page instead of a 500. Forms report the usual refusals themselves beforehand."""
    try:
        yield
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from exc
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except DomainError as exc:
        raise BadRequest(exc.message) from exc


def saved_adopt(obj: Model, saved: Model) -> None:
    """Copy what a service saved into the instance the admin keeps using (log entries, inline formsets,
    the redirect after saving all hold a reference to `obj`)."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


class DomainValidatedForm(forms.ModelForm):
    """A ModelForm that runs the domain's rules (the ones services enforce) on the constructed instance, so
    that the admin shows them as form errors before the service is called."""

    def domain_validate(self) -> None:
        """Raise a cpms.errors.DomainError when self.instance breaks a domain rule."""

    def _post_clean(self):
        super()._post_clean()
        if self.errors:  # the instance is only partly built: the field errors say enough
            return
        try:
            self.domain_validate()
        except DomainError as exc:
            self.add_error(None, exc.message)


class ScopedAdminMixin:
    """Role-scoped admin. Subclasses define `scope_q(user, capability)`: the Q of the objects of their model
    that `user` holds `capability` on (superusers are not asked).

    - changelist, change page, history and delete only reach objects inside the `view` scope (get_queryset);
    - change and add need `manage_capability` (None: read-only for non-superusers), on the object itself;
    - foreign-key choices only offer objects the user may manage, as far as the related model's admin is
      scoped too (so a station cannot be put on another tenant's site by editing the form);
    - deleting is for superusers only.
    """

    manage_capability: str | None = Capability.MANAGE
    superuser_only = False
    # Set by the ModelAdmin this is mixed into.
    model: type[Model]
    admin_site: admin.AdminSite

    def scope_q(self, *, user: User, capability: str) -> Q:
        raise NotImplementedError

    def capable_somewhere(self, *, user: User, capability: str) -> bool:
        """Whether the user's roles grant `capability` anywhere (the changelist and the add page).

        Here: an organisation-wide role. The admins of the apps above accounts use
        stations.admin_scope.SiteScopedAdminMixin, which adds the site host's sites."""
        return bool(organisation_ids_with(user=user, capability=capability))

    def has_command_permission(self, request, obj=None) -> bool:
        """For admin actions with `permissions=["command"]` (they send OCPP calls)."""
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return user.is_superuser or self.capable_somewhere(user=user, capability=Capability.COMMAND)

    def _is_unscoped(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if self._is_unscoped(request):
            return qs
        if self.superuser_only or not (request.user.is_active and request.user.is_staff):
            return qs.none()
        return qs.filter(self.scope_q(user=request.user, capability=Capability.VIEW))

    def _holds(self, request, obj, capability: str | None) -> bool:
        # The admin asks for every registered model on every page, the login page included (the app list),
        # so anonymous and inactive users arrive here too.
        user = request.user
        if capability is None or self.superuser_only or not (user.is_active and user.is_staff):
            return False
        if obj is None:
            return self.capable_somewhere(user=request.user, capability=capability)
        scope = self.scope_q(user=request.user, capability=capability)
        return self.model._default_manager.filter(scope, pk=obj.pk).exists()

    def has_module_permission(self, request):
        if self._is_unscoped(request):
            return super().has_module_permission(request)
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        if self._is_unscoped(request):
            return super().has_view_permission(request, obj)
        return self._holds(request, obj, Capability.VIEW)

    def has_change_permission(self, request, obj=None):
        if self._is_unscoped(request):
            return super().has_change_permission(request, obj)
        return self._holds(request, obj, self.manage_capability)

    def has_add_permission(self, request, *args):
        if self._is_unscoped(request):
            return super().has_add_permission(request, *args)
        return self._holds(request, None, self.manage_capability)

    def has_delete_permission(self, request, obj=None):
        if self._is_unscoped(request):
            return super().has_delete_permission(request, obj)
        return False

    def _related_scoped_admin(self, model) -> "ScopedAdminMixin | None":
        try:
            related = self.admin_site.get_model_admin(model)
        except NotRegistered:
            return None
        return related if isinstance(related, ScopedAdminMixin) else None

    # Audit log (docs/reliability.md case 42): Django's LogEntry can be edited and deleted; every admin write
    # also leaves an AuditRecord, in the same transaction as the change.

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        audit_record(
            actor=request.user,
            action=AuditAction.ADMIN_ADD,
            obj=obj,
            changes={"message": message},
            request=request,
        )
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        audit_record(
            actor=request.user,
            action=AuditAction.ADMIN_CHANGE,
            obj=obj,
            changes={"message": message},
            request=request,
        )
        return entry

    def log_deletions(self, request, queryset):
        objects = list(queryset)  # the rows are about to go: record them first
        for obj in objects:
            audit_record(actor=request.user, action=AuditAction.ADMIN_DELETE, obj=obj, request=request)
        return super().log_deletions(request, objects)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not self._is_unscoped(request) and "queryset" not in kwargs:
            related = self._related_scoped_admin(db_field.related_model)
            if related is not None:
                capability = self.manage_capability or Capability.VIEW
                scope = related.scope_q(user=request.user, capability=capability)
                kwargs["queryset"] = db_field.related_model._default_manager.filter(scope)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ScopedInlineMixin:
    """Inline permissions follow the parent object's admin (an EVSE is as editable as its station)."""

    def _parent_admin(self):
        return self.admin_site.get_model_admin(self.parent_model)

    def _is_unscoped(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        if self._is_unscoped(request):
            return super().has_view_permission(request, obj)
        return self._parent_admin().has_view_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        if self._is_unscoped(request):
            return super().has_change_permission(request, obj)
        return self._parent_admin().has_change_permission(request, obj)

    def has_add_permission(self, request, obj):
        if self._is_unscoped(request):
            return super().has_add_permission(request, obj)
        return self._parent_admin().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if self._is_unscoped(request):
            return super().has_delete_permission(request, obj)
        return False


class ReadOnlyAdminMixin:
    """Logs and charger-reported records: nobody adds, edits or deletes them in the admin (they are evidence;
    retention is the purge task's job). Place it before ScopedAdminMixin."""

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BoundedCountPaginator(Paginator):
    """Counts at most `count_limit` rows (SELECT COUNT(*) FROM (... LIMIT n)), never the whole table."""

    def __init__(self, object_list, per_page, orphans=0, allow_empty_first_page=True, *, count_limit: int):
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.count_limit = count_limit

    @cached_property
    def count(self) -> int:
        # The admin's changelist paginates a queryset.
        return cast(QuerySet[Any], self.object_list)[: self.count_limit].count()


class NoFullCountAdminMixin:
    """For append-only tables with millions of rows (meter values, the OCPP frame log): the changelist never
    counts the table. The paginator counts up to PAGES_AHEAD pages past the one shown, so the page links grow
    as one pages on, and `show_full_result_count = False` drops the second, unfiltered COUNT(*)."""

    PAGES_AHEAD = 10
    show_full_result_count = False

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:
            page = max(1, int(request.GET.get("p", 1)))
        except ValueError:
            page = 1
        return BoundedCountPaginator(
            queryset,
            per_page,
            orphans,
            allow_empty_first_page,
            count_limit=(page + self.PAGES_AHEAD) * per_page + 1,
        )


# --- accounts models ------------------------------------------------------------------------------


class MembershipInline(ScopedInlineMixin, admin.TabularInline):
    """Shown on the user page; roles are changed on the membership page, which goes through membership_set."""

    model = Membership
    extra = 0
    fields = readonly_fields = ("organisation", "role", "created_at")
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(ScopedAdminMixin, DjangoUserAdmin):
    # Editing users (is_superuser, is_staff, passwords) is platform administration.
    superuser_only = True
    inlines = [MembershipInline]
    list_display = ["username", "email", "first_name", "last_name", "is_staff", "is_superuser", "is_active"]

    def scope_q(self, *, user, capability):
        return Q(pk__in=[])


@admin.register(Organisation)
class OrganisationAdmin(ScopedAdminMixin, admin.ModelAdmin):
    # Tenants are created and renamed by superusers (as in the API); members see theirs read-only.
    manage_capability = None
    list_display = ["name", "slug", "currency", "auto_register_stations", "created_at"]
    list_filter = ["auto_register_stations"]
    search_fields = ["name", "slug"]
    readonly_fields = ["created_at"]

    def scope_q(self, *, user, capability):
        if capability == Capability.VIEW:
            return Q(pk__in=list(membership_roles(user=user)))
        return Q(pk__in=organisation_ids_with(user=user, capability=capability))

    def capable_somewhere(self, *, user, capability):
        if capability == Capability.VIEW:
            return bool(membership_roles(user=user))
        return super().capable_somewhere(user=user, capability=capability)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        with domain_errors_as_http():
            organisation = organisation_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                slug=form.cleaned_data["slug"],
                auto_register_stations=form.cleaned_data["auto_register_stations"],
                currency=form.cleaned_data["currency"],
            )
        saved_adopt(obj, organisation)
        return None


@admin.register(Membership)
class MembershipAdmin(ScopedAdminMixin, admin.ModelAdmin):
    # Granting roles is platform administration until a user-management issue scopes it to operator admins.
    superuser_only = True
    list_display = ["user", "organisation", "role", "created_at"]
    list_filter = ["role", ("organisation", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user", "organisation"]
    search_fields = ["user__username", "user__email", "organisation__name"]
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]

    def scope_q(self, *, user, capability):
        return Q(pk__in=[])

    def get_readonly_fields(self, request, obj=None):
        # One role per (user, organisation): changing either would be another membership.
        if obj is not None:
            return ["user", "organisation", "created_at"]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        with domain_errors_as_http():
            membership = membership_set(user=obj.user, organisation=obj.organisation, role=obj.role)
        saved_adopt(obj, membership)


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """The audit log: read-only for everyone, superusers included (the database refuses changes anyway).
    Operator admins see their organisations' records (the users they manage are theirs to audit)."""

    manage_capability = None
    list_display = [
        "created_at",
        "action",
        "actor",
        "organisation",
        "object_type",
        "object_repr",
        "remote_addr",
    ]
    list_filter = ["action"]
    list_select_related = ["actor", "organisation"]
    search_fields = ["object_repr", "object_id", "actor__username"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "created_at",
        "actor",
        "organisation",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "changes",
        "remote_addr",
    ]

    def scope_q(self, *, user, capability):
        return Q(organisation_id__in=organisation_ids_with(user=user, capability=Capability.MANAGE_USERS))

    def capable_somewhere(self, *, user, capability):
        return bool(organisation_ids_with(user=user, capability=Capability.MANAGE_USERS))
