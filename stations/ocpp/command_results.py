"""What an answered command means for the domain: per (version, action), a hook that runs in the
transaction recording the answer (stations.services.commands.command_finish). Each builder module keeps
the hooks of its own actions."""

from stations.ocpp import commands, commands_auth, commands_firmware
from stations.services.commands import AnswerHook

HOOKS: dict[tuple[str, str], AnswerHook] = {
    **commands.HOOKS,
    **commands_firmware.HOOKS,
    **commands_auth.HOOKS,
}


def answer_hook(version: str, action: str) -> AnswerHook | None:
    return HOOKS.get((version, action))
