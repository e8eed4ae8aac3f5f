"""Preference scorer `judge:URL`: a pairwise LLM judge behind an OpenAI-compatible chat endpoint
(`/chat/completions`), serving the model `--judge_model`. Each pair of replies is asked in both orders, so that the
judge's position bias cancels: a prompt counts 1 when the model's reply wins both, 0 when it loses both, one half for
a split or a tie.

A network call has bounds, each an option: `judge_timeout` seconds per request; `judge_retries` more tries of a
request that timed out, found no server, was rate-limited (429) or failed on the server (5xx), after waiting 1, 2, 4,
... s (at most 60) or the server's Retry-After; `judge_deadline` seconds for all of one model's requests. A request
that fails every try stops the evaluation at once: the requests still queued are cancelled, not each tried in turn
(an endpoint that never answers cost three tries of 120 s per request, with no option to shorten them). A judge
whose answers never parse (none is A, B or tie) is refused rather than counted as a tie throughout."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path

from upo.errors import ConfigError, UPOError
from upo.eval.scorers import PreferenceScorer
from upo.logs import get_logger

logger = get_logger(__name__)

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
                   api_key_env=options.judge_api_key_env, concurrency=options.judge_concurrency,
                   timeout=options.judge_timeout, retries=options.judge_retries, deadline=options.judge_deadline)

    def __init__(self, url: str, model: str | None, template: str | None, api_key_env: str, concurrency: int,
                 timeout: float = 60.0, retries: int = 2, deadline: float | None = None):
        if not model:
            raise ConfigError(f"--preference_scorer judge:{url} needs the judge's model name: pass --judge_model NAME "
                              "(the name the server serves).")
        self.spec = f"judge:{url}"
        self.url = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.timeout = model, concurrency, timeout
        self.retries, self.deadline = retries, deadline
        self.unparsed_example: str | None = None
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
        unparsed_before = self.unparsed
        stop = threading.Event()  # set when one request failed for good: the others stop retrying

        def ask(job):
            if stop.is_set():  # another request failed for good: this one is not sent
                return None
            k, order = job
            a, b = (replies[k], reference_replies[k]) if order == 0 else (reference_replies[k], replies[k])
            try:
                verdict = self.verdict(prompts[k], a, b, stop)
            except BaseException:
                stop.set()  # at once, before this worker takes the next job
                raise
            model_is = "a" if order == 0 else "b"
            return k, 0.5 if verdict in ("tie", None) else float(verdict == model_is)

        outcomes = [[] for _ in prompts]
        pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency))
        started = time.monotonic()
        try:
            futures = [pool.submit(ask, job) for job in jobs]
            for future in as_completed(futures, timeout=self.deadline):
                answered = future.result()  # the first request that failed for good raises here
                if answered is not None:
                    outcomes[answered[0]].append(answered[1])
        except FuturesTimeout:
            raise UPOError(f"judge at {self.url}: {sum(map(len, outcomes))} of {len(jobs)} requests answered within "
                           f"judge_deadline={self.deadline:g} s. Raise --judge_deadline (or judge_concurrency), or "
                           "check the server's speed.") from None
        finally:  # on any way out: no request is retried or started any more
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
        self._check_answers(self.unparsed - unparsed_before, len(jobs), time.monotonic() - started)
        return [sum(o) / len(o) if o else 0.5 for o in outcomes]  # the same text: a tie, nobody asked

    def _check_answers(self, unparsed: int, asked: int, seconds: float) -> None:
        if asked and unparsed == asked:
            raise UPOError(f"judge at {self.url} ({self.model}): none of its {asked} answers says A, B or tie (one was "
                           f"{self.unparsed_example!r:.80}), so every comparison would count as a tie. Check "
                           "--judge_model and --judge_template: the template must ask for one word, A, B or tie.")
        if unparsed:
            logger.warning(f"judge at {self.url}: {unparsed} of {asked} answers were not A, B or tie (e.g. "
                           f"{self.unparsed_example!r:.80}); they count as ties.")

    def verdict(self, prompt, reply_a: str, reply_b: str, stop: threading.Event | None = None) -> str | None:
        """'a', 'b', 'tie', or None when the answer is none of them. `stop`, once set, ends the request's tries."""
        text = self.template.replace("{prompt}", render_conversation(prompt)).replace(
            "{reply_a}", reply_a).replace("{reply_b}", reply_b)
        answer = self._chat(text, stop or threading.Event())
        match = _VERDICT.match(answer)
        if match is None:
            self.unparsed += 1
            self.unparsed_example = answer
            return None
        return match.group(1).lower()

    def _chat(self, text: str, stop: threading.Event) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": text}], "temperature": 0,
                           "max_tokens": 8}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        last_error, tries = None, 1 + self.retries
        for attempt in range(tries):
            if stop.is_set():
                raise UPOError(f"judge at {self.url}: stopped (another request failed, or the deadline passed).")
            wait = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.loads(response.read())
                self.requests += 1
                return reply["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")[:200].strip()
                if error.code != 429 and error.code < 500:
                    raise UPOError(f"judge at {self.url}: HTTP {error.code} ({detail}); check the URL, --judge_model "
                                   "and the API key variable (--judge_api_key_env).") from None
                last_error, wait = f"HTTP {error.code} ({detail})", _retry_after(error.headers)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                last_error = str(getattr(error, "reason", error)) or type(error).__name__
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise UPOError(f"judge at {self.url}: the answer is not an OpenAI chat completion ({error}).") from None
            if attempt + 1 < tries:
                stop.wait(min(60.0, wait if wait is not None else 2.0 ** attempt))
        raise UPOError(f"judge at {self.url}: no answer after {tries} tries of at most judge_timeout={self.timeout:g} "
                       f"s ({last_error}). Check that the server is up and serves --judge_model {self.model}; raise "
                       "--judge_timeout or --judge_retries for a slow one.")


def _retry_after(headers) -> float | None:
    """The seconds a 429 or 503 answer asks to wait (its Retry-After header, in seconds), or None."""
    try:
        return max(0.0, float(headers.get("Retry-After")))
    except (TypeError, ValueError, AttributeError):
        return None


def render_conversation(prompt) -> str:
    """A prompt as the judge reads it: the text, or one `role: content` line per message."""
    if isinstance(prompt, str):
        return prompt.strip()
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
