"""Preference scorer `judge:URL`: a pairwise LLM judge behind an OpenAI-compatible chat endpoint
(`/chat/completions`), serving the model `--judge_model`. Each pair of replies is asked in both orders, so that the
judge's position bias cancels: a prompt counts 1 when the model's reply wins both, 0 when it loses both, one half for
a split or a tie."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from upo.errors import ConfigError, UPOError
from upo.eval.scorers import PreferenceScorer

DEFAULT_JUDGE_TEMPLATE = """Which of two replies to the same conversation would the user prefer? Judge helpfulness, \
relevance, correctness and tone; ignore which reply comes first and how long it is.

Conversation:
{prompt}

Reply A:
{reply_a}

Reply B:
{reply_b}

Answer with one word: A, B, or tie."""

_VERDICT = re.compile(r"^\W*(a|b|tie)\b", re.IGNORECASE)


class PairwiseJudge(PreferenceScorer):
    """An LLM judge behind an OpenAI-compatible chat endpoint, asked which of two replies is better.

    `url`: the server's base (`http://host:8000/v1`) or its `/chat/completions` address. `model`: the model name
    the server serves. `template`: a file, or the text itself, with `{prompt}`, `{reply_a}` and `{reply_b}`; the
    judge answers A, B or tie (an answer that is none of them counts as a tie, and is counted in `unparsed`). The
    API key, when the server needs one, is read from the environment variable `api_key_env`."""

    kind = "judge"
    usage = "judge:URL (an OpenAI-compatible chat endpoint)"
    pairwise = True

    @classmethod
    def from_options(cls, argument, options, *, device, dtype, trust_remote_code):
        return cls(argument, model=options.judge_model, template=options.judge_template,
                   api_key_env=options.judge_api_key_env, concurrency=options.judge_concurrency)

    def __init__(self, url: str, model: str | None, template: str | None, api_key_env: str, concurrency: int,
                 timeout: float = 120.0):
        if not model:
            raise ConfigError(f"--preference_scorer judge:{url} needs the judge's model name: pass --judge_model NAME "
                              "(the name the server serves).")
        self.spec = f"judge:{url}"
        self.url = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.timeout = model, concurrency, timeout
        if template is not None and Path(template).is_file():
            template = Path(template).read_text()
        self.template = template or DEFAULT_JUDGE_TEMPLATE
        missing = [f for f in ("{prompt}", "{reply_a}", "{reply_b}") if f not in self.template]
        if missing:
            raise ConfigError(f"--judge_template: the template lacks {', '.join(missing)}; it must hold {{prompt}}, "
                              "{reply_a} and {reply_b}.")
        self.api_key = os.environ.get(api_key_env)
        self.unparsed = 0
        self.requests = 0

    def describe(self) -> str:
        return f"pairwise judge {self.model} at {self.url} (both orders)"

    def compare(self, prompts, replies, reference_replies, rows):
        jobs = [(k, order) for k in range(len(prompts)) if replies[k] != reference_replies[k] for order in (0, 1)]

        def ask(job):
            k, order = job
            a, b = (replies[k], reference_replies[k]) if order == 0 else (reference_replies[k], replies[k])
            verdict = self.verdict(prompts[k], a, b)
            model_is = "a" if order == 0 else "b"
            return k, 0.5 if verdict in ("tie", None) else float(verdict == model_is)

        outcomes = [[] for _ in prompts]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            for k, outcome in pool.map(ask, jobs):
                outcomes[k].append(outcome)
        return [sum(o) / len(o) if o else 0.5 for o in outcomes]  # the same text: a tie, nobody asked

    def verdict(self, prompt, reply_a: str, reply_b: str) -> str | None:
        """'a', 'b', 'tie', or None when the answer is none of them."""
        text = self.template.replace("{prompt}", render_conversation(prompt)).replace(
            "{reply_a}", reply_a).replace("{reply_b}", reply_b)
        answer = self._chat(text)
        match = _VERDICT.match(answer)
        if match is None:
            self.unparsed += 1
            return None
        return match.group(1).lower()

    def _chat(self, text: str) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": text}], "temperature": 0,
                           "max_tokens": 8}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        last_error = None
        for _ in range(3):  # a busy server may drop a connection; anything else fails at once
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.loads(response.read())
                self.requests += 1
                return reply["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")[:200]
                if error.code < 500:
                    raise UPOError(f"judge at {self.url}: HTTP {error.code} ({detail.strip()}); check the URL, "
                                   f"--judge_model and the API key variable.") from None
                last_error = f"HTTP {error.code} ({detail.strip()})"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                last_error = str(getattr(error, "reason", error))
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise UPOError(f"judge at {self.url}: the answer is not an OpenAI chat completion ({error}).") from None
        raise UPOError(f"judge at {self.url}: no answer after 3 tries ({last_error}).")


def render_conversation(prompt) -> str:
    """A prompt as the judge reads it: the text, or one `role: content` line per message."""
    if isinstance(prompt, str):
        return prompt.strip()
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
