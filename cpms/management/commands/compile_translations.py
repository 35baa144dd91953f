"""`python manage.py compile_translations`: every cpms/locale/<lang>/LC_MESSAGES/django.po to its django.mo.

The .po files are the source (committed); the .mo files are build outputs (.gitignore), made here with babel,
pure Python, so that neither CI nor a new machine needs GNU gettext (Django's `compilemessages` calls its
`msgfmt`). `make run` and `make test` call it. A .mo newer than its .po is left alone, so a second run
does nothing; --force compiles all.

A catalog whose translation breaks a placeholder (e.g. `%(price)s` missing or misspelt, which would raise in
the view that formats it) stops the command with an error and writes no .mo for it.
"""

import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

LOCALE_DIR = Path(settings.BASE_DIR) / "cpms" / "locale"


class Command(BaseCommand):
    help = "Compile cpms/locale/*/LC_MESSAGES/django.po into django.mo with babel (no GNU gettext needed)."
    # Runs before `migrate` in `make run` and before the tests: it needs no database and no system check.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Compile even where the .mo is up to date.")

    def handle(self, *args, force: bool = False, **options):
        sources = sorted(LOCALE_DIR.glob("*/LC_MESSAGES/django.po"))
        compiled = 0
        for po_path in sources:
            mo_path = po_path.with_suffix(".mo")
            if not force and mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
                continue
            language = po_path.parent.parent.name
            with po_path.open("rb") as source:
                catalog = read_po(source, locale=language, abort_invalid=True)
            problems = [
                f"{po_path}: {message.id!r}: {error}"
                for message, errors in catalog.check()
                for error in errors
            ]
            if problems:
                raise CommandError("\n".join(problems))
            _write_atomically(mo_path, catalog)
            compiled += 1
            self.stdout.write(f"compiled {mo_path.relative_to(LOCALE_DIR.parent.parent)}")
        self.stdout.write(
            f"{compiled} of {len(sources)} catalogs compiled ({len(sources) - compiled} up to date)"
        )


def _write_atomically(mo_path: Path, catalog) -> None:
    """Write through a temporary file and rename: a server or test process that reads the .mo meanwhile
    sees the old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=mo_path.parent, prefix=".django.", suffix=".mo.tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write_mo(out, catalog, use_fuzzy=False)
        # mkstemp makes it private (0600); a server running as another user must read it, as any built file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, mo_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
