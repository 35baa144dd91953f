"""Database triggers that refuse changes to audit records (docs/reliability.md case 42), as billing 0002 does
for CDRs.

PostgreSQL: UPDATE and DELETE raise (SQLSTATE 23000, an IntegrityError in Django). TRUNCATE is not a row
operation and stays possible for whoever owns the table (test flushes use it).
SQLite: UPDATE raises; DELETE is left to the model layer (`ImmutableModel`), because Django flushes SQLite
test databases with DELETE.

Careful: on SQLite, Django applies most AlterField/RemoveField operations by rebuilding the table, which drops
its triggers. A later migration that alters this table must create the trigger again
(tests/accounts/test_audit.py fails if the trigger is missing).
"""

from django.db import migrations

TABLE = "accounts_auditrecord"

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION accounts_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are immutable: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
"""


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION, params=None)
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_immutable BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION accounts_audit_refuse_change()"
        )
    elif vendor == "sqlite":
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_immutable BEFORE UPDATE ON {TABLE} BEGIN "
            f"SELECT RAISE(ABORT, 'audit records are immutable: UPDATE on {TABLE} refused'); END"
        )


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_immutable ON {TABLE}")
        schema_editor.execute("DROP FUNCTION IF EXISTS accounts_audit_refuse_change()")
    elif vendor == "sqlite":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_immutable")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_audit_record")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
