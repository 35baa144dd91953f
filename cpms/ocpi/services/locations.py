"""Placeholder until the locations module lands (issue 17, in progress)."""


def locations_push_changes() -> int:
    return 0
