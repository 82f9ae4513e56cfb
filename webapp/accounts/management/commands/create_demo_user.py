"""Create (or reset) the demo login and print it."""
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo user (curator + admin) and print its login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="galaxies")

    def handle(self, *args, username, password, **options):
        user, created = User.objects.get_or_create(username=username)
        user.set_password(password)
        user.is_staff = True
        user.is_superuser = True
        user.save()
        user.groups.add(Group.objects.get_or_create(name="admin")[0])
        self.stdout.write(self.style.SUCCESS(
            f"Demo login: username={username} password={password} ({'created' if created else 'reset'})"))
