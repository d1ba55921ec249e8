"""Dataset exports: each dataset in each format loads with `datasets`, leaves out excluded and gold prompts,
keeps CSV cells inert, and does not depend on the chunk size; the command's errors name what is wrong."""
import json
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from labeling.assignment.services import lease_next_task, submit_demonstration, submit_ranking
from labeling.datasets import exports
from labeling.datasets.exports import DATASETS, SCHEMAS, export_dataset
from labeling.models import Answer, Prompt, Queue, Task, TaskKind
from tests.conftest import make_queue, make_user

HOSTILE = '=HYPERLINK("x")<script>alert(1)</script>'
# Demonstrations: 2 labelers x 3 prompts (a gold item is a ranking task; its demonstrations stay). Rankings:
# 2 prompts; per prompt ana's full ranking of 3 answers (3 pairs) and ben's with a tie (2 pairs).
ROWS = {"sft": 6, "comparisons": 2, "pairs": 10}
LOADER = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}


@dataclass
class Labeled:
    queue: Queue
    kept: dict[str, set[int]]  # by dataset, the prompt ids it may hold


@pytest.fixture
def labeled(db) -> Labeled:
    """4 prompts of 3 answers, demonstrated and ranked by ana and ben; then one excluded and one made gold."""
    queue = make_queue("Export", prompts=4, answers=3, task_kind=Queue.Kinds.BOTH, demonstration_overlap=2)
    prompts = list(queue.prompts.order_by("pk"))
    Prompt.objects.filter(pk=prompts[0].pk).update(text=HOSTILE)
    Answer.objects.filter(prompt=prompts[0], position=0).update(text=HOSTILE)
    for user in (make_user("ana", "labeler"), make_user("ben", "labeler")):
        while (assignment := lease_next_task(labeler=user, queue=queue)) is not None:
            if assignment.task.kind == TaskKind.DEMONSTRATION:
                submit_demonstration(assignment_id=assignment.pk, labeler=user, text=f"{HOSTILE} by {user.username}")
                continue
            first, second, third = sorted(assignment.answer_order)
            groups = [[first], [second], [third]] if user.username == "ana" else [[first], [second, third]]
            flags = {third: ["hallucination"]} if assignment.task.prompt_id == prompts[0].pk else {}
            submit_ranking(
                assignment_id=assignment.pk, labeler=user, groups=groups, ratings={first: 6}, flags=flags,
                time_spent_ms=1500,
            )  # fmt: skip
    Prompt.objects.filter(pk=prompts[2].pk).update(excluded=True)
    Task.objects.filter(prompt=prompts[3], kind=TaskKind.RANKING).update(gold_groups=[[1], [2], [3]])
    ranked = {prompts[0].pk, prompts[1].pk}
    return Labeled(queue, {"sft": ranked | {prompts[3].pk}, "comparisons": ranked, "pairs": ranked})



@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_dataset_loads_with_datasets_and_holds_only_kept_prompts(labeled, offline_load, tmp_path, fmt):
    for dataset in DATASETS:
        path = tmp_path / "out" / dataset / f"{dataset}.{fmt}"
        result = export_dataset(dataset=dataset, queues=[labeled.queue], fmt=fmt, path=path)
        assert result.rows == ROWS[dataset]
        loaded = offline_load(LOADER[fmt], data_files=str(path), split="train")
        assert loaded.column_names == SCHEMAS[dataset].names and loaded.num_rows == ROWS[dataset]
        assert set(loaded["prompt_id"]) == labeled.kept[dataset]
        hostile = "'" + HOSTILE if fmt == "csv" else HOSTILE
        assert hostile in loaded["prompt"]
        # The card's YAML front matter points `datasets` at the file.
        assert offline_load(str(path.parent), split="train").num_rows == ROWS[dataset]
        card = result.card.read_text()
        assert f"{ROWS[dataset]} rows, SHA-256 `{result.sha256}`" in card and "| Export |" in card
    if fmt == "csv":
        comparisons = pd.read_csv(tmp_path / "out" / "comparisons" / "comparisons.csv")
        rankings = json.loads(comparisons["rankings"][0])
        assert [ranking["labeler"] for ranking in rankings] == ["ana", "ben"]
        assert json.loads(comparisons["answers"][0])[0]["text"] == HOSTILE  # JSON inside a cell starts with [


def test_parquet_files_have_the_declared_types_and_nested_values(labeled, tmp_path):
    paths = {dataset: tmp_path / f"{dataset}.parquet" for dataset in DATASETS}
    for dataset, path in paths.items():
        export_dataset(dataset=dataset, queues=[labeled.queue], fmt="parquet", path=path)
        assert pq.read_schema(path).equals(SCHEMAS[dataset], check_metadata=False), dataset
    sft = pd.read_parquet(paths["sft"])
    assert str(sft["created_at"].dtype) == "datetime64[us, UTC]"
    row = sft[sft["labeler"] == "ana"].iloc[0]
    assert list(row["messages"]) == [
        {"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}
    ]  # fmt: skip

    comparison = pq.read_table(paths["comparisons"]).to_pylist()[0]
    first, second, third = (answer["id"] for answer in comparison["answers"])
    ana, ben = comparison["rankings"]
    assert ana["groups"] == [[first], [second], [third]] and ben["groups"] == [[first], [second, third]]
    assert ana["ratings"] == [{"answer_id": first, "rating": 6}, {"answer_id": second, "rating": None},
                              {"answer_id": third, "rating": None}]  # fmt: skip
    assert ben["flags"][2] == {"answer_id": third, "flags": ["hallucination"]} and ben["flags"][0]["flags"] == []
    assert isinstance(ana["time_spent_ms"], int)  # the server caps it by the time since the lease
    # ana puts second above third and ben ties them: a majority of one to none orders them.
    assert comparison["consensus"] == [[first], [second], [third]]

    pairs = pd.read_parquet(paths["pairs"])
    assert pairs["chosen_id"].dtype == "int64" and pairs["rating_diff"].isna().all()
    assert sorted(pairs.groupby("labeler").size().items()) == [("ana", 6), ("ben", 4)]
    assert sorted(pairs.loc[pairs["labeler"] == "ana", "margin"]) == [1, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_chunking_does_not_change_the_file(labeled, tmp_path, fmt):
    for dataset in ("comparisons", "pairs"):
        one = export_dataset(dataset=dataset, queues=[labeled.queue], fmt=fmt, path=tmp_path / "one" / f"d.{fmt}")
        tiny = export_dataset(
            dataset=dataset, queues=[labeled.queue], fmt=fmt, path=tmp_path / "tiny" / f"d.{fmt}", chunk_size=1
        )
        assert tiny.sha256 == one.sha256 and one.path.read_bytes() == tiny.path.read_bytes()


def test_many_chunks_and_row_groups_write_the_single_chunk_file(labeled, tmp_path, monkeypatch):
    """Chunks of one prompt across row groups of 3 rows: the same bytes as one chunk, and every format the same rows."""
    monkeypatch.setattr(exports, "ROW_GROUP_ROWS", {"sft": 3, "comparisons": 1, "pairs": 3})
    for dataset in DATASETS:
        loaded = {}
        for fmt in ("jsonl", "csv", "parquet"):
            one = export_dataset(dataset=dataset, queues=[labeled.queue], fmt=fmt, path=tmp_path / "one" / f"d.{fmt}")
            many = export_dataset(
                dataset=dataset, queues=[labeled.queue], fmt=fmt, path=tmp_path / "many" / f"d.{fmt}", chunk_size=1
            )
            assert many.path.read_bytes() == one.path.read_bytes(), (dataset, fmt)
            loaded[fmt] = many
        parquet = pq.ParquetFile(loaded["parquet"].path)
        assert parquet.metadata.num_row_groups == -(-ROWS[dataset] // exports.ROW_GROUP_ROWS[dataset])
        assert parquet.schema_arrow == SCHEMAS[dataset]
        if dataset == "pairs":  # flat rows: the texts decoded from the chunks' dictionaries are the JSONL's
            lines = [json.loads(line) for line in loaded["jsonl"].path.read_text().splitlines()]
            assert parquet.read().to_pylist() == lines and len({row["chosen"] for row in lines}) > 1


def test_the_command_writes_with_filters_and_reports_rows_and_checksum(labeled, tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    call_command("export", "pairs", "--queue", str(labeled.queue.pk), "--format", "jsonl", "--out", str(out),
                 "--labeler", "ana")  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {row["labeler"] for row in rows} == {"ana"} and len(rows) == 6
    assert rows[0]["prompt"] == HOSTILE  # JSONL keeps the text as it is
    printed = capsys.readouterr().out
    assert "Wrote 6 rows" in printed and "SHA-256" in printed
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    call_command("export", "sft", "--queue", "Export", "--format", "csv", "--out", str(out), "--date-from", tomorrow)
    assert out.read_text().splitlines() == [",".join(SCHEMAS["sft"].names)]
    # Only the hostile prompt has a flagged answer.
    call_command("export", "sft", "--queue", "Export", "--format", "jsonl", "--out", str(out), "--exclude-flagged")
    assert HOSTILE not in {json.loads(line)["prompt"] for line in out.read_text().splitlines()}
    assert len(out.read_text().splitlines()) == ROWS["sft"] - 2


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--queue", "Nope"], "There is no queue named or numbered 'Nope'"),
        (["--queue", "Q", "--format", "xml"], "invalid choice: 'xml'"),
        (["--queue", "Q", "--labeler", "nobody"], "There is no labeler named 'nobody'"),
        (["--queue", "Q", "--date-from", "2026-13-01"], "date_from must be a date"),
    ],
)
def test_the_command_says_what_is_wrong(db, tmp_path, arguments, message):
    make_queue("Q", prompts=1, answers=2)
    defaults = {"--format": "jsonl", "--out": str(tmp_path / "x.jsonl")}
    for option, value in defaults.items():
        if option not in arguments:
            arguments = [*arguments, option, value]
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("export", "sft", *arguments)
    assert not (tmp_path / "x.jsonl").exists()


def test_an_empty_export_still_has_the_declared_schema(db, tmp_path):
    queue = make_queue("Quiet", prompts=2, answers=2)
    result = export_dataset(dataset="comparisons", queues=[queue], fmt="parquet", path=tmp_path / "c.parquet")
    assert result.rows == 0
    assert pq.read_table(result.path).schema.equals(SCHEMAS["comparisons"], check_metadata=False)


def test_exports_and_pair_datasets_take_the_same_rankings_through_the_same_filters(labeled, tmp_path):
    from django.contrib.auth.models import User

    from labeling.datasets.filters import clean_filters
    from rewardtrain.datasets import load_rankings
    from rewardtrain.models import PairDataset

    ana = User.objects.get(username="ana").pk
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    cases = [{}, {"labeler_ids": [ana]}, {"exclude_flagged": True}, {"date_from": tomorrow}, {"min_agreement": 0.9}]
    seen = []
    for version, filters in enumerate(cases, start=1):
        dataset = PairDataset.objects.create(name="same", version=version, filters=clean_filters(filters))
        dataset.queues.set([labeled.queue])
        from_dataset = set(load_rankings(dataset).labels["ranking_id"])
        path = tmp_path / f"{version}.parquet"
        export_dataset(dataset="pairs", queues=[labeled.queue], fmt="parquet", path=path, filters=filters)
        assert set(pd.read_parquet(path)["ranking_id"]) == from_dataset, filters
        seen.append(len(from_dataset))
    # All 4 rankings, ana's 2, the unflagged prompt's 2, none; ana and ben agree on every pair they both decide.
    assert seen == [4, 2, 2, 0, 4]
