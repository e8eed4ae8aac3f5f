"""`upo data chitchat`: example extraction, the conversation split, pair labelling, and a whole build on a
small fake sample with a tiny LM and a tiny embedding model (the real ones are too slow for the fast suite)."""

import json

import pytest
from helpers import fake_conversations, make_tiny_lm_dir, make_tiny_scorer_dir
from transformers import AutoTokenizer

from upo.data.loading import load_preference_pairs
from upo.eval.generate import Decoding, generate_replies
from upo.eval.scorers.similarity import HumanReplySimilarity
from upo.experiments.chitchat import (
    ChitchatOptions,
    build_chitchat,
    extract_example,
    label_pairs,
    select_examples,
    split_of,
)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return HumanReplySimilarity(make_tiny_scorer_dir(tmp_path_factory.mktemp("scorer")))


def test_split_is_by_conversation_and_stable():
    ids = [f"id-{k}" for k in range(2000)]
    first = [split_of(i, 0.2) for i in ids]
    assert first == [split_of(i, 0.2) for i in ids]
    assert 0.15 < first.count("eval") / len(ids) < 0.25
    assert all(split_of(i, 0.0) == "train" for i in ids)


def test_extract_example_builds_an_alternating_context_ending_with_the_user():
    conversation = {"messages": [
        [{"text": "hi", "sender": "a"}, {"text": "how are you", "sender": "a"}],
        [{"text": "good thanks", "sender": "b"}],
        [{"text": "and what about you", "sender": "a"}],
        [{"text": "I like movies a lot", "sender": "b"}],
    ]}
    options = ChitchatOptions(context_turns=2, min_reply_words=5, max_reply_words=10)
    example = extract_example("x", conversation, options)
    # Only turn 3 has 5..10 words and a context within limits.
    assert example.human_reply == "I like movies a lot"
    assert [m["role"] for m in example.prompt] == ["system", "assistant", "user"]
    assert [m["content"] for m in example.prompt[1:]] == ["good thanks", "and what about you"]
    assert example.prompt[0]["content"] == options.system_prompt
    assert extract_example("y", {"messages": [[{"text": "alone", "sender": "a"}]]}, options) is None


def test_select_examples_respects_sizes_limits_and_disjoint_conversations():
    conversations = fake_conversations(200)
    options = ChitchatOptions(n_train=20, n_eval=6, eval_fraction=0.3, max_turn_words=16, max_reply_words=16)
    chosen = select_examples(conversations, options)
    assert len(chosen["train"]) == 20 and len(chosen["eval"]) == 6
    train_ids = {e.conversation_id for e in chosen["train"]}
    eval_ids = {e.conversation_id for e in chosen["eval"]}
    assert not train_ids & eval_ids
    assert all(split_of(i, 0.3) == "eval" for i in eval_ids)
    for example in chosen["train"] + chosen["eval"]:
        assert example.prompt[-1]["role"] == "user"
        assert all(len(m["content"].split()) <= 16 for m in example.prompt[1:])
        assert 2 <= len(example.human_reply.split()) <= 16
    assert select_examples(conversations, options) == chosen  # seeded


def test_label_pairs_prefers_the_reply_closest_to_the_human_and_drops_identical(scorer):
    from upo.experiments.chitchat import Example

    examples = [Example("a", [{"role": "user", "content": "hi"}], "i love pizza"),
                Example("b", [{"role": "user", "content": "hey"}], "hello")]
    candidates = [["i love pizza", "school work weekend"], ["same", "same"]]
    rows = label_pairs(examples, candidates, scorer.score)
    assert len(rows) == 1
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "i love pizza"}]
    assert rows[0]["similarity_chosen"] == pytest.approx(1.0, abs=1e-5)
    assert rows[0]["similarity_chosen"] > rows[0]["similarity_rejected"]


def test_scorer_is_a_cosine_similarity(scorer):
    s = scorer.score(["i love pizza", "i love pizza", ""], ["i love pizza", "school work", "hello"])
    assert s[0] == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= s[1] < 1.0 and -1.0 <= s[2] <= 1.0


def test_sampling_is_reproducible_batch_by_batch(tmp_path):
    folder = make_tiny_lm_dir(tmp_path / "lm")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = [[{"role": "user", "content": "hello " * (k % 3 + 1)}] for k in range(5)]
    decoding = Decoding(max_new_tokens=6, do_sample=True, num_return_sequences=2)
    saved = {}
    full = generate_replies(model, tokenizer, prompts, decoding, seed=3, batch_size=2,
                            on_batch=lambda b, r: saved.__setitem__(b, r), progress=False)
    assert all(len(r) == 2 for r in full)
    # Resuming with the first batch done gives exactly the same replies for the others.
    resumed = generate_replies(model, tokenizer, prompts, decoding, seed=3, batch_size=2, done={0: saved[0]},
                               progress=False)
    assert resumed == full


def test_build_writes_disjoint_labelled_files_that_load_as_pairs(tmp_path, scorer):
    source = tmp_path / "dataset.json"
    source.write_text(json.dumps(fake_conversations(120)))
    folder = make_tiny_lm_dir(tmp_path / "lm")
    options = ChitchatOptions(n_train=8, n_eval=4, max_new_tokens=6, max_turn_words=16, max_reply_words=16)
    paths = build_chitchat(tmp_path / "out", str(folder), options, batch_size=4, conversations_path=str(source),
                           scorer=scorer, progress=False)
    train = [json.loads(line) for line in paths["train"].read_text().splitlines()]
    evaluation = [json.loads(line) for line in paths["eval"].read_text().splitlines()]
    assert 0 < len(train) <= 8 and 0 < len(evaluation) <= 4
    assert not {r["conversation_id"] for r in train} & {r["conversation_id"] for r in evaluation}
    for row in train + evaluation:
        assert row["similarity_chosen"] >= row["similarity_rejected"]
        assert row["chosen"] != row["rejected"]
    dataset, report = load_preference_pairs(str(paths["train"]))
    assert len(dataset) == len(train) and "human_reply" in dataset.column_names
    manifest = json.loads((tmp_path / "out" / "chitchat_manifest.json").read_text())
    assert manifest["options"]["n_train"] == 8 and "MIT" in manifest["source"]
    assert not list((tmp_path / "out").glob(".chitchat_*.partial.jsonl"))
    # Same command, same files.
    again = build_chitchat(tmp_path / "out2", str(folder), options, batch_size=4, conversations_path=str(source),
                           scorer=scorer, progress=False)
    assert again["train"].read_text() == paths["train"].read_text()
