"""The Local Authorization List of a simulated charger (OCPP 1.6 5.15 SendLocalList, 2.0.1 D01), kept
in memory with its version. Both versions answer SendLocalList with the same statuses."""

from dataclasses import dataclass, field

MAX_LENGTH = 100


@dataclass
class LocalList:
    # 0: no list (1.6 GetLocalListVersion, 2.0.1 D02).
    version: int = 0
    # id token -> its info as sent (1.6 idTagInfo, 2.0.1 idTokenInfo), snake_case.
    entries: dict[str, dict] = field(default_factory=dict)

    def update(self, *, version: int, full: bool, entries: list[tuple[str, dict | None]]) -> str:
        """Apply a SendLocalList: "Accepted", "VersionMismatch" or "Failed".

        Full replaces the list. Differential must bring a higher version (1.6 VersionMismatch: "less or
        equal than the version of the current list"; 2.0.1 D01), and an entry without info removes
        that token. A list longer than MAX_LENGTH fails and leaves the list as it was."""
        if not full and version <= self.version:
            return "VersionMismatch"
        updated = {} if full else dict(self.entries)
        for token, info in entries:
            if info is None:
                updated.pop(token, None)
            else:
                updated[token] = info
        if len(updated) > MAX_LENGTH:
            return "Failed"
        self.version, self.entries = version, updated
        return "Accepted"
