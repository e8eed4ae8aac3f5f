"""Malformed inputs that tests/data/test_data_loading.py, tests/rewards/test_rewards.py and tests/test_cli.py do not
cover yet: each gives a message naming the file (or option), the line, row or column, what is wrong and the fix, or a
documented warning with counts, and never a traceback from inside a library.

Already covered elsewhere (not repeated here): non-UTF-8 bytes, truncated last JSONL line, unparsable line,
missing column, wrong value types, empty values, nulls, mixed formats, bad roles, missing content, implicit
prompt without a shared start, CSV empty cells and JSON cells, unsupported sources, reward functions that raise
or return NaN / inf / strings / bools / the wrong count, bad precomputed scores, unknown YAML options,
contradictory loss weights, a missing dataset, a second run into a used output_dir.
"""

import gzip
import json
import re

import pytest
from datasets import Dataset
from helpers import make_pairs, tiny_model, tiny_training_options

from upo import UPOConfig, UPOTrainer
from upo.cli import main
from upo.data import load_preference_pairs
from upo.errors import ConfigError, DataError, RewardFunctionError
from upo.rewards import score_designer_rewards

FAST = tiny_training_options(max_steps=1)
ROWS = make_pairs(8)


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def trainer(tmp_path, tokenizer, data, reward_funcs=None, **options):
    return UPOTrainer(tiny_model(), args=UPOConfig(output_dir=str(tmp_path / "run"), **{**FAST, **options}),
                      train_dataset=data, processing_class=tokenizer, reward_funcs=reward_funcs)


# --- files ---------------------------------------------------------------------------------------------------


def test_utf16_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes("".join(json.dumps(r) + "\n" for r in ROWS).encode("utf-16"))  # with its BOM, as Excel saves
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
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps([ROWS[1]]) + "\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: a JSON list, not an object\. Expected one JSON object"):
        load_preference_pairs(path)


def test_json_file_wrapping_the_rows_in_an_object(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps({"data": ROWS}))
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


# --- columns and rows -------------------------------------------------------------------------------------------


def test_capitalised_column_names(tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", [{"Prompt": r["prompt"], "Chosen": r["chosen"], "Rejected": r["rejected"]}
                                             for r in ROWS])
    with pytest.raises(DataError, match=r"missing column\(s\) \['chosen', 'rejected'\]; the columns found are "
                       r"\['Prompt', 'Chosen', 'Rejected'\].*rename_column"):
        load_preference_pairs(path)


def test_message_without_a_role(tmp_path):
    row = {"prompt": [{"content": "Hi"}], "chosen": [{"role": "assistant", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}]}
    path = jsonl(tmp_path / "chat.jsonl", [row])
    with pytest.raises(DataError, match=r"chat\.jsonl, row 0 \(line 1\), column 'prompt', message 0: "
                       r"role None is not one"):
        load_preference_pairs(path)


def test_messages_given_as_plain_strings(tmp_path):
    row = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}, "bye"]}
    path = jsonl(tmp_path / "chat.jsonl", [row])
    with pytest.raises(DataError, match=r"row 0 \(line 1\), column 'rejected', message 1: a str \('bye'\), "
                       r"expected a dict"):
        load_preference_pairs(path)


def test_conversational_data_with_a_tokenizer_without_chat_template(tmp_path, tokenizer):
    tokenizer.chat_template = None
    rows = [{"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "assistant", "content": "Go away."}]}] * 4
    with pytest.raises(DataError, match="conversational .* the tokenizer has no chat template"):
        trainer(tmp_path, tokenizer, Dataset.from_list(rows))


@pytest.mark.parametrize("weight, shown, row", [("high", "'high'", None), (True, "True", None), (-1.0, "-1.0", 3),
                                              (float("nan"), "nan", 3)])
def test_bad_weight(tmp_path, tokenizer, weight, shown, row):
    """A whole column of text or booleans, or one negative or NaN weight (JSON allows NaN)."""
    rows = [{**r, "weight": weight if row in (None, i) else 1.0} for i, r in enumerate(ROWS)]
    path = jsonl(tmp_path / "pairs.jsonl", rows)
    row = row or 0
    with pytest.raises(DataError, match=rf"pairs\.jsonl, pair {row} \(prompt 'Human: .*'\), column 'weight': "
                       rf"{shown} is not a finite number >= 0"):
        trainer(tmp_path, tokenizer, str(path))


def test_one_reference_column_without_the_other(tmp_path, tokenizer):
    data = Dataset.from_list([{**r, "ref_chosen_logps": -10.0} for r in ROWS])
    with pytest.raises(DataError, match="column 'ref_chosen_logps' without 'ref_rejected_logps'.*add the missing one"):
        trainer(tmp_path, tokenizer, data)


@pytest.mark.parametrize("value", [3.5, "n/a", float("-inf")])
def test_bad_precomputed_reference_logps(tmp_path, tokenizer, value):
    data = Dataset.from_list([{**r, "ref_chosen_logps": value, "ref_rejected_logps": -10.0} for r in ROWS])
    with pytest.raises(DataError, match=r"pair 0 .*column 'ref_chosen_logps': .* "
                       r"is not a finite sum of log-probabilities"):
        trainer(tmp_path, tokenizer, data)


def test_huge_rows_are_truncated_or_dropped_and_counted(tmp_path, tokenizer, capsys):
    rows = [dict(r) for r in ROWS]
    rows[2]["chosen"] = " Thank you." * 100_000  # about 1 MB
    rows[5]["prompt"] = "Human: " + "why " * 100_000 + "Assistant:"
    trainer(tmp_path, tokenizer, str(jsonl(tmp_path / "pairs.jsonl", rows))).train()
    assert "Loaded 8 standard pairs from" in (out := capsys.readouterr().out)
    assert "kept 7, dropped 1 (prompt alone reaches max_length=64); truncated 1 to max_length=64" in out


def test_every_prompt_too_long(tmp_path, tokenizer):
    data = Dataset.from_list([{**r, "prompt": "why " * 100} for r in ROWS])
    with pytest.raises(DataError, match=r"kept 0, dropped 8 \(prompt alone reaches max_length=64\).*raise max_length"):
        trainer(tmp_path, tokenizer, data)


def test_column_named_like_a_reward_argument(tmp_path, tokenizer):
    data = Dataset.from_list([{**r, "completions": "x"} for r in ROWS])
    with pytest.raises(DataError, match="a dataset column is named 'completions'.*rename the column"):
        trainer(tmp_path, tokenizer, data, reward_funcs=["readability"])


# --- reward functions -------------------------------------------------------------------------------------------


def score(func):
    return score_designer_rewards(["p", "q"], ["a", "b"], ["c", "d"], [func], show_progress=False, use_cache=False)


def test_reward_function_returning_a_generator():
    def lazy(prompts, completions, **kwargs):
        return (0.0 for _ in completions)

    with pytest.raises(RewardFunctionError, match=r"'lazy' returned a generator for rows 0-1: expected a list of 4"):
        score(lazy)


def test_reward_function_returning_a_column_vector():
    import numpy as np

    def column(prompts, completions, **kwargs):
        return np.zeros((len(completions), 1))

    with pytest.raises(RewardFunctionError,
                       match=r"'column' returned array\(\[0\.\]\) for row 0 \(the chosen response\)"):
        score(column)


def test_reward_function_with_the_wrong_signature():
    def completions_only(completions):
        return [0.0] * len(completions)

    with pytest.raises(RewardFunctionError, match=r"'completions_only' raised on row 0 .*unexpected keyword argument "
                       r"'prompts'"):
        score(completions_only)


def test_reward_module_with_a_syntax_error(tmp_path, monkeypatch):
    from upo.rewards import resolve_reward_func

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_rewards.py").write_text("def polite(:\n")
    with pytest.raises(ConfigError, match=r"'broken_rewards.polite' could not be imported .*broken_rewards.py, line 1"):
        resolve_reward_func("broken_rewards.polite")


# --- options ----------------------------------------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    return jsonl(tmp_path / "pairs.jsonl", ROWS)


def run_cli(tmp_path, data_file, *options):
    return main(["train", "--dataset", str(data_file), "--output_dir", str(tmp_path / "out"), *options])


@pytest.mark.parametrize("options, message", [
    (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be an integer >= 1, got 0"),
    (["--learning_rate", "-1"], "learning_rate must be a finite number >= 0, got -1.0"),
    (["--max_length", "1"], "max_length must be an integer >= 2, or None, got 1"),
    (["--eval_strategy", "steps"], "eval_strategy='steps' needs an eval_dataset: pass one"),
    (["--eval_dataset", "DATA", "--eval_strategy", "steps", "--eval_steps", "2", "--save_steps", "3",
      "--load_best_model_at_end", "true"], "saving steps to be a round multiple of the evaluation steps"),
    (["--reward_weights", "1.0"], "reward_weights has 1 values for 0 reward functions"),
    (["--resume_from_checkpoint", "nowhere"], "Cannot resume from nowhere: not a complete upo checkpoint, it is not a "
                                              "folder"),
], ids=["zero-batch", "negative-lr", "max-length-1", "eval-without-data", "best-model-steps", "weights-without-funcs",
        "resume-from-nothing"])
def test_contradictory_or_out_of_range_options(tmp_path, data_file, capsys, tokenizer, options, message):
    model = tmp_path / "model"
    tiny_model().save_pretrained(model)
    tokenizer.save_pretrained(model)
    options = [str(data_file) if o == "DATA" else o for o in options]
    assert run_cli(tmp_path, data_file, "--model_name_or_path", str(model), "--use_cpu", "true", "--report_to", "none",
                   *options) == 1
    err = capsys.readouterr().err
    assert err.startswith("upo train: error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize("yaml_text, message", [
    ("reward_weights: [high]\n", "reward_weights holds 'high', not a number"),
    ("dataset: [unclosed\n", "is not valid YAML"),
    ("- a list\n- not a mapping\n", "must hold a mapping of option: value, got list"),
    ("alpha: 1.0\nbeta: 0.1\nalpha: 0.0\n", "the key(s) ['alpha'] appear more than once in one mapping (YAML readers "
                                           "silently keep the last)"),
], ids=["non-numeric-weights", "invalid-yaml", "yaml-list", "key-twice"])
def test_bad_yaml_config(tmp_path, data_file, capsys, yaml_text, message):
    config = tmp_path / "run.yaml"
    config.write_text(yaml_text)
    assert run_cli(tmp_path, data_file, "--config", str(config)) == 1
    assert message in capsys.readouterr().err


def test_yaml_option_of_the_wrong_type(tmp_path, data_file, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: fast\n")
    assert run_cli(tmp_path, data_file, "--config", str(config)) == 1
    err = capsys.readouterr().err
    assert err == (f"upo train: error: {config}: argument --learning_rate/--learning-rate: "
                   "invalid float value: 'fast'.\n")


def test_missing_config_file(tmp_path, data_file, capsys):
    assert run_cli(tmp_path, data_file, "--config", str(tmp_path / "nope.yaml")) == 1
    err = capsys.readouterr().err
    assert "Cannot read the config file" in err and "nope.yaml: No such file or directory" in err


def test_single_values_where_yaml_expects_lists_are_accepted():
    config = UPOConfig(output_dir="unused", reward_funcs="readability", reward_weights=0.5, loss_weights=1)
    assert (config.reward_funcs, config.reward_weights, config.loss_weights) == (["readability"], [0.5], [1])


def test_misspelt_flag(tmp_path, data_file, capsys):
    assert run_cli(tmp_path, data_file, "--learnin_rate", "1e-4") == 1
    assert "--learnin_rate" in capsys.readouterr().err


# --- second round: input that trained silently, and library tracebacks ----------------------------------------------


def test_jsonl_object_with_a_key_twice(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"prompt": "q", "chosen": "a", "rejected": "b", "chosen": "c"}\n')
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


def test_every_weight_zero(tmp_path, tokenizer):
    path = jsonl(tmp_path / "pairs.jsonl", [{**r, "weight": 0} for r in ROWS])
    with pytest.raises(DataError, match=r"pairs\.jsonl, column 'weight': every pair's weight is 0, "
                       r"so the loss is 0 and nothing would be learned"):
        trainer(tmp_path, tokenizer, str(path))


def test_reward_function_returning_none_for_every_row():
    def never_applies(prompts, completions, **kwargs):
        return [None] * len(completions)

    with pytest.raises(RewardFunctionError, match=r"'never_applies' returned None for all 4 responses: it applies to "
                       r"none of them, so its designer term would be silently off"):
        score(never_applies)


ALTERNATING = ("{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
               "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
               "<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
               "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_chat_template_refusing_a_rows_role_order_names_the_row(tmp_path, tokenizer):
    tokenizer.chat_template = ALTERNATING
    rows = [{"prompt": [{"role": "user", "content": f"Hi {i}"}], "chosen": [{"role": "assistant", "content": "Hello!"}],
             "rejected": [{"role": "assistant", "content": "Go away."}]} for i in range(4)]
    rows[2]["prompt"] = [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Are you there?"}]
    with pytest.raises(DataError, match=r"chat\.jsonl, pair 2 \(prompt user/user: 'Are you there\?'\): the tokenizer's "
                       r"chat template refused it \(TemplateError: Conversation roles must alternate"):
        trainer(tmp_path, tokenizer, str(jsonl(tmp_path / "chat.jsonl", rows)))


@pytest.mark.parametrize("damage", ["state.json", "arrow"])
def test_dataset_folder_holding_files_save_to_disk_did_not_write(tmp_path, damage):
    folder = tmp_path / "saved"
    Dataset.from_list(ROWS).save_to_disk(str(folder))
    if damage == "state.json":
        (folder / "state.json").write_text("{not json")
    else:
        next(folder.glob("*.arrow")).write_text("notes, not Arrow data")
    with pytest.raises(DataError, match=r"saved: a save_to_disk folder whose files cannot be read \(.*\)\. "
                       r"It holds files save_to_disk did not write, or they were damaged"):
        load_preference_pairs(folder)


def test_integer_too_large_for_arrow(tmp_path):
    rows = [{**r, "meta": {"id": 2 ** 70 if i == 5 else i}} for i, r in enumerate(ROWS)]
    path = jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError, match=r"pairs\.jsonl, row 5 \(line 6\), column 'meta': "
                       r"the integer 1180591620717411303424 does not fit in 64 bits"):
        load_preference_pairs(path)


def test_json_value_nested_too_deep(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"prompt": "q", "chosen": "a", "rejected": "b", "x": '
                    + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: a JSON value nested too deep to read"):
        load_preference_pairs(path)


@pytest.fixture
def model_folder(tmp_path, tokenizer):
    folder = tmp_path / "model"
    tiny_model().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("damage, message", [
    ("corrupt", r"Cannot load the model '.*model': Error while deserializing header"),
    ("truncated", r"Cannot load the model '.*model': Error while deserializing header"),
    ("no-weights", r"Cannot load the model '.*model': Error no file named model.safetensors"),
    ("config-not-json", r"Cannot load the (model|tokenizer of) '.*model': "
                        r"It looks like the config file at .*config.json' is not a valid JSON file"),
    ("pickle-with-code", r"Cannot load the model '.*model': its weights file is a pickle holding more than tensors"),
])
def test_model_folders_that_cannot_be_loaded(tmp_path, data_file, capsys, model_folder, damage, message):
    weights = model_folder / "model.safetensors"
    if damage == "corrupt":
        data = bytearray(weights.read_bytes())
        data[8:64] = b"\xff" * 56  # inside the header
        weights.write_bytes(bytes(data))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "no-weights":
        weights.unlink()
    elif damage == "config-not-json":
        (model_folder / "config.json").write_text("{not json")
    else:
        import pickle

        weights.unlink()
        (model_folder / "pytorch_model.bin").write_bytes(pickle.dumps(print))  # a global: code, not tensors
    assert run_cli(tmp_path, data_file, "--model_name_or_path", str(model_folder), "--use_cpu", "true") == 1
    err = capsys.readouterr().err
    assert err.startswith("upo train: error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
