"""/ocpi/...: versions and credentials, then one URL list per module (OCPI 2.2.1 URL layout)."""

from django.urls import include, path, re_path

from cpms.ocpi.enums import OCPI_VERSION
from cpms.ocpi.views.base import not_found

app_name = "ocpi"

urlpatterns = [
    path("", include("cpms.ocpi.views.versions")),
    path(f"{OCPI_VERSION}/", include("cpms.ocpi.views.locations")),
    path(f"{OCPI_VERSION}/", include("cpms.ocpi.views.tariffs")),
    path(f"{OCPI_VERSION}/", include("cpms.ocpi.views.sessions")),
    path(f"{OCPI_VERSION}/", include("cpms.ocpi.views.cdrs")),
    path(f"{OCPI_VERSION}/", include("cpms.ocpi.views.tokens")),
    path(f"{OCPI_VERSION}/", include("cpms.ocpi.views.commands")),
    path(f"{OCPI_VERSION}/", include("cpms.ocpi.views.charging_profiles")),
    path(f"{OCPI_VERSION}/", include("cpms.ocpi.views.hub_client_info")),
    re_path(r"^(?P<path>.*)$", not_found),
]
