"""API paths of site waitlists (included by cpms/api_urls.py)."""

from django.urls import path

from sessions.api.waitlists import SiteWaitlistApi, WaitlistEntryDetailApi

urlpatterns = [
    path("sites/<int:pk>/waitlist/", SiteWaitlistApi.as_view(), name="site-waitlist"),
    path("waitlist-entries/<int:pk>/", WaitlistEntryDetailApi.as_view(), name="waitlist-entry-detail"),
]
