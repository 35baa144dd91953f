"""What an answered command means for the domain: per (version, action), a hook that runs in the
transaction recording the answer (stations.services.commands.command_finish)."""

from stations.services.commands import AnswerHook

HOOKS: dict[tuple[str, str], AnswerHook] = {}


def answer_hook(version: str, action: str) -> AnswerHook | None:
    return HOOKS.get((version, action))
