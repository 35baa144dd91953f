"""What an answered command means for the domain: per (version, action), a hook that runs in the
transaction recording the answer (stations.services.commands.command_finish). Each builder module keeps
the hooks of its own actions."""

from cpms.ocpp import commands, commands_auth, commands_firmware
from stations.services.commands import AnswerHook


def _chained(*hooks: AnswerHook) -> AnswerHook:
    def hook(command, response: dict) -> None:
        for each in hooks:
            each(command, response)

    return hook


def _merged(*modules: dict[tuple[str, str], AnswerHook]) -> dict[tuple[str, str], AnswerHook]:
    """One hook per (version, action); where several modules mean something by the same answer (a
    SetVariables both sets device variables and may rotate the password), each runs, in module order."""
    merged: dict[tuple[str, str], list[AnswerHook]] = {}
    for hooks in modules:
        for key, hook in hooks.items():
            merged.setdefault(key, []).append(hook)
    return {key: hooks[0] if len(hooks) == 1 else _chained(*hooks) for key, hooks in merged.items()}


HOOKS: dict[tuple[str, str], AnswerHook] = _merged(
    commands.HOOKS, commands_firmware.HOOKS, commands_auth.HOOKS
)


def answer_hook(version: str, action: str) -> AnswerHook | None:
    return HOOKS.get((version, action))
