"""Placeholder until its owner adds the patterns."""

urlpatterns: list = []
