"""`python -m tests.e2e.export_fault_server --port P`: the real server (`cpms.server`) with one fault
injected for a drill: the sessions export reads two rows per chunk and fails on its second chunk of rows,
after the header and the first rows have been sent (docs/reliability.md case 45: a failing stream must end
visibly)."""

import os
import sys

FAULT_MESSAGE = "injected export fault (drill)"


def _inject() -> None:
    from billing.services.exports import readers

    readers.CHUNK_ROWS = 2
    original = readers.RowReader.read

    def failing(self):
        if self.kind == "sessions" and self.records >= readers.CHUNK_ROWS:
            raise RuntimeError(FAULT_MESSAGE)
        return original(self)

    readers.RowReader.read = failing


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
    import django

    django.setup()
    _inject()
    from cpms.server import main as serve

    serve(sys.argv[1:])


if __name__ == "__main__":
    main()
