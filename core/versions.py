"""Versioned records (pair datasets, export snapshots): name-v1, name-v2, … with no number taken twice."""
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Model

RETRIES = 3


def create_next_version(model: type[Model], *, name: str, **fields) -> Model:
    """Create `model(name=name, version=<latest of name> + 1, **fields)`.

    A row lock (select_for_update on the latest version) cannot keep two requests from taking one number:
    there is no row to lock before a name's first version, and a request that waited on the lock still
    reads the version it saw before (tests/labeling/test_export_snapshots.py races them). PostgreSQL's
    advisory lock on the name, held to the end of the transaction, can. SQLite, the embedded default, has
    one writer at a time and relies on the model's unique (name, version) constraint and a retry.
    """
    for attempt in range(RETRIES):
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"{model._meta.label}:{name}"]
                        )
                latest = model.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0
                return model.objects.create(name=name, version=latest + 1, **fields)
        except IntegrityError:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")
