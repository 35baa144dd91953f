"""Every EVSE gets a public code (its URL behind the QR code): added nullable, existing rows filled with
distinct random codes, then made unique and required with a random default for new rows."""

import secrets

from django.db import migrations, models

import stations.models

# A copy of stations.models' alphabet and length as they were when this migration was written: a
# migration must not change when the model module does.
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
LENGTH = 10
BATCH = 1000


def codes_fill(apps, schema_editor):
    Evse = apps.get_model("stations", "Evse")
    used: set[str] = set(Evse.objects.exclude(public_code=None).values_list("public_code", flat=True))
    pending = []
    for evse in Evse.objects.filter(public_code=None).only("pk").order_by("pk").iterator():
        code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        while code in used:  # distinct among the rows filled here; the unique constraint comes next
            code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        used.add(code)
        evse.public_code = code
        pending.append(evse)
        if len(pending) >= BATCH:
            Evse.objects.bulk_update(pending, ["public_code"])
            pending = []
    if pending:
        Evse.objects.bulk_update(pending, ["public_code"])


def codes_clear(apps, schema_editor):
    # Back to the nullable column of the first step (which is then dropped): nothing else to undo.
    apps.get_model("stations", "Evse").objects.update(public_code=None)


class Migration(migrations.Migration):
    dependencies = [
        ("stations", "0006_command_job_lease"),
    ]

    operations = [
        migrations.AddField(
            model_name="evse",
            name="public_code",
            field=models.CharField(editable=False, max_length=16, null=True),
        ),
        migrations.RunPython(codes_fill, codes_clear),
        migrations.AlterField(
            model_name="evse",
            name="public_code",
            field=models.CharField(
                default=stations.models.public_code_new, editable=False, max_length=16, unique=True
            ),
        ),
    ]
