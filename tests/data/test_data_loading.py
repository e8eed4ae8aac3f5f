"""Raw rows -> validated pairs: every source type, every format, and the error messages on bad data.

conftest.py sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE; these tests read only files they write to tmp_path.
"""

import gzip
import json

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict
from helpers import make_pairs, write_jsonl
from trl.data_utils import extract_prompt

from upo.data import (
    DataReport,
    is_conversational,
    load_preference_dataset,
    load_preference_pairs,
    normalize_preference_rows,
    split_implicit_prompt,
)
from upo.errors import DataError

ROWS = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "weight": 1.0, "reward_len_chosen": 0.5},
    {"prompt": "The sun is", "chosen": " hot.", "rejected": " cold.", "weight": 0.5, "reward_len_chosen": -1.0},
]
PAIRS = make_pairs(8)  # eight pairs in the layout of the other tests' data
HH_CHOSEN = "\n\nHuman: What is 2+2?\n\nAssistant: It is 4.\n\nHuman: Sure?\n\nAssistant: Yes, certain."
HH_REJECTED = "\n\nHuman: What is 2+2?\n\nAssistant: It is 4.\n\nHuman: Sure?\n\nAssistant: No idea."


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def assert_standard_pairs(dataset, report):
    assert dataset.column_names == ["prompt", "chosen", "rejected", "weight", "reward_len_chosen"]
    assert dataset[1] == ROWS[1]
    assert (report.kept, report.format, report.implicit_prompt) == (2, "standard", False)


# --- sources ---------------------------------------------------------------------------------------


def test_jsonl_keeps_extra_columns_and_skips_bom_and_blank_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n\n".join(json.dumps(row).encode() for row in ROWS) + b"\n\n")
    assert_standard_pairs(*load_preference_pairs(path))


def test_json_list_and_json_lines_in_a_json_file(tmp_path):
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(ROWS, indent=2))
    assert_standard_pairs(*load_preference_pairs(str(as_list)))
    as_lines = write_jsonl(tmp_path / "lines.json", ROWS)
    assert_standard_pairs(*load_preference_pairs(as_lines))


def test_csv_keeps_text_as_written_and_infers_numeric_extra_columns(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('prompt,chosen,rejected,weight\n"Say\nNA",NA,123,0.5\nq,yes,no,2\n')
    dataset, report = load_preference_pairs(path)
    assert dataset[0] == {"prompt": "Say\nNA", "chosen": "NA", "rejected": "123", "weight": 0.5}
    assert dataset["weight"][:] == [0.5, 2.0]
    assert report.kept == 2


def test_parquet(tmp_path):
    path = tmp_path / "data.parquet"
    pd.DataFrame(ROWS).to_parquet(path)
    assert_standard_pairs(*load_preference_pairs(path))


def test_save_to_disk_folders_and_in_memory_datasets(tmp_path):
    dataset = Dataset.from_list(ROWS)
    dataset.save_to_disk(tmp_path / "single")
    DatasetDict({"train": dataset, "test": dataset.select([0])}).save_to_disk(tmp_path / "splits")
    assert_standard_pairs(*load_preference_pairs(tmp_path / "single"))
    assert_standard_pairs(*load_preference_pairs(tmp_path / "splits"))
    assert len(load_preference_dataset(tmp_path / "splits", split="test")) == 1
    assert load_preference_dataset(dataset) is dataset
    assert len(load_preference_dataset(DatasetDict({"train": dataset, "test": dataset.select([0])}), "test")) == 1
    with pytest.raises(DataError, match=r"no split 'validation'; the splits are \['train', 'test'\]"):
        load_preference_dataset(tmp_path / "splits", split="validation")


@pytest.mark.parametrize(
    "source, message",
    [
        ("org/some-dataset", "no such local file or folder.*give its name as dataset_name"),
        ("data.txt", r"unsupported file type '\.txt'.*\.jsonl, \.json, \.csv or \.parquet"),
        ("plain_folder", "not written by save_to_disk"),
        (42, "Cannot load preference data from a int"),
    ],
)
def test_unsupported_sources_say_what_is_accepted(tmp_path, monkeypatch, source, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("hello")
    (tmp_path / "plain_folder").mkdir()
    with pytest.raises(DataError, match=message):
        load_preference_dataset(source)


# --- formats -----------------------------------------------------------------------------------------


def test_conversational_with_prompt_column():
    dataset = Dataset.from_list(
        [{"prompt": [user("Hi")], "chosen": [assistant("Hello!")], "rejected": [assistant("Go away.")]}]
    )
    pairs, report = normalize_preference_rows(dataset, "dataset")
    assert pairs[0]["prompt"] == [user("Hi")]
    assert (report.format, report.implicit_prompt) == ("conversational", False)


@pytest.mark.parametrize(
    "chosen, rejected",
    [
        (HH_CHOSEN, HH_REJECTED),
        ("Human: hi Assistant: Hello", "Human: hi Assistant: Hello there"),  # one a prefix of the other
        ([user("Hi"), assistant("Hello!")], [user("Hi"), assistant("Go away.")]),
        ([user("Hi"), assistant("A"), user("More?")], [user("Hi"), assistant("A"), user("More?"), assistant("B")]),
    ],
)
def test_implicit_prompt_split_is_trls(chosen, rejected):
    expected = extract_prompt({"chosen": chosen, "rejected": rejected})
    assert split_implicit_prompt(chosen, rejected) == (expected["prompt"], expected["chosen"], expected["rejected"])
    pairs, report = normalize_preference_rows(Dataset.from_dict({"chosen": [chosen], "rejected": [rejected]}))
    assert {name: pairs[0][name] for name in ("prompt", "chosen", "rejected")} == expected
    assert report.implicit_prompt


def test_hh_row_split_at_the_last_assistant_turn(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": HH_CHOSEN, "rejected": HH_REJECTED, "id": 7}])
    pairs, _ = load_preference_pairs(path)
    assert pairs[0] == {
        "prompt": "\n\nHuman: What is 2+2?\n\nAssistant: It is 4.\n\nHuman: Sure?\n\nAssistant:",
        "chosen": " Yes, certain.",
        "rejected": " No idea.",
        "id": 7,
    }


def test_is_conversational():
    assert is_conversational([user("Hi")])
    assert not is_conversational("Hi")
    assert not is_conversational([])
    assert not is_conversational(["Hi"])


# --- dropped rows and the report ----------------------------------------------------------------------


def test_identical_pairs_are_dropped_and_counted(tmp_path):
    rows = [ROWS[0], {**ROWS[1], "rejected": ROWS[1]["chosen"]}, {"chosen": "x", "rejected": "x", "prompt": "p"}]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    pairs, report = load_preference_pairs(path)
    assert pairs["prompt"][:] == ["The sky is"]
    assert (report.loaded, report.dropped_identical, report.kept) == (3, 2, 1)
    assert report.summary() == (
        f"Loaded 3 standard pairs from {path}: kept 1, dropped 2 (chosen identical to rejected)"
    )


def test_summary_includes_counts_added_by_later_stages():
    report = DataReport("data.jsonl", loaded=120, format="conversational", implicit_prompt=True, dropped_identical=2)
    report.dropped_prompt_too_long, report.truncated, report.max_length = 1, 5, 512
    assert report.kept == 117
    assert report.summary() == (
        "Loaded 120 conversational pairs (implicit prompt) from data.jsonl: kept 117, dropped 2 (chosen "
        "identical to rejected), 1 (prompt alone reaches max_length=512); truncated 5 to max_length=512"
    )


# --- unreadable files ----------------------------------------------------------------------------------


def test_unreadable_jsonl_line_names_file_line_and_json_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n{'prompt': 'single quotes'}\n" + json.dumps(ROWS[1]) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl, line 3: not valid JSON \(Expecting property name") as error:
        load_preference_dataset(path)
    assert "truncated" not in str(error.value)


def test_truncated_last_line_is_called_truncated(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[1])[:25])
    with pytest.raises(DataError, match=r"cut\.jsonl, line 2: not valid JSON.*looks truncated"):
        load_preference_dataset(path)


def test_non_utf8_bytes_name_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    first = (json.dumps(ROWS[0]) + "\n").encode()
    path.write_bytes(first + '{"prompt": "café", "chosen": "a", "rejected": "b"}\n'.encode("latin-1"))
    offset = len(first) + len('{"prompt": "caf')
    message = rf"latin1\.jsonl, line 2: .* at byte offset {offset} .*Re-encode the file as UTF-8"
    with pytest.raises(DataError, match=message):
        load_preference_dataset(path)


def test_utf16_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes("".join(json.dumps(r) + "\n" for r in PAIRS).encode("utf-16"))  # with its BOM, as Excel saves
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 1: bytes .* at byte offset 0 are not valid UTF-8 .*"
                       r"Re-encode the file as UTF-8"):
        load_preference_pairs(path)


def test_compressed_file_with_a_text_name(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(gzip.compress(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'))
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 1: .* not valid UTF-8"):
        load_preference_pairs(path)


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_empty_file(tmp_path, text):
    path = tmp_path / "pairs.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=r"pairs\.jsonl: no rows to train on \(the file or split is empty\)"):
        load_preference_pairs(path)


def test_json_line_that_is_a_list(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n" + json.dumps([PAIRS[1]]) + "\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: a JSON list, not an object\. Expected one JSON object"):
        load_preference_pairs(path)


def test_json_file_wrapping_the_rows_in_an_object(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps({"data": PAIRS}))
    with pytest.raises(DataError, match=r"pairs\.json: missing column\(s\) \['chosen', 'rejected'\]; the columns found "
                       r"are \['data'\]"):
        load_preference_pairs(path)


def test_csv_with_semicolons(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt;chosen;rejected\nq;a;b\n")
    with pytest.raises(DataError, match=r"pairs\.csv: missing column\(s\) .*found are \['prompt;chosen;rejected'\]"):
        load_preference_pairs(path)


def test_csv_row_with_an_extra_field(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected\nq,a,b\nq,a,b,c\n")
    with pytest.raises(DataError, match=r"pairs\.csv: not a readable CSV file .*Expected 3 fields in line 3, saw 4"):
        load_preference_pairs(path)


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "pairs.parquet"
    path.write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(DataError, match=r"pairs\.parquet: not a readable Parquet file \(.*corrupted"):
        load_preference_pairs(path)


def test_jsonl_object_with_a_key_twice(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n" + '{"prompt": "q", "chosen": "a", "rejected": "b", "chosen": "c"}\n')
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: the key 'chosen' appears 2 times in one object "
                       r"\(values \"a\", \"c\"\); JSON readers silently keep the last one"):
        load_preference_pairs(path)


def test_json_message_with_a_key_twice(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text('[{"prompt": [{"role": "user", "content": "Hi", "role": "system"}], '
                    '"chosen": [{"role": "assistant", "content": "a"}], '
                    '"rejected": [{"role": "assistant", "content": "b"}]}]')
    with pytest.raises(DataError, match=r"chat\.json: the key 'role' appears 2 times in one object"):
        load_preference_pairs(path)


def test_csv_with_a_duplicated_header(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected,chosen\nq,a,b,c\n")
    with pytest.raises(DataError, match=r"pairs\.csv, line 1: the header names column\(s\) \['chosen'\] "
                       r"more than once; readers silently rename the second one \('chosen\.1'\)"):
        load_preference_pairs(path)


@pytest.mark.parametrize("damage", ["state.json", "arrow"])
def test_dataset_folder_holding_files_save_to_disk_did_not_write(tmp_path, damage):
    folder = tmp_path / "saved"
    Dataset.from_list(PAIRS).save_to_disk(str(folder))
    if damage == "state.json":
        (folder / "state.json").write_text("{not json")
    else:
        next(folder.glob("*.arrow")).write_text("notes, not Arrow data")
    with pytest.raises(DataError, match=r"saved: a save_to_disk folder whose files cannot be read \(.*\)\. "
                       r"It holds files save_to_disk did not write, or they were damaged"):
        load_preference_pairs(folder)


def test_json_value_nested_too_deep(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n" + '{"prompt": "q", "chosen": "a", "rejected": "b", "x": '
                    + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: a JSON value nested too deep to read"):
        load_preference_pairs(path)


# --- invalid rows ---------------------------------------------------------------------------------------


def test_missing_column_lists_found_columns_and_formats(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"prompt": "p", "chosen": "a", "response_b": "b"}])
    with pytest.raises(DataError, match=r"data\.jsonl: missing column\(s\) \['rejected'\]; the columns found are "
                       r"\['prompt', 'chosen', 'response_b'\]\. Expected columns 'chosen' and 'rejected'"):
        load_preference_pairs(path)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"chosen": 3}, r"row 1 \(line 2\), column 'chosen': an int \(3\), expected a string or a list"),
        ({"rejected": " \n"}, r"row 1 \(line 2\), column 'rejected': empty, or only whitespace or invisible"),
        ({"rejected": None}, r"row 1 \(line 2\), column 'rejected': the value is missing"),
        ({"chosen": [assistant("x")]}, r"row 1 \(line 2\), column 'chosen': a conversational value, but row 0"),
    ],
)
def test_bad_standard_values_name_file_row_line_and_column(tmp_path, bad_row, message):
    path = write_jsonl(tmp_path / "data.jsonl", [ROWS[0], {**ROWS[1], **bad_row}])
    with pytest.raises(DataError, match=r"data\.jsonl, " + message):
        load_preference_pairs(path)


def test_extra_column_with_mixed_types_names_row_and_column(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [ROWS[0], {**ROWS[1], "weight": "high"}])
    with pytest.raises(DataError, match=r"data\.jsonl, row 1 \(line 2\), column 'weight': a str where earlier rows"):
        load_preference_dataset(path)


def test_a_boolean_among_numeric_weights_is_an_error_not_one(tmp_path):
    # Arrow would silently read `true` as 1.0 in a column of numbers.
    path = write_jsonl(tmp_path / "data.jsonl", [{**ROWS[0], "weight": 0.5}, {**ROWS[1], "weight": True}])
    with pytest.raises(DataError, match=r"data\.jsonl, row 1 \(line 2\), column 'weight': a bool where earlier rows "
                       r"hold a number"):
        load_preference_dataset(path)


def test_non_string_column_in_a_dataset_names_row_and_column():
    dataset = Dataset.from_dict({"prompt": ["p", "q"], "chosen": ["a", "b"], "rejected": [1, 2]})
    with pytest.raises(DataError, match=r"^dataset, row 0, column 'rejected': an int \(1\)"):
        normalize_preference_rows(dataset)


def conversation(prompt=None, chosen=None, rejected=None):
    return {
        "prompt": prompt or [user("Hi")],
        "chosen": chosen or [assistant("Hello!")],
        "rejected": rejected or [assistant("Go away.")],
    }


@pytest.mark.parametrize(
    "bad_row, message",
    [
        (conversation(chosen=[{"role": "bot", "content": "x"}]), r"'chosen', message 0: role 'bot' is not one"),
        (conversation(prompt=[user("Hi"), {"role": "user"}]), r"'prompt', message 1: no 'content'"),
        (conversation(rejected=[{"role": "assistant", "content": 5}]), r"'rejected', message 0: 'content' is an int"),
        (conversation(rejected=[assistant("  ")]), r"'rejected': empty, or only whitespace or invisible characters"),
        (conversation(prompt="Hi"), r"'prompt': a standard value, but row 0 of 'chosen' is conversational"),
    ],
)
def test_bad_conversational_rows_name_file_row_line_and_column(tmp_path, bad_row, message):
    path = write_jsonl(tmp_path / "chat.jsonl", [conversation(), bad_row])
    with pytest.raises(DataError, match=r"chat\.jsonl, row 1 \(line 2\), column " + message):
        load_preference_pairs(path)


def test_implicit_prompt_needs_a_shared_start():
    dataset = Dataset.from_dict({"chosen": ["Yes."], "rejected": ["No."]})
    with pytest.raises(DataError, match=r"dataset, row 0: chosen and rejected differ from their first character"):
        normalize_preference_rows(dataset)


def test_csv_empty_cell_and_json_cells(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('prompt,chosen,rejected\n"multi\nline",a,b\nq,,c\n')
    with pytest.raises(DataError, match=r"data\.csv, row 1 \(line 4\), column 'chosen': the value is missing"):
        load_preference_pairs(path)
    path.write_text('prompt,chosen,rejected\nq,"[{""role"": ""assistant"", ""content"": ""a""}]",b\n')
    with pytest.raises(DataError, match=r"data\.csv, column 'chosen': holds JSON message lists.*JSONL or Parquet"):
        load_preference_pairs(path)


def test_capitalised_column_names(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"Prompt": r["prompt"], "Chosen": r["chosen"],
                                                   "Rejected": r["rejected"]} for r in PAIRS])
    with pytest.raises(DataError, match=r"missing column\(s\) \['chosen', 'rejected'\]; the columns found are "
                       r"\['Prompt', 'Chosen', 'Rejected'\].*rename_column"):
        load_preference_pairs(path)


def test_message_without_a_role(tmp_path):
    row = {"prompt": [{"content": "Hi"}], "chosen": [{"role": "assistant", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [row])
    with pytest.raises(DataError, match=r"chat\.jsonl, row 0 \(line 1\), column 'prompt', message 0: "
                       r"role None is not one"):
        load_preference_pairs(path)


def test_messages_given_as_plain_strings(tmp_path):
    row = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}, "bye"]}
    path = write_jsonl(tmp_path / "chat.jsonl", [row])
    with pytest.raises(DataError, match=r"row 0 \(line 1\), column 'rejected', message 1: a str \('bye'\), "
                       r"expected a dict"):
        load_preference_pairs(path)


def test_integer_too_large_for_arrow(tmp_path):
    rows = [{**r, "meta": {"id": 2 ** 70 if i == 5 else i}} for i, r in enumerate(PAIRS)]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError, match=r"pairs\.jsonl, row 5 \(line 6\), column 'meta': "
                       r"the integer 1180591620717411303424 does not fit in 64 bits"):
        load_preference_pairs(path)


@pytest.mark.parametrize("value, shown", [
    ("\u200b\u200b", "\\u200b\\u200b"), ("\ufeff \u2060", "\\ufeff \\u2060"), ("\u3164", "\\u3164"),
    ("\u00ad\u200d", "\\xad\\u200d")], ids=["zero-width-spaces", "bom-and-word-joiner", "hangul-filler", "soft-hyphen"])
def test_a_response_made_only_of_invisible_characters_is_empty(tmp_path, value, shown):
    """str.strip() keeps zero-width spaces, joiners, byte-order marks and blank letters: such a response looked like
    text and trained as one."""
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "Hi?", "chosen": "Hello.", "rejected": "No."},
                                                 {"prompt": "Hi?", "chosen": value, "rejected": "No."}])
    with pytest.raises(DataError) as error:
        load_preference_pairs(path)
    assert str(error.value).startswith(f"{path}, row 1 (line 2), column 'chosen': empty, or only whitespace or "
                                       f"invisible characters ('{shown}')")
    visible = [{"prompt": "Hi?", "chosen": "\u200bOK", "rejected": "No"}]  # something visible besides: text
    load_preference_pairs(write_jsonl(tmp_path / "ok.jsonl", visible))


def test_a_lone_surrogate_in_a_json_line_names_the_row_and_column(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "Hi?", "chosen": "Hello.", "rejected": "No."}\n'
                    '{"prompt": "Hi?", "chosen": "A smile \\ud83d.", "rejected": "No."}\n')
    with pytest.raises(DataError) as error:
        load_preference_pairs(path)
    assert str(error.value).startswith(f"{path}, row 1 (line 2), column 'chosen': the text holds a lone surrogate "
                                       "(A smile \\ud83d.), half of a character written as a JSON escape")
    path.write_text('{"prompt": "Hi?", "chosen": "A smile \\ud83d\\ude00.", "rejected": "No."}\n')  # a whole pair
    assert load_preference_pairs(path)[0][0]["chosen"] == "A smile \U0001f600."


def test_another_dialects_roles_are_named_with_their_equivalent(tmp_path):
    rows = [{"prompt": [{"role": "human", "content": "Hi?"}], "chosen": [{"role": "gpt", "content": "Hello."}],
             "rejected": [{"role": "gpt", "content": "No."}]}]
    with pytest.raises(DataError, match=r"row 0 \(line 1\), column 'prompt', message 0: role 'human' is not one of "
                                        r"\['system', 'user', 'assistant', 'tool'\] \(another dialect's name: use "
                                        r"'user'\)"):
        load_preference_pairs(write_jsonl(tmp_path / "pairs.jsonl", rows))
