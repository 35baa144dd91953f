"""The portal under /portal/, namespace `portal`: every page a person uses in a browser (the API is under
/api/v1/, the admin under /admin/)."""

from django.urls import path

from cpms.portal import (
    accounts,
    certificates,
    finance,
    incidents,
    kpis,
    labels,
    payments,
    roaming,
    sessions,
    site_access,
    stations,
    waitlists,
)
from stations.api import urls as _station_api_urls  # noqa: F401 - registers the station_identity converter

app_name = "portal"

urlpatterns = [
    # accounts
    path("login/", accounts.PortalLoginView.as_view(), name="login"),
    path("logout/", accounts.PortalLogoutView.as_view(), name="logout"),
    path("users/", accounts.user_list_page, name="user-list"),
    path("users/invite/", accounts.user_invite_page, name="user-invite"),
    path("users/<int:pk>/", accounts.user_detail_page, name="user-detail"),
    path("audit/", accounts.audit_log_page, name="audit-log"),
    path("invite/<uidb64>/<token>/", accounts.invite_accept_page, name="invite-accept"),
    # sites and stations
    path("", stations.overview, name="overview"),
    path("sites/<int:pk>/", stations.site_detail, name="site-detail"),
    path("sites/<int:pk>/labels.pdf", labels.site_labels_pdf, name="site-labels"),
    path("stations/", stations.station_list_page, name="station-list"),
    path("stations/<station_identity:identity>/", stations.station_detail, name="station-detail"),
    path(
        "stations/<station_identity:identity>/commands/",
        stations.station_commands_page,
        name="station-commands",
    ),
    path(
        "stations/<station_identity:identity>/messages/",
        stations.station_messages_page,
        name="station-messages",
    ),
    path(
        "stations/<station_identity:identity>/configuration/",
        stations.station_configuration_page,
        name="station-configuration",
    ),
    path(
        "stations/<station_identity:identity>/command/<slug:operation>/",
        stations.station_command,
        name="station-command",
    ),
    # certificates (issue 16)
    path(
        "stations/<station_identity:identity>/certificates/",
        certificates.station_certificates_page,
        name="station-certificates",
    ),
    path(
        "stations/<station_identity:identity>/certificates/renew/",
        certificates.station_certificate_renew,
        name="station-certificate-renew",
    ),
    path(
        "stations/<station_identity:identity>/certificates/<int:pk>/revoke/",
        certificates.station_certificate_revoke,
        name="station-certificate-revoke",
    ),
    path(
        "certificate-authorities/",
        certificates.certificate_authority_list_page,
        name="certificate-authorities",
    ),
    # incidents
    path("incidents/", incidents.incident_list_page, name="incident-list"),
    path("incidents/<int:pk>/", incidents.incident_detail, name="incident-detail"),
    path("incidents/<int:pk>/acknowledge/", incidents.incident_acknowledge_view, name="incident-acknowledge"),
    path("incidents/<int:pk>/resolve/", incidents.incident_resolve_view, name="incident-resolve"),
    # charging sessions
    path("sessions/", sessions.session_list_page, name="session-list"),
    path("sessions/<int:pk>/", sessions.session_detail_page, name="session-detail"),
    # waitlists
    path("waitlists/", waitlists.waitlist_list_page, name="waitlist-list"),
    path("waitlists/site/<int:site_id>/", waitlists.waitlist_site_page, name="waitlist-site"),
    path("waitlists/site/<int:site_id>/join/", waitlists.waitlist_join_view, name="waitlist-join"),
    path("waitlists/entry/<int:entry_id>/leave/", waitlists.waitlist_leave_view, name="waitlist-leave"),
    # billing: revenue, exports and site prices
    path("revenue/", finance.revenue_page, name="revenue"),
    path("exports/", finance.exports_page, name="exports"),
    path("exports/jobs/<int:pk>/row/", finance.export_job_row, name="export-job-row"),
    path("prices/", finance.site_prices_page, name="site-prices"),
    path("prices/site/<int:site_id>/", finance.site_prices_site_page, name="site-prices-site"),
    path("prices/site/<int:site_id>/access/", site_access.site_access_rules_post, name="site-access-rules"),
    # ad-hoc card payments
    path("payments/", payments.payment_list_page, name="payment-list"),
    path("payments/<int:pk>/", payments.payment_detail_page, name="payment-detail"),
    # roaming (OCPI)
    path("roaming/", roaming.roaming_page, name="roaming"),
    path("roaming/partners/<int:pk>/", roaming.roaming_partner_page, name="roaming-partner"),
    path(
        "roaming/partners/<int:pk>/<slug:action>/",
        roaming.roaming_partner_action,
        name="roaming-partner-action",
    ),
    # KPIs and ROI
    path("kpis/", kpis.kpis_page, name="kpis"),
    path("roi/", kpis.roi_page, name="roi"),
]
