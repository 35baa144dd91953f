"""Placeholder until the cdrs module lands (issue 17, in progress)."""


def cdrs_push_pending() -> int:
    return 0
