"""Database triggers that refuse changes to finalised billing records (docs/reliability.md case 29).

PostgreSQL: UPDATE and DELETE on CDRs, CDR lines and credits raise (SQLSTATE 23000, an IntegrityError in
Django). TRUNCATE is not a row operation and stays possible for whoever owns the tables (test flushes use it).
SQLite: UPDATE raises; DELETE is left to the model layer (`ImmutableModel`) and PROTECT foreign keys, because
Django flushes SQLite test databases with DELETE.

Careful: on SQLite, Django applies most AlterField/RemoveField operations by rebuilding the table, which drops
its triggers. A later migration that alters one of these tables must create the trigger again
(tests/billing/test_billing_records.py fails if a trigger is missing).
"""

from django.db import migrations

TABLES = ("billing_chargedetailrecord", "billing_cdrline", "billing_cdrcredit")

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION billing_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'billing records are immutable: % on % refused (issue a credit instead)',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
"""


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION, params=None)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION billing_refuse_change()"
            )
    elif vendor == "sqlite":
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'billing records are immutable: UPDATE on {table} refused'); END"
            )


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
        elif vendor == "sqlite":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_immutable")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS billing_refuse_change()")


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_tariffs_cdrs_exports")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
