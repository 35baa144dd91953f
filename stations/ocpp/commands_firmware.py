"""Version-neutral command builders (placeholder; being written)."""

from stations.services.commands import AnswerHook

HOOKS: dict[tuple[str, str], AnswerHook] = {}
