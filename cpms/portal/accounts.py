"""Portal pages of the accounts app: log in and out, user management and the audit log (operator admins),
and accepting an invitation."""

import json
from datetime import datetime, time, timedelta
from typing import TypedDict
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.enums import Capability, Role
from accounts.forms import AuditFilterForm, InviteForm, RoleForm, SiteGrantsForm
from accounts.models import Membership, Organisation, User
from accounts.selectors import (
    AuditFilters,
    audit_record_list,
    managed_organisation_list,
    organisation_access,
    organisation_user_access,
    organisation_user_list,
)
from accounts.services import user_activate, user_deactivate, user_invite_accept, user_invite_resend
from cpms.errors import DomainError, PermissionDenied
from cpms.portal.base import PortalRequest, page_of, portal_view, require_capability
from stations.scope import user_site_grants
from stations.services.site_hosts import user_invite, user_role_set, user_site_grants_set


class PortalLoginView(auth_views.LoginView):
    """Django's login (the session key rotates at login: docs/reliability.md case 40)."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class PortalLogoutView(auth_views.LogoutView):
    """POST only (Django 5): a link or an image tag cannot log a user out."""


def _failed_login_form(request: HttpRequest, form_class=AuthenticationForm):
    """The login form as after a wrong password, without authenticating again (which would count one more
    failure)."""
    form = form_class(request, data=request.POST)
    form._errors = ErrorDict()
    form.cleaned_data = {}
    form.add_error(
        None,
        ValidationError(
            form.error_messages["invalid_login"],
            code="invalid_login",
            params={"username": form.username_field.verbose_name},
        ),
    )
    return form


def login_lockout_response(
    request: HttpRequest, original_response=None, credentials=None
) -> HttpResponseBase:
    """django-axes' answer to a locked-out login (AXES_LOCKOUT_CALLABLE): the login page with the same
    generic error as a wrong password, so that a lockout reveals nothing about the account
    (docs/reliability.md case 41).

    axes' synchronous middleware hands over the response the login view rendered (the form with that
    error already); its asynchronous path (ASGI) passes none, so the page is rendered here."""
    if isinstance(original_response, HttpResponseBase):
        return original_response
    if request.path.startswith(reverse("admin:index")):
        from django.contrib.admin.forms import AdminAuthenticationForm

        context = {
            **admin.site.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": "",
            "form": _failed_login_form(request, AdminAuthenticationForm),
            "next": request.POST.get("next", ""),
        }
        return render(request, "admin/login.html", context)
    return render(
        request,
        "accounts/login.html",
        {"form": _failed_login_form(request), "next": request.POST.get("next", "")},
    )


# --- user management -----------------------------------------------------------------------------------


def _zone_of(user: User) -> ZoneInfo:
    """The viewer's time zone: their first managed organisation's first site's, else UTC."""
    from stations.models import Site

    organisations = managed_organisation_list(user=user).order_by("pk")
    site = Site.objects.filter(organisation__in=organisations).order_by("organisation_id", "pk").first()
    try:
        return ZoneInfo(site.time_zone) if site is not None else ZoneInfo("UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _managed_sites(user: User):
    from stations.models import Site

    return list(
        Site.objects.filter(organisation__in=managed_organisation_list(user=user))
        .select_related("organisation")
        .order_by("organisation__name", "name")
    )


def _site_names(organisation, site_ids: list[int]) -> list[str]:
    from stations.models import Site

    return list(
        Site.objects.filter(organisation=organisation, pk__in=site_ids)
        .order_by("name")
        .values_list("name", flat=True)
    )


@portal_view
def user_list_page(request: PortalRequest):
    require_capability(request, Capability.MANAGE_USERS)
    users = organisation_user_list(user=request.user)
    page = page_of(request, users)
    rows = []
    for member in page.object_list:
        memberships = []
        for membership in member.managed_memberships:
            sites = []
            if membership.role == Role.SITE_HOST:
                site_ids, _ = user_site_grants(user=member, organisation=membership.organisation)
                sites = _site_names(membership.organisation, site_ids)
            memberships.append({"membership": membership, "sites": sites})
        rows.append({"user": member, "memberships": memberships})
    return render(
        request, "accounts/user_list.html", {"page": page, "rows": rows, "zone": str(_zone_of(request.user))}
    )


@portal_view
@require_http_methods(["GET", "POST"])
def user_invite_page(request: PortalRequest):
    require_capability(request, Capability.MANAGE_USERS)
    organisations = list(managed_organisation_list(user=request.user).order_by("name"))
    if not organisations:
        raise PermissionDenied("Your role may not manage users.")
    form = InviteForm(request.POST or None, organisations=organisations, sites=_managed_sites(request.user))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            organisation = organisation_access(
                user=request.user, pk=data["organisation"], capability=Capability.MANAGE_USERS
            )
            invited = user_invite(
                actor=request.user,
                organisation=organisation,
                email=data["email"],
                role=data["role"],
                sites=data["sites"] if data["role"] == Role.SITE_HOST else (),
                may_set_prices=data["may_set_prices"] if data["role"] == Role.SITE_HOST else False,
                request=request,
            )
        except PermissionDenied:
            raise
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Invitation sent to {invited.email}.")
            return redirect("portal:user-detail", pk=invited.pk)
    return render(request, "accounts/user_invite.html", {"form": form}, status=400 if form.errors else 200)


USER_OPERATIONS = ("role", "sites", "deactivate", "activate", "resend")


@portal_view
@require_http_methods(["GET", "POST"])
def user_detail_page(request: PortalRequest, pk: int):
    require_capability(request, Capability.MANAGE_USERS)
    member = organisation_user_access(user=request.user, pk=pk)
    if request.method == "POST":
        return _user_operation(request, member)
    managed = []
    # Prefetched with to_attr by the selector, which the stubs cannot follow (the ignore).
    for membership in member.managed_memberships:  # type: ignore[attr-defined]
        organisation = membership.organisation
        entry = {
            "membership": membership,
            "role_form": RoleForm(initial={"organisation": organisation.pk, "role": membership.role}),
        }
        if membership.role == Role.SITE_HOST:
            site_ids, price_ids = user_site_grants(user=member, organisation=organisation)
            from stations.models import Site

            entry["sites_form"] = SiteGrantsForm(
                initial={
                    "organisation": organisation.pk,
                    "sites": site_ids,
                    "may_set_prices": bool(site_ids) and set(site_ids) <= set(price_ids),
                },
                sites=Site.objects.filter(organisation=organisation).order_by("name"),
            )
            entry["site_names"] = _site_names(organisation, site_ids)
        managed.append(entry)
    return render(
        request,
        "accounts/user_detail.html",
        {
            "member": member,
            "managed": managed,
            "zone": str(_zone_of(request.user)),
            "is_self": member.pk == request.user.pk,
            "pending_invite": not member.has_usable_password(),
        },
    )


class _Acting(TypedDict):
    """Who changes whose membership where: what every operation on the user page passes."""

    actor: User
    user: User
    organisation: Organisation
    request: HttpRequest


def _user_operation(request: PortalRequest, member: User) -> HttpResponse:
    from stations.models import Site

    operation = request.POST.get("op", "")
    if operation not in USER_OPERATIONS:
        messages.error(request, "Unknown operation.")
        return redirect("portal:user-detail", pk=member.pk)
    try:
        organisation_id = int(request.POST.get("organisation", ""))
    except ValueError:
        organisation_id = None
    # Prefetched with to_attr by the selector, which the stubs cannot follow (the ignore).
    memberships: list[Membership] = member.managed_memberships  # type: ignore[attr-defined]
    membership = next(
        (m for m in memberships if m.organisation_id == organisation_id),
        memberships[0] if organisation_id is None and len(memberships) == 1 else None,
    )
    if membership is None:
        messages.error(request, "Choose one of the user's organisations.")
        return redirect("portal:user-detail", pk=member.pk)
    organisation = membership.organisation
    common: _Acting = {
        "actor": request.user,
        "user": member,
        "organisation": organisation,
        "request": request,
    }
    form: forms.Form
    try:
        if operation == "role":
            form = RoleForm(request.POST)
            if not form.is_valid():
                raise ValidationError("Choose a role.")
            user_role_set(role=form.cleaned_data["role"], **common)
            done = f"Role set to {Role(form.cleaned_data['role']).label} in {organisation.name}."
        elif operation == "sites":
            form = SiteGrantsForm(request.POST, sites=Site.objects.filter(organisation=organisation))
            if not form.is_valid():
                raise ValidationError("Choose sites of this organisation.")
            user_site_grants_set(
                sites=form.cleaned_data["sites"], may_set_prices=form.cleaned_data["may_set_prices"], **common
            )
            done = "Site grants saved."
        elif operation == "deactivate":
            user_deactivate(**common)
            done = f"{member.get_username()} can no longer log in."
        elif operation == "activate":
            user_activate(**common)
            done = f"{member.get_username()} can log in again."
        else:
            user_invite_resend(**common)
            done = f"Invitation sent again to {member.email}."
    except PermissionDenied:
        raise
    except DomainError as exc:
        messages.error(request, exc.message)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, done)
    return redirect("portal:user-detail", pk=member.pk)


# --- audit log ----------------------------------------------------------------------------------------


@portal_view
def audit_log_page(request: PortalRequest):
    require_capability(request, Capability.MANAGE_USERS)
    zone = _zone_of(request.user)
    actors = organisation_user_list(user=request.user)
    form = AuditFilterForm(request.GET or None, actors=actors)
    filters = AuditFilters()
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = AuditFilters(
            action=data["action"] or "",
            actor_id=data["actor"],
            since=datetime.combine(data["since"], time(), tzinfo=zone) if data["since"] else None,
            until=datetime.combine(data["until"] + timedelta(days=1), time(), tzinfo=zone)
            if data["until"]
            else None,
        )
    page = page_of(request, audit_record_list(user=request.user, filters=filters))
    for record in page.object_list:
        record.changes_text = json.dumps(record.changes, indent=2, sort_keys=True, ensure_ascii=False)
    return render(
        request,
        "accounts/audit_log.html",
        {"page": page, "form": form, "zone": str(zone)},
        status=400 if form.is_bound and form.errors else 200,
    )


# --- invitations (public) -------------------------------------------------------------------------------


def _invited_user(uidb64: str, token: str) -> User | None:
    """The active user the link was made for, if its token is still good (it stops working once a password
    is set, and after PASSWORD_RESET_TIMEOUT)."""
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (TypeError, ValueError, OverflowError):
        return None
    user = User.objects.filter(pk=pk, is_active=True).first()
    if user is None or not default_token_generator.check_token(user, token):
        return None
    return user


@never_cache
@sensitive_post_parameters("new_password1", "new_password2")
@require_http_methods(["GET", "POST"])
def invite_accept_page(request: HttpRequest, uidb64: str, token: str):
    user = _invited_user(uidb64, token)
    if user is None:
        return render(request, "accounts/invite_invalid.html", status=404)
    form = SetPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user_invite_accept(user=user, password=form.cleaned_data["new_password1"], request=request)
        messages.success(request, "Your password is set. Log in with your username and the new password.")
        return redirect("portal:login")
    return render(
        request,
        "accounts/invite_accept.html",
        {"form": form, "invited": user},
        status=400 if form.errors else 200,
    )
