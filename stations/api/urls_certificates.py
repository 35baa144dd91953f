"""Certificate authorities and station certificates (stations/api/certificates.py).

The station_identity converter is registered by stations/api/urls.py, which includes this module."""

from django.urls import path

from stations.api.certificates import (
    CertificateAuthorityImportApi,
    CertificateAuthorityListApi,
    CsmsRootRolloutApi,
    StationCertificateListApi,
    StationCertificateRenewApi,
    StationCertificateRevokeApi,
)

urlpatterns = [
    path(
        "certificate-authorities/", CertificateAuthorityListApi.as_view(), name="certificate-authority-list"
    ),
    path(
        "certificate-authorities/import/",
        CertificateAuthorityImportApi.as_view(),
        name="certificate-authority-import",
    ),
    path(
        "certificate-authorities/<int:pk>/rollout/",
        CsmsRootRolloutApi.as_view(),
        name="certificate-authority-rollout",
    ),
    path(
        "stations/<station_identity:identity>/certificates/",
        StationCertificateListApi.as_view(),
        name="station-certificate-list",
    ),
    path(
        "stations/<station_identity:identity>/certificates/renew/",
        StationCertificateRenewApi.as_view(),
        name="station-certificate-renew",
    ),
    path(
        "stations/<station_identity:identity>/certificates/<int:pk>/revoke/",
        StationCertificateRevokeApi.as_view(),
        name="station-certificate-revoke",
    ),
]
