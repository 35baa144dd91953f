"""Placeholder until the sessions module lands (issue 17, in progress)."""


def sessions_push_changes() -> int:
    return 0
