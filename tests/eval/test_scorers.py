"""Preference scorers: a real (tiny) reward model, a GRPO-style function, and a pairwise judge served over HTTP on
127.0.0.1 by the test itself."""

import http.server
import json
import re
import threading

import pytest
import torch
from helpers import make_tiny_reward_model_dir
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from upo.errors import ConfigError, UPOError
from upo.eval.scorers import build_preference_scorer
from upo.eval.scorers.judge import PairwiseJudge
from upo.eval.scorers.reward_model import RewardModelScorer
from upo.eval.settings import ScorerArguments

PROMPTS = [[{"role": "user", "content": "hi how are you"}], [{"role": "user", "content": "what is your name"}],
           "\n\nHuman: do you like pizza\n\nAssistant:"]
REPLIES = ["good thanks", "my name is what", "yes i love pizza very much"]


def test_reward_model_scores_prompt_and_reply_through_its_chat_template(tmp_path):
    folder = make_tiny_reward_model_dir(tmp_path / "rm")
    scorer = build_preference_scorer(ScorerArguments(f"reward_model:{folder}", scorer_batch_size=2))
    assert isinstance(scorer, RewardModelScorer) and not scorer.pairwise
    scores = scorer.score_replies(PROMPTS, REPLIES, [{}] * 3)
    # The definition, one sequence at a time and unpadded: the template's text, the logit at its last token.
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected = []
    for prompt, reply in zip(PROMPTS, REPLIES):
        if isinstance(prompt, list):
            text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": reply}], tokenize=False)
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        else:
            ids = tokenizer(prompt + " " + reply, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected.append(float(model(input_ids=ids).logits[0, 0]))
    assert scores == pytest.approx(expected, abs=1e-5)  # batched with padding: the same numbers
    assert len(set(scores)) == 3
    assert scorer.score_replies(PROMPTS[:2], REPLIES[:2], [{}] * 2) == pytest.approx(scores[:2], abs=1e-5)


def test_reward_model_scores_the_last_real_token_whatever_the_pad_ids(tmp_path):
    """The model's config pads with id 1 (its end-of-text token, as many reward models do), the tokenizer with 0:
    transformers' own pooling read a padding position of a shorter reply in a batch (and skipped the template's
    closing end-of-text token even alone). Batched, alone and by the definition (the score head on the last
    token's hidden state, unpadded) now agree."""
    folder = make_tiny_reward_model_dir(tmp_path / "rm")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "pad_token_id": 1}))
    scorer = build_preference_scorer(ScorerArguments(f"reward_model:{folder}", scorer_batch_size=3))
    assert scorer.tokenizer.pad_token_id == 0 and scorer.model.config.pad_token_id == 1
    batched = scorer.score_replies(PROMPTS, REPLIES, [{}] * 3)
    alone = [scorer.score_replies([p], [r], [{}])[0] for p, r in zip(PROMPTS, REPLIES)]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    expected = []
    for text, templated in zip(scorer.texts(PROMPTS, REPLIES), [True, True, False]):
        ids = scorer.tokenizer(text, add_special_tokens=not templated, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected.append(float(model.score(model.model(input_ids=ids).last_hidden_state[0, -1])[0]))
    assert batched == pytest.approx(alone, abs=1e-5) and batched == pytest.approx(expected, abs=1e-5)


def test_a_classifier_with_two_labels_is_not_a_reward_model(tmp_path):
    folder = make_tiny_reward_model_dir(tmp_path / "clf", num_labels=2)
    with pytest.raises(ConfigError, match="the model has 2 labels; a reward model has one"):
        build_preference_scorer(ScorerArguments(f"reward_model:{folder}"))


def test_function_scorer_follows_the_reward_function_contract():
    scorer = build_preference_scorer(ScorerArguments("function:helpers.words_in_reply"))
    assert scorer.score_replies(PROMPTS, REPLIES, [{}] * 3) == [2.0, 4.0, 6.0]
    scores = scorer.score_replies(PROMPTS[:2], ["", "two words"], [{}] * 2)
    assert scores[0] != scores[0] and scores[1] == 2.0  # None: no opinion (NaN), a tie in the win rate
    with pytest.raises(ConfigError, match="could not be imported"):
        build_preference_scorer(ScorerArguments("function:helpers.no_such_function"))
    with pytest.raises(ConfigError, match="unknown kind 'oracle'"):
        build_preference_scorer(ScorerArguments("oracle:x"))


class Judge(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: prefers the reply with more words, or always answers `answer`."""

    requests: list = []
    answer: str | None = None
    status: int = 200

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Judge.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if Judge.status != 200:
            self.send_response(Judge.status)
            self.end_headers()
            self.wfile.write(b'{"error": "bad key"}')
            return
        text = body["messages"][0]["content"]
        a, b = re.search(r"Reply A:\n(.*)\n\nReply B:\n(.*)\n\nAnswer", text, re.S).groups()
        answer = Judge.answer or ("A" if len(a.split()) > len(b.split()) else "B" if len(b.split()) > len(a.split())
                                  else "tie")
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": f"{answer}."}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_url():
    Judge.requests, Judge.answer, Judge.status = [], None, 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Judge)  # loopback only
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_judge_asks_both_orders_and_counts_ties_as_halves(judge_url, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "secret")
    judge = build_preference_scorer(ScorerArguments(f"judge:{judge_url}", judge_model="judge-7b",
                                                    judge_api_key_env="JUDGE_KEY"))
    assert isinstance(judge, PairwiseJudge) and judge.pairwise
    replies = ["a much longer reply here", "short", "same words", "identical"]
    reference = ["short one", "a much longer reply", "other words", "identical"]
    wins = judge.compare(PROMPTS + PROMPTS[:1], replies, reference, [{}] * 4)
    assert wins == [1.0, 0.0, 0.5, 0.5]
    assert len(Judge.requests) == 6  # both orders of the three different pairs; identical replies are a tie unasked
    first = Judge.requests[0]  # requests are sent concurrently: in any order
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer secret"
    assert first["body"]["model"] == "judge-7b" and first["body"]["temperature"] == 0
    asked = [r["body"]["messages"][0]["content"] for r in Judge.requests]
    assert sum("Conversation:\nuser: hi how are you\n\nReply A:\n" in text for text in asked) == 2
    # A judge that always picks the first position: its bias cancels, every prompt is a tie.
    Judge.answer = "A"
    assert judge.compare(PROMPTS, replies[:3], reference[:3], [{}] * 3) == [0.5, 0.5, 0.5]
    Judge.answer = "Neither, they are both fine"  # answers that never parse: refused, not a tie throughout
    with pytest.raises(UPOError, match="none of its 2 answers says A, B or tie"):
        judge.compare(PROMPTS[:1], replies[:1], reference[:1], [{}])
    assert judge.unparsed == 2


def test_judge_template_model_and_server_errors_are_one_line(judge_url, tmp_path):
    template = tmp_path / "judge.txt"
    template.write_text("Prompt: {prompt}\nReply A:\n{reply_a}\n\nReply B:\n{reply_b}\n\nAnswer A or B.")
    judge = build_preference_scorer(ScorerArguments(f"judge:{judge_url}", judge_model="m",
                                                    judge_template=str(template)))
    assert judge.compare(PROMPTS[:1], ["one two three"], ["one"], [{}]) == [1.0]
    assert Judge.requests[0]["body"]["messages"][0]["content"].startswith("Prompt: user: hi how are you\nReply A:")
    with pytest.raises(ConfigError, match=r"the template lacks \{reply_b\}"):
        build_preference_scorer(ScorerArguments(f"judge:{judge_url}", judge_model="m",
                                                judge_template="{prompt} {reply_a}"))
    with pytest.raises(ConfigError, match="needs the judge's model name: pass --judge_model"):
        build_preference_scorer(ScorerArguments(f"judge:{judge_url}"))
    Judge.status = 401
    with pytest.raises(UPOError, match=r"judge at http://127.0.0.1:\d+/v1/chat/completions: HTTP 401"):
        judge.compare(PROMPTS[:1], ["a b"], ["c"], [{}])
