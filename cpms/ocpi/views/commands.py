"""Placeholder: the commands module's URLs are added by its implementation (issue 17, in progress)."""

urlpatterns: list = []
