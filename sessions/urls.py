"""Portal URLs about charging sessions (namespace `portal`)."""

from django.urls import path

from sessions.views import sessions

urlpatterns = [
    path("sessions/", sessions.session_list_page, name="session-list"),
    path("sessions/<int:pk>/", sessions.session_detail_page, name="session-detail"),
]
