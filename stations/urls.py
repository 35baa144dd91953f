"""Plain HTTP endpoints for chargers (not the API): firmware downloads and diagnostics/log uploads."""

from django.urls import path

from stations.views.files import firmware_download, ocpp_upload
from stations.views.pki import ca_crl

urlpatterns = [
    path("firmware/<str:token>/<str:filename>", firmware_download, name="firmware-download"),
    path("ocpp-upload/<str:token>/", ocpp_upload, name="ocpp-upload"),
    # <path:>: a name with '/' (decoded %2F) still reaches the view, which keeps only its last segment.
    path("ocpp-upload/<str:token>/<path:filename>", ocpp_upload, name="ocpp-upload-file"),
    path("pki/ca/<int:pk>/crl.der", ca_crl, name="pki-ca-crl"),
]
