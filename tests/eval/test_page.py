"""eval.html and frontier.html, offline: one self-contained file (nothing fetched), every prompt with every model's
reply and scores, sortable and filterable, and text from the data escaped. scripts/check_report.sh renders the
same pages in headless Chromium."""

import base64
import json
from html.parser import HTMLParser

from upo.eval.page import Section, eval_page, frontier_page
from upo.eval.tables import Table

HOSTILE = "</script><script>alert('x')</script> & <b>bold</b>"


class Page(HTMLParser):
    """What the structure tests look at: tags with their attributes, table rows and cells, scripts."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.rows, self.scripts, self._cell, self._in = [], [], [], None, []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self._in.append(tag)
        if tag == "tr" and any(k.startswith("data-") for k in attrs):
            self.rows.append({"attrs": attrs, "cells": []})
        if tag == "td" and self.rows:
            self.rows[-1]["cells"].append("")
            self._cell = self.rows[-1]
        if tag == "script":
            self.scripts.append({"attrs": attrs, "text": ""})

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._in and self._in[-1] == "script":
            self.scripts[-1]["text"] += data
        elif self._cell is not None:
            self._cell["cells"][-1] += data


def report(n_prompts=3):
    prompts = ["\n\nHuman: hi\n\nAssistant:", [{"role": "user", "content": "how are you"}],
               [{"role": "system", "content": "be nice"}, {"role": "user", "content": "name?"}]][:n_prompts]
    names = ["reference", "DPO", "UPO"]
    per_prompt = []
    for k, prompt in enumerate(prompts):
        entry = {"prompt": prompt, "reference_answer": f"answer {k}"}
        for m, name in enumerate(names):
            entry[name] = {"reply": HOSTILE if (k, name) == (1, "UPO") else f"{name} says {k}",
                           "preference": 0.1 * (k + m), "win": 0.5 if name == "reference" else float(k % 2),
                           "designer": m - k, "kl": 0.0 if name == "reference" else 1.5 * m,
                           "objectives": {"length": 0.25 * k}}
        per_prompt.append(entry)
    summaries = [{"name": n, "n_prompts": n_prompts, "objective/length": 0.5, "designer_score": 0.1 * m,
                  "designer_score_std": 1.0, "preference_score": 0.2 + 0.1 * m, "win_rate": 0.5, "kl": 1.0 * m,
                  "implicit_accuracy": None, "length_words": 3.0, "length_tokens": 4.0} for m, n in enumerate(names)]
    return {"reference_model": "org/base", "data": f"{n_prompts} evaluation prompts from hh.jsonl",
            "decoding": "greedy", "preference_scorer": "reward model org/rm", "designer_scale_source": "the run's",
            "summaries": summaries, "per_prompt": per_prompt}


def test_eval_page_holds_every_prompt_and_reply_and_fetches_nothing():
    text = eval_page(report())
    page = Page(text)
    # Self-contained: no external script, stylesheet, image or link; the plot is inline SVG.
    for tag, attrs in page.tags:
        assert not any(attrs.get(a, "").startswith(("http", "//")) for a in ("src", "href")), (tag, attrs)
        assert not (tag == "link" and attrs.get("rel") == "stylesheet") and not (tag == "script" and "src" in attrs)
    assert sum(tag == "circle" for tag, _ in page.tags) == 2  # DPO and UPO; the reference is a cross
    # One row per prompt: index, prompt (with its reference answer), and a cell per model.
    assert len(page.rows) == 3 and all(len(r["cells"]) == 2 + 3 for r in page.rows)
    assert "answer 1" in page.rows[1]["cells"][1] and "how are you" in page.rows[1]["cells"][1]
    assert page.rows[2]["cells"][3].startswith("DPO says 2")
    # Text from the data is escaped, never markup: the hostile reply is text in its cell, and no extra script.
    assert HOSTILE in page.rows[1]["cells"][4] and "<b>bold</b>" not in text
    assert len(page.scripts) == 2  # the embedded JSON and the page's own script
    # Sortable by any score: each row carries them, the select offers them (gains over the reference too).
    options = [attrs["value"] for tag, attrs in page.tags if tag == "option" and attrs.get("value", "").startswith("m")]
    assert {"m1-preference", "m2-designer", "m2-win", "m2-kl", "m2-preference-gain", "m2-obj-length"} <= set(options)
    assert "m0-win" not in options  # the reference against itself: no information
    assert float(page.rows[2]["attrs"]["data-m2-preference"]) == 0.1 * (2 + 2)
    assert float(page.rows[2]["attrs"]["data-m2-designer-gain"]) == (2 - 2) - (0 - 2)
    assert [tag for tag, attrs in page.tags if attrs.get("id") in ("filter", "sort-key", "sort-dir")] == \
        ["input", "select", "select"]
    data = json.loads(next(s["text"] for s in page.scripts if s["attrs"].get("type") == "application/json"))
    assert data["summaries"][2]["name"] == "UPO"
    # The summary table: one column per model, one row per metric.
    assert "<th>UPO</th>" in text and "win rate vs reference" in text


def test_frontier_page_embeds_its_plot_and_the_runs_replies():
    png = b"\x89PNG\r\n\x1a\nfake"
    results = {"runs": [{"name": "dpo", "replies": ["a", "b"], "preference": [0.1, 0.2], "wins": [1.0, 0.0],
                         "designer": [0.0, 1.0], "kl": [0.5, 0.7]}],
               "reference_per_prompt": {"replies": ["x", "y"], "preference": [0.0, 0.3], "designer": [0.0, 0.0]},
               "prompts": ["p0", "p1"], "reference_answers": [None, None], "preference_scorer": "similarity"}
    sections = [Section("Each run", table=Table(["run", "x"], [["dpo", "1"]], [False, True])),
                Section("Target", ["Target: not met."], ["upo: ..."])]
    text = frontier_page(results, png, sections)
    page = Page(text)
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0] == "data:image/png;base64," + base64.b64encode(png).decode()
    assert len(page.rows) == 2 and [len(r["cells"]) for r in page.rows] == [4, 4]
    assert float(page.rows[1]["attrs"]["data-m1-preference-gain"]) == 0.2 - 0.3
    assert "Target: not met." in text


def test_plot_ticks_fall_at_round_values():
    from upo.eval.page import nice_ticks

    assert nice_ticks(0.13, 0.87) == ([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], 1)
    assert nice_ticks(-0.037, 0.512) == ([-0.2, 0.0, 0.2, 0.4, 0.6], 1)
    assert nice_ticks(0.4413, 0.4587) == ([0.44, 0.445, 0.45, 0.455, 0.46], 3)
    assert nice_ticks(0.0, 1.0) == ([0.0, 0.25, 0.5, 0.75, 1.0], 2)
    assert nice_ticks(3.0, 3.0)[0] == [2.6, 2.8, 3.0, 3.2, 3.4]  # one value: a range around it


def test_absolute_paths_are_shown_relative_to_the_pages_folder():
    from upo.eval.page import relative_paths

    assert relative_paths("16 prompts from /runs/x/data/eval.jsonl; greedy", "/runs/x") == \
        "16 prompts from data/eval.jsonl; greedy"
    assert relative_paths("Reference: /models/base.", "/runs/x") == "Reference: ../../models/base."
    for kept in ("org/base", "KL (nats / reply)", "https://huggingface.co/org/x", "1/2 of them", "beta / T"):
        assert relative_paths(kept, "/runs/x") == kept


def test_the_eval_page_shows_intervals_and_tables_from_data_without_absolute_paths(tmp_path):
    data = report()
    data["reference_model"] = str(tmp_path / "models" / "base")
    data["data"] = f"3 evaluation prompts from {tmp_path / 'data' / 'hh.jsonl'}"
    for summary in data["summaries"][1:]:
        summary.update(win_rate=0.75, win_rate_ci90=[0.4113, 1.0], designer_gain=0.25, designer_gain_ci90=[-0.1, 0.6])
    text = eval_page(data, folder=tmp_path / "out")
    page = Page(text)
    assert str(tmp_path) not in text
    assert "Reference: ../models/base" in text and "from ../data/hh.jsonl" in text
    assert "|---|" not in text and "| metric" not in text  # no Markdown
    cells = [attrs for tag, attrs in page.tags if tag == "td" and attrs.get("class") == "n"]
    assert cells and "75.0% (41.1%..100.0%)" in text and "+0.250 (-0.100..+0.600)" in text
    assert sum(tag == "line" and attrs.get("class") == "interval" for tag, attrs in page.tags) == 2  # DPO, UPO
    ticks = [t for t in text.split('class="tick"')[1:]]
    assert ticks and all(t.split(">")[1].split("<")[0].replace(".", "").replace("-", "").isdigit() for t in ticks)
