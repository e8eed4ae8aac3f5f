"""`upo eval` on any prompts: every layout a prompt or preference dataset comes in, from files, local folders and
`datasets.load_dataset`, with the errors naming the row."""

import json

import pandas as pd
import pytest
from helpers import write_chitchat_rows, write_hh_rows, write_jsonl

from upo.errors import DataError
from upo.eval.data import hh_to_messages, load_eval_data, rows_as_chat


def test_hh_pairs_get_their_implicit_prompt(tmp_path):
    data = load_eval_data(write_hh_rows(tmp_path / "hh.jsonl", 4))
    assert data.layout == "pairs, implicit prompt" and data.reference_column is None
    raw = [json.loads(line) for line in (tmp_path / "hh.jsonl").read_text().splitlines()]
    for row, original in zip(data.rows, raw):
        assert row["prompt"].endswith("\n\nAssistant:") and row["prompt"] + row["chosen"] == original["chosen"]
        assert row["prompt"] + row["rejected"] == original["rejected"]
    # Multi-turn: two human turns and the assistant's turn between them become messages.
    messages = hh_to_messages(data.rows[1]["prompt"])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    chat = rows_as_chat(data.rows)
    assert chat[1]["prompt"] == messages
    assert chat[1]["chosen"] == [{"role": "assistant", "content": data.rows[1]["chosen"].strip()}]
    assert hh_to_messages("Tell me a joke.") is None  # not HH: left as text


def test_ultrafeedback_style_pairs_take_the_shared_messages_as_prompt(tmp_path):
    user = {"role": "user", "content": "Name a colour."}
    rows = [{"prompt": "Name a colour.", "chosen": [user, {"role": "assistant", "content": "Blue."}],
             "rejected": [user, {"role": "assistant", "content": "Seven."}], "score_chosen": 8.0}]
    data = load_eval_data(write_jsonl(tmp_path / "uf.jsonl", rows), reference_column="chosen")
    assert data.layout.startswith("pairs, prompt inside the conversations")
    row = data.rows[0]
    assert row["prompt"] == [user] and row["chosen"] == [{"role": "assistant", "content": "Blue."}]
    assert row["reference_answer"] == "Blue." and row["score_chosen"] == 8.0  # other columns kept for reward funcs


def test_prompts_alone_as_text_or_messages_and_any_prompt_column(tmp_path):
    rows = [{"question": "What is rain?"}, {"question": "Why do we sleep?"}]
    data = load_eval_data(write_jsonl(tmp_path / "q.jsonl", rows), prompt_column="question")
    assert data.layout == "prompts" and [r["prompt"] for r in data.rows] == ["What is rain?", "Why do we sleep?"]
    assert "chosen" not in data.rows[0] and "reference_answer" not in data.rows[0]
    messages = [{"prompt": [{"role": "user", "content": "hi"}], "answer": "hello"}]
    data = load_eval_data(write_jsonl(tmp_path / "m.jsonl", messages), reference_column="answer")
    assert data.rows[0]["prompt"] == messages[0]["prompt"] and data.rows[0]["reference_answer"] == "hello"


def test_a_conversation_gives_its_prompt_and_its_last_reply_as_reference(tmp_path):
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello there"}]
    data = load_eval_data(write_jsonl(tmp_path / "c.jsonl", [{"messages": conversation}]))
    assert data.layout == "conversations"
    assert data.rows[0]["prompt"] == conversation[:2] and data.rows[0]["reference_answer"] == "hello there"


def test_chitchat_rows_keep_the_human_reply_as_reference(tmp_path):
    data = load_eval_data(write_chitchat_rows(tmp_path / "e.jsonl", 5), max_prompts=3)
    assert len(data.rows) == 3 and data.reference_column == "human_reply"
    assert all(r["reference_answer"] == r["human_reply"] for r in data.rows)
    assert data.describe().startswith("3 evaluation prompts from") and "3 with chosen and rejected" in data.describe()


def test_a_local_folder_laid_out_as_a_hub_dataset_loads_through_load_dataset(tmp_path):
    repo = tmp_path / "org" / "hh-mini"
    (repo / "data").mkdir(parents=True)
    hh = [json.loads(line) for line in write_hh_rows(tmp_path / "hh.jsonl", 6).read_text().splitlines()]
    pd.DataFrame(hh[:4]).to_parquet(repo / "data" / "train-00000-of-00001.parquet")
    pd.DataFrame(hh[4:]).to_parquet(repo / "data" / "test-00000-of-00001.parquet")
    data = load_eval_data(dataset_name=str(repo))  # the test split by default
    assert len(data.rows) == 2 and data.rows[0]["prompt"] + data.rows[0]["chosen"] == hh[4]["chosen"]
    assert len(load_eval_data(dataset_name=str(repo), split="train").rows) == 4
    with pytest.raises(DataError, match=r"no split 'validation'; the splits are \['train', 'test'\]"):
        load_eval_data(dataset_name=str(repo), split="validation")
    assert len(load_eval_data(repo).rows) == 2  # the same folder given as --eval_data


def test_bad_rows_are_named(tmp_path):
    with pytest.raises(DataError, match=r"No prompts found: the columns are \['text'\]"):
        load_eval_data(write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}]))
    with pytest.raises(DataError, match=r"a.jsonl, row 1 \(line 2\), column 'prompt': the prompt is empty"):
        load_eval_data(write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}, {"prompt": " "}]))
    with pytest.raises(DataError, match=r"no column 'answer' \(--reference_column\)"):
        load_eval_data(write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}]), reference_column="answer")
    with pytest.raises(DataError, match="org/not-cached, split 'test': cannot load it"):
        load_eval_data(dataset_name="org/not-cached")
