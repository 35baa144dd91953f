from django.urls import path

from cpms.ocpi.api.views import (
    RoamingPartnerDetailApi,
    RoamingPartnerListApi,
    RoamingPartnerOutboxApi,
    RoamingPartnerRegisterApi,
    RoamingPartnerResumeApi,
    RoamingPartnerRetryRefusedApi,
    RoamingPartnerRotateApi,
    RoamingPartnerSuspendApi,
    RoamingPartnerSyncApi,
    RoamingPartnerTokenAApi,
    RoamingPartnerUnregisterApi,
    RoamingPartyListApi,
)

PARTNER = "roaming/partners/<int:pk>/"

urlpatterns = [
    path("roaming/parties/", RoamingPartyListApi.as_view(), name="roaming-party-list"),
    path("roaming/partners/", RoamingPartnerListApi.as_view(), name="roaming-partner-list"),
    path(PARTNER, RoamingPartnerDetailApi.as_view(), name="roaming-partner-detail"),
    path(f"{PARTNER}register/", RoamingPartnerRegisterApi.as_view(), name="roaming-partner-register"),
    path(f"{PARTNER}rotate/", RoamingPartnerRotateApi.as_view(), name="roaming-partner-rotate"),
    path(f"{PARTNER}suspend/", RoamingPartnerSuspendApi.as_view(), name="roaming-partner-suspend"),
    path(f"{PARTNER}resume/", RoamingPartnerResumeApi.as_view(), name="roaming-partner-resume"),
    path(f"{PARTNER}unregister/", RoamingPartnerUnregisterApi.as_view(), name="roaming-partner-unregister"),
    path(f"{PARTNER}token-a/", RoamingPartnerTokenAApi.as_view(), name="roaming-partner-token-a"),
    path(f"{PARTNER}sync/", RoamingPartnerSyncApi.as_view(), name="roaming-partner-sync"),
    path(
        f"{PARTNER}retry-refused/",
        RoamingPartnerRetryRefusedApi.as_view(),
        name="roaming-partner-retry-refused",
    ),
    path(f"{PARTNER}outbox/", RoamingPartnerOutboxApi.as_view(), name="roaming-partner-outbox"),
]
