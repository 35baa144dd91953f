"""Portal URLs of the accounts app (namespace `portal`)."""

from django.urls import path

from accounts.views import PortalLoginView, PortalLogoutView

urlpatterns = [
    path("login/", PortalLoginView.as_view(), name="login"),
    path("logout/", PortalLogoutView.as_view(), name="logout"),
]
