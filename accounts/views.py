"""Portal pages of the accounts app: log in and out."""

from django.contrib.auth import views as auth_views


class PortalLoginView(auth_views.LoginView):
    """Django's login (the session key rotates at login: RELIABILITY 40)."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class PortalLogoutView(auth_views.LogoutView):
    """POST only (Django 5): a link or an image tag cannot log a user out."""
