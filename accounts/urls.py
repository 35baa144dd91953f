"""Portal URLs of the accounts app (namespace `portal`)."""

from django.urls import path

from accounts.views import (
    PortalLoginView,
    PortalLogoutView,
    audit_log_page,
    invite_accept_page,
    user_detail_page,
    user_invite_page,
    user_list_page,
)

urlpatterns = [
    path("login/", PortalLoginView.as_view(), name="login"),
    path("logout/", PortalLogoutView.as_view(), name="logout"),
    path("users/", user_list_page, name="user-list"),
    path("users/invite/", user_invite_page, name="user-invite"),
    path("users/<int:pk>/", user_detail_page, name="user-detail"),
    path("audit/", audit_log_page, name="audit-log"),
    path("invite/<uidb64>/<token>/", invite_accept_page, name="invite-accept"),
]
