"""Placeholder until the tariffs module lands (issue 17, in progress)."""


def tariffs_push_changes() -> int:
    return 0
