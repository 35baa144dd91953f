from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import user_get
from accounts.services import api_token_get_or_create


class Command(BaseCommand):
    help = "Print the REST API token of a user, creating it if the user has none (docs/contract.md)."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username: str, **options):
        user = user_get(username=username)
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; activate it before creating a token.")
        # Only the key on stdout, so that scripts can do TOKEN=$(manage.py create_api_token alice).
        self.stdout.write(api_token_get_or_create(user=user).key)
