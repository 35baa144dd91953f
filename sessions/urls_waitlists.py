"""Portal URLs of site waitlists (namespace `portal`)."""

from django.urls import path

from sessions.views import waitlists

urlpatterns = [
    path("waitlists/", waitlists.waitlist_list_page, name="waitlist-list"),
    path("waitlists/site/<int:site_id>/", waitlists.waitlist_site_page, name="waitlist-site"),
    path("waitlists/site/<int:site_id>/join/", waitlists.waitlist_join_view, name="waitlist-join"),
    path("waitlists/entry/<int:entry_id>/leave/", waitlists.waitlist_leave_view, name="waitlist-leave"),
]
