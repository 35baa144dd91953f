"""A fake charger for tests of code that issues commands: `fake_charger.answers[action] = response` (a dict,
a `CallError(...)`, `TIMEOUT`, or a function of the request returning one of those), and every command is
claimed, answered and finished through the real services (answer hooks included); only the WebSocket is
skipped: the fake is the command transport (stations.services.commands.CommandTransport). The consumer and
e2e tests cover the real one."""

from dataclasses import dataclass, field

import pytest
from asgiref.sync import sync_to_async

from sessions.services.command_answers import answer_hook
from stations.enums import CommandStatus
from stations.models import Command
from stations.services import commands


@dataclass(frozen=True)
class CallError:
    code: str
    description: str = ""


TIMEOUT = object()


@dataclass
class FakeCharger:
    answers: dict = field(default_factory=dict)
    received: list[tuple[str, str, dict]] = field(default_factory=list)  # (identity, action, request)

    def finish(self, command) -> None:
        self.received.append((command.station.identity, command.action, command.request))
        claimed = commands.command_claim(
            command_id=command.pk, station_id=command.station_id, unique_id="fake-1"
        )
        assert claimed is not None
        answer = self.answers.get(command.action, {"status": "Accepted"})
        if callable(answer):  # an answer made from the request (e.g. one result per item asked)
            answer = answer(command.request)
        if answer is TIMEOUT:
            outcome = {
                "status": CommandStatus.TIMED_OUT,
                "error_code": "Timeout",
                "error_description": "no answer",
            }
        elif isinstance(answer, CallError):
            outcome = {
                "status": CommandStatus.FAILED,
                "error_code": answer.code,
                "error_description": answer.description or answer.code,
                "response": {
                    "errorCode": answer.code,
                    "errorDescription": answer.description,
                    "errorDetails": {},
                },
            }
        else:
            version = command.station.protocol.removeprefix("ocpp")
            outcome = {
                "status": CommandStatus.ANSWERED,
                "response": answer,
                "on_answer": answer_hook(version, command.action),
            }
        commands.command_finish(command_id=command.pk, **outcome)


class AnsweredReply:
    """The fake charger answered before `notify` returned: the word is already there."""

    async def wait(self, timeout_s: float) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class FakeTransport:
    charger: FakeCharger

    async def notify(self, *, identity: str, command_id: int, reply: bool) -> AnsweredReply:
        command = await sync_to_async(Command.objects.select_related("station").get)(pk=command_id)
        await sync_to_async(self.charger.finish)(command)
        return AnsweredReply()


@pytest.fixture
def fake_charger(monkeypatch) -> FakeCharger:
    charger = FakeCharger()
    monkeypatch.setattr(commands, "command_transport", lambda: FakeTransport(charger))
    return charger
