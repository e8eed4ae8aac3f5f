"""`upo eval` checks its data and its scorers' outputs as strictly as `upo train` does, and bounds its network calls:
messages of another dialect or without content, text made only of invisible characters, pairs whose chosen equals
their rejected, scorers that return a numpy array (accepted) or no opinion at all (refused), a judge that never
answers or whose answers never parse, and a model card whose front matter is broken."""

import http.server
import json
import sys
import threading
import time
import types

import numpy as np
import pytest
import torch
from helpers import make_tiny_lm_dir, write_jsonl

from upo.cli import main
from upo.errors import DataError, RewardFunctionError, UPOError
from upo.eval.data import load_eval_data
from upo.eval.metrics import score_objectives
from upo.eval.scorers import build_preference_scorer
from upo.eval.settings import ScorerArguments


@pytest.mark.parametrize("row, message", [
    ({"prompt": [{"from": "human", "value": "hi"}]}, "message 0: a ShareGPT-style message ('from', 'value'); upo reads "
                                                      "{'role', 'content'} messages"),
    ({"prompt": [{"role": "human", "content": "hi"}]}, "message 0: role 'human' is not one of ['system', 'user', "
                                                        "'assistant', 'tool'] (another dialect's name: use 'user')"),
    ({"prompt": [{"role": "user", "content": None}]}, "message 0: no 'content' (absent or null)"),
    ({"prompt": "\u200b\u2060 "}, "column 'prompt': the prompt is empty, or only whitespace or invisible characters"),
    ({"prompt": "Hi?", "chosen": "\ufeff\u200b", "rejected": "No."}, "column 'chosen': empty, or only whitespace or "
                                                                     "invisible characters ('\\ufeff\\u200b')"),
    ({"prompt": [{"role": "user", "content": "\u3164"}]}, "every message is empty, or only whitespace or invisible"),
], ids=["sharegpt", "dialect-role", "null-content", "invisible-prompt", "invisible-chosen", "blank-letter"])
def test_eval_rows_are_checked_as_training_checks_them(tmp_path, row, message):
    first = [{"role": "user", "content": "A fine prompt?"}] if isinstance(row["prompt"], list) else "A fine prompt?"
    path = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": first, **{k: "ok" for k in row if k != "prompt"}}, row])
    with pytest.raises(DataError) as error:
        load_eval_data(path)
    assert str(error.value).startswith(f"{path}, row 1 (line 2), ") and message in str(error.value)


def test_identical_pairs_are_left_out_of_the_accuracy_and_counted(tmp_path):
    path = write_jsonl(tmp_path / "eval.jsonl", [
        {"prompt": "Q1?", "chosen": "same", "rejected": "same"}, {"prompt": "Q2?", "chosen": "yes", "rejected": "no"},
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: hello"}])
    data = load_eval_data(path)
    assert [r["prompt"] for r in data.rows] == ["Q1?", "Q2?", "\n\nHuman: hi\n\nAssistant:"]
    assert [r.get("chosen") for r in data.rows] == [None, "yes", None]
    assert data.identical_pairs == 1  # the third, with no prompt column, was a conversation: its prompt is split off
    assert "1 with chosen and rejected, 1 more with chosen identical to rejected, left out of the implicit-reward " \
           "accuracy" in data.describe()


def numpy_scores(prompts, completions, **kwargs):
    return np.array([float(len(c)) for c in completions], dtype=np.float32)


def tensor_scores(prompts, completions, **kwargs):
    return torch.tensor([float(len(c)) for c in completions])


def no_opinion(prompts, completions, **kwargs):
    return [None] * len(completions)


@pytest.fixture
def scorer_module(monkeypatch):
    """The three functions above as the importable module `scorer_functions` (as a user's file would be)."""
    module = types.ModuleType("scorer_functions")
    module.numpy_scores, module.tensor_scores, module.no_opinion = numpy_scores, tensor_scores, no_opinion
    monkeypatch.setitem(sys.modules, "scorer_functions", module)


def test_scorers_returning_a_numpy_array_or_a_tensor_are_accepted(scorer_module):
    for func in (numpy_scores, tensor_scores):
        scorer = build_preference_scorer(ScorerArguments(f"function:scorer_functions.{func.__name__}"))
        assert scorer.score_replies(["p", "q"], ["ab", "abc"], [{}, {}]) == [2.0, 3.0]
        assert score_objectives(["p", "q"], ["ab", "abc"], [func], [{}, {}]) == {func.__name__: [2.0, 3.0]}


def test_scorers_with_no_opinion_on_any_reply_are_refused(scorer_module):
    scorer = build_preference_scorer(ScorerArguments("function:scorer_functions.no_opinion"))
    with pytest.raises(UPOError, match=r"returned None for all 2 replies: it has no opinion on any, so every "
                                       r"comparison would be a tie"):
        scorer.score_replies(["p", "q"], ["a", "b"], [{}, {}])
    with pytest.raises(RewardFunctionError, match=r"'no_opinion' returned None for all 2 generated replies"):
        score_objectives(["p", "q"], ["a", "b"], [no_opinion], [{}, {}])


class SlowJudge(http.server.BaseHTTPRequestHandler):
    """A judge endpoint that sleeps `delay` s before answering `answer`, or answers 429 with Retry-After first."""

    delay, answer, requests, rate_limited = 0.0, "A", [], 0

    def do_POST(self):  # noqa: N802 - the http.server API
        self.rfile.read(int(self.headers["Content-Length"]))
        SlowJudge.requests.append(time.monotonic())
        if SlowJudge.rate_limited:
            SlowJudge.rate_limited -= 1
            self.send_response(429)
            self.send_header("Retry-After", "0.2")
            self.end_headers()
            return
        time.sleep(SlowJudge.delay)
        reply = json.dumps({"choices": [{"message": {"content": SlowJudge.answer}}]}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_judge():
    SlowJudge.delay, SlowJudge.answer, SlowJudge.requests, SlowJudge.rate_limited = 0.0, "A", [], 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowJudge)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def judge(url, **options):
    return build_preference_scorer(ScorerArguments(f"judge:{url}", judge_model="m", **{"judge_concurrency": 2,
                                                                                       **options}))


def test_a_judge_that_never_answers_stops_within_its_bounds(slow_judge):
    """Before, each request waited 3 x 120 s, and every queued request did the same in turn."""
    SlowJudge.delay = 30
    started = time.monotonic()
    with pytest.raises(UPOError, match=r"no answer after 2 tries of at most judge_timeout=0.3 s .*raise "
                                       r"--judge_timeout or --judge_retries"):
        judge(slow_judge, judge_timeout=0.3, judge_retries=1).compare(["p"] * 10, ["x"] * 10, ["y"] * 10, [{}] * 10)
    assert time.monotonic() - started < 10
    assert len(SlowJudge.requests) <= 4  # two in flight, each tried twice: the other 18 were cancelled, not sent


def test_a_judge_deadline_bounds_all_its_requests(slow_judge):
    SlowJudge.delay = 0.5
    with pytest.raises(UPOError, match=r"requests answered within judge_deadline=1 s"):
        judge(slow_judge, judge_deadline=1).compare(["p"] * 10, ["x"] * 10, ["y"] * 10, [{}] * 10)


def test_a_rate_limited_judge_is_asked_again_after_its_retry_after(slow_judge):
    SlowJudge.rate_limited = 2
    assert judge(slow_judge, judge_concurrency=1).compare(["p"], ["x"], ["y"], [{}]) == [0.5]
    assert len(SlowJudge.requests) == 4 and SlowJudge.requests[1] - SlowJudge.requests[0] >= 0.2


def test_a_judge_whose_answers_never_parse_is_refused(slow_judge):
    SlowJudge.answer = "Both replies have merit."
    with pytest.raises(UPOError, match=r"none of its 4 answers says A, B or tie \(one was 'Both replies have merit.'"):
        judge(slow_judge).compare(["p", "q"], ["x", "x2"], ["y", "y2"], [{}, {}])


def test_a_broken_model_card_is_refused_before_anything_loads(tmp_path, capsys):
    run = make_tiny_lm_dir(tmp_path / "run")
    (run / "README.md").write_text("---\nlicense: [apache\ntags: x\n---\n# A card\n")
    assert main(["eval", "--model", str(run), "--reference", str(tmp_path / "not-a-model"), "--update_model_card",
                 "true", "--eval_data", str(tmp_path / "missing.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"upo eval: error: {run / 'README.md'}: the model card's metadata (the YAML front matter "
                          "between the --- lines at its top) cannot be read (") and err.count("\n") == 1
