"""The backup drill (bench/backup_restore.py) restores a labeled database table for table."""
import pytest
from django.db import connection

from bench.backup_restore import drill, table_fingerprints
from bench.common import connect
from labeling.assignment.services import lease_next_task, submit_ranking

from .conftest import make_queue

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_dump needs PostgreSQL"),
]


def _url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def test_a_restored_backup_has_every_row(transactional_db, labeler, tmp_path):
    queue = make_queue("Backup", prompts=3, answers=4)
    assignment = lease_next_task(labeler=labeler, queue=queue)
    submit_ranking(assignment_id=assignment.pk, labeler=labeler, groups=[[pk] for pk in assignment.answer_order])

    result = drill(_url(), tmp_path)

    assert result["differing_tables"] == []
    assert result["tables"] > 10 and result["rows"] > 0 and result["dump_bytes"] > 0


def test_fingerprints_see_a_changed_row(transactional_db):
    make_queue("Fingerprint", prompts=1, answers=2)
    config = connection.settings_dict
    with connect({"HOST": config["HOST"], "PORT": config["PORT"], "USER": config["USER"]}, config["NAME"]) as db:
        before = table_fingerprints(db)
        db.execute("UPDATE labeling_answer SET text = text || '!' WHERE position = 0")
        after = table_fingerprints(db)
    assert before["labeling_answer"][0] == after["labeling_answer"][0]
    assert before["labeling_answer"][1] != after["labeling_answer"][1]
    assert before["labeling_prompt"] == after["labeling_prompt"]
