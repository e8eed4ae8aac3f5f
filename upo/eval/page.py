"""`eval.html` and `frontier.html`: one self-contained page to look at a comparison.

Everything is inside the file (CSS, a few lines of JavaScript, the plot as inline SVG or a base64 PNG): it opens
offline, from a laptop or an artifact store, and fetches nothing. It holds the settings, the summary table, the
plot, and every prompt with each model's reply side by side and its scores; the prompt table sorts by any score
(or a model's gain over the reference) and filters by text, and keeps that view in the address
(`eval.html#sort=m1-preference&dir=desc&q=pizza`). Without JavaScript the page still shows everything, unsorted.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from upo.eval.tables import side_by_side

SCORES = (("preference", "preference", "{:.4f}"), ("win", "win vs reference", "{:.2g}"),
          ("designer", "designer", "{:+.3f}"), ("kl", "KL", "{:.2f}"))


@dataclass
class ModelColumn:
    """One model's replies and per-prompt scores (`preference`, `win`, `designer`, `kl`: lists, None where unknown)."""

    name: str
    replies: list[str]
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    objectives: dict[str, list[float | None]] = field(default_factory=dict)


def _fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return pattern.format(value)


def _attr(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value))


def conversation_html(prompt) -> str:
    """A prompt as text, or its messages one per line with their role."""
    if isinstance(prompt, str):
        return f'<div class="text">{html.escape(prompt.strip())}</div>'
    return "".join(f'<div class="msg {html.escape(str(m.get("role", "")))}"><span class="role">'
                   f'{html.escape(str(m.get("role", "")))}</span> {html.escape(str(m.get("content", "")))}</div>'
                   for m in prompt)


def scatter_svg(points: Sequence[tuple[str, float, float, str]], x_label: str, y_label: str,
                width: int = 640, height: int = 360) -> str:
    """An inline SVG scatter plot: `points` are `(label, x, y, kind)`, kind `reference` drawn as a grey cross."""
    points = [p for p in points if all(isinstance(v, (int, float)) and math.isfinite(v) for v in p[1:3])]
    if not points:
        return '<p class="muted">No point to plot (the scores are undefined).</p>'
    left, right, top, bottom = 70, 20, 20, 50
    xs, ys = [p[1] for p in points], [p[2] for p in points]

    def padded(lo, hi):
        span = (hi - lo) or max(abs(hi), 1.0) * 0.1
        return lo - 0.12 * span, hi + 0.12 * span

    (x0, x1), (y0, y1) = padded(min(xs), max(xs)), padded(min(ys), max(ys))

    def sx(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y):
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="{html.escape(y_label)} against '
             f'{html.escape(x_label)}">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             'fill="#fafafa" stroke="#ccc"/>']
    for k in range(5):  # ticks
        tx, ty = x0 + (x1 - x0) * k / 4, y0 + (y1 - y0) * k / 4
        parts.append(f'<text x="{sx(tx):.1f}" y="{height - bottom + 16}" class="tick" text-anchor="middle">'
                     f'{tx:.3g}</text>')
        parts.append(f'<text x="{left - 6}" y="{sy(ty) + 4:.1f}" class="tick" text-anchor="end">{ty:.3g}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 10}" class="axis" text-anchor="middle">'
                 f'{html.escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" class="axis" '
                 f'text-anchor="middle">{html.escape(y_label)}</text>')
    for label, x, y, kind in points:
        cx, cy = sx(x), sy(y)
        if kind == "reference":
            parts.append(f'<path d="M{cx - 5:.1f},{cy - 5:.1f}L{cx + 5:.1f},{cy + 5:.1f}M{cx - 5:.1f},{cy + 5:.1f}'
                         f'L{cx + 5:.1f},{cy - 5:.1f}" stroke="#777" stroke-width="2"/>')
        else:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" class="pt {html.escape(kind)}"/>')
        right_half = cx > (left + width - right) / 2  # labels point inwards, so none is cut at the edge
        parts.append(f'<text x="{cx - 8 if right_half else cx + 8:.1f}" y="{cy - 8:.1f}" class="label" '
                     f'text-anchor="{"end" if right_half else "start"}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def png_img(png: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def markdown_table_html(markdown: str) -> str:
    """A pipe table (as `upo.eval.tables` writes it) as an HTML table."""
    lines = [line.strip() for line in markdown.strip().splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return ""

    def cells(line):
        return [html.escape(c.strip()) for c in line.strip("|").split("|")]

    head = "".join(f"<th>{c}</th>" for c in cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(line)) + "</tr>" for line in lines[2:])
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def markdown_blocks_html(markdown: str) -> str:
    """Markdown of pipe tables and lines of text (a report's), block by block: each table as `markdown_table_html`
    writes it, each other line as a paragraph (a `* ` item as a list item)."""
    out = []
    for block in markdown.strip().split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if lines and all(line.startswith("|") for line in lines):
            out.append(markdown_table_html(block))
            continue
        items = [f"<li>{html.escape(line[2:])}</li>" for line in lines if line.startswith("* ")]
        out += [f'<p class="note">{html.escape(line)}</p>' for line in lines if not line.startswith("* ")]
        if items:
            out.append(f"<ul>{''.join(items)}</ul>")
    return "\n".join(out)


def prompts_table(prompts: Sequence, reference_answers: Sequence[str | None] | None,
                  columns: Sequence[ModelColumn]) -> tuple[str, list[tuple[str, str]]]:
    """The per-prompt table, and the sort keys it offers (`(key, label)`)."""
    keys = [("index", "prompt #"), ("length", "prompt length")]
    baseline = next((c for c in columns if c.name == "reference"), None)
    for m, column in enumerate(columns):
        for score, label, _ in SCORES:
            values = column.scores.get(score) or []
            if any(v is not None for v in values) and not (score in ("win", "kl") and column is baseline):
                keys.append((f"m{m}-{score}", f"{column.name}: {label}"))
        if column is not baseline and baseline is not None:
            for score in ("preference", "designer"):
                if column.scores.get(score) and baseline.scores.get(score):
                    keys.append((f"m{m}-{score}-gain", f"{column.name}: {score} minus the reference's"))
        for name in column.objectives:
            keys.append((f"m{m}-obj-{name}", f"{column.name}: {name}"))
    head = ['<th class="num">#</th>', '<th class="prompt">prompt</th>']
    head += [f'<th class="reply">{html.escape(c.name)}</th>' for c in columns]
    rows = []
    for k, prompt in enumerate(prompts):
        text = prompt if isinstance(prompt, str) else " ".join(str(m.get("content", "")) for m in prompt)
        data = {"index": k, "length": len(text)}
        cells = [f'<td class="num">{k}</td>']
        reference = reference_answers[k] if reference_answers else None
        answer = f'<div class="answer"><span class="role">reference answer</span> {html.escape(reference)}</div>' \
            if reference else ""
        cells.append(f'<td class="prompt">{conversation_html(prompt)}{answer}</td>')
        for m, column in enumerate(columns):
            badges = []
            for score, label, pattern in SCORES:
                values = column.scores.get(score) or []
                value = values[k] if k < len(values) else None
                data[f"m{m}-{score}"] = value
                if value is not None and not (score in ("win", "kl") and column is baseline):
                    badges.append(f'<span class="badge {score}" title="{html.escape(label)}">{html.escape(label)} '
                                  f'{_fmt(value, pattern)}</span>')
                if baseline is not None and column is not baseline and score in ("preference", "designer"):
                    base = (baseline.scores.get(score) or [None] * (k + 1))[k]
                    data[f"m{m}-{score}-gain"] = None if value is None or base is None else value - base
            for name, values in column.objectives.items():
                data[f"m{m}-obj-{name}"] = values[k] if k < len(values) else None
            reply = column.replies[k] if k < len(column.replies) else ""
            cells.append(f'<td class="reply"><div class="text">{html.escape(reply) or "<em>(empty)</em>"}</div>'
                         f'<div class="badges">{"".join(badges)}</div></td>')
        attrs = " ".join(f'data-{key}="{_attr(value)}"' for key, value in data.items())
        rows.append(f'<tr {attrs}>{"".join(cells)}</tr>')
    table = (f'<table id="prompts" class="prompts"><thead><tr>{"".join(head)}</tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    return table, keys


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.muted,.settings{color:#666}.settings li{margin:2px 0}
table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left}
th{background:#f3f4f6;position:sticky;top:0;z-index:1}
table.summary td:not(:first-child){font-variant-numeric:tabular-nums;text-align:right}
.wrap{overflow-x:auto;max-width:100%}
table.prompts td.prompt{min-width:260px;max-width:420px}table.prompts td.reply{min-width:220px;max-width:360px}
td.num{color:#888;width:2em}.text{white-space:pre-wrap;word-break:break-word}
.msg{margin:2px 0;white-space:pre-wrap;word-break:break-word}
.role{display:inline-block;font-size:11px;color:#fff;background:#888;border-radius:3px;padding:0 4px;margin-right:4px}
.msg.user .role{background:#2563eb}.msg.assistant .role{background:#059669}.msg.system .role{background:#6b7280}
.answer{margin-top:6px;padding-top:6px;border-top:1px dashed #ccc;color:#444}.answer .role{background:#b45309}
.badges{margin-top:6px}.badge{display:inline-block;font-size:11px;background:#eef2ff;color:#3730a3;border-radius:3px;
padding:1px 5px;margin:2px 3px 0 0;white-space:nowrap}
.badge.designer{background:#ecfdf5;color:#065f46}.badge.win{background:#fef3c7;color:#92400e}
.badge.kl{background:#f3f4f6;color:#374151}
.controls{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin:8px 0 10px}
.controls input[type=search]{min-width:260px;padding:4px 6px}.controls select{padding:3px}
svg.plot{max-width:100%;height:auto}svg .tick{font-size:11px;fill:#666}svg .axis{font-size:12px;fill:#333}
svg .label{font-size:12px;fill:#111}svg .pt{fill:#2563eb;stroke:#fff;stroke-width:1.5}
img.plot{max-width:100%;height:auto;border:1px solid #eee}
tr.hidden{display:none}.note{white-space:pre-wrap}
"""

SCRIPT = """
(function(){
  var table=document.getElementById('prompts'); if(!table) return;
  var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
  var sel=document.getElementById('sort-key'), dir=document.getElementById('sort-dir');
  var filter=document.getElementById('filter'), count=document.getElementById('shown');
  function value(row,key){var v=row.getAttribute('data-'+key);return v===null||v===''?NaN:parseFloat(v);}
  function sort(){
    var key=sel.value, down=dir.value==='desc';
    rows.sort(function(a,b){var x=value(a,key),y=value(b,key);
      if(isNaN(x)&&isNaN(y)) return value(a,'index')-value(b,'index');
      if(isNaN(x)) return 1; if(isNaN(y)) return -1; return down?y-x:x-y;});
    rows.forEach(function(r){body.appendChild(r);});
  }
  function apply(){
    var q=filter.value.toLowerCase(), n=0;
    rows.forEach(function(r){var hit=!q||r.textContent.toLowerCase().indexOf(q)>=0;
      r.classList.toggle('hidden',!hit); if(hit) n++;});
    count.textContent=n+' of '+rows.length+' prompts';
  }
  function remember(){  // the view in the address: a link shows the same sort and filter
    var h='sort='+encodeURIComponent(sel.value)+'&dir='+dir.value;
    if(filter.value) h+='&q='+encodeURIComponent(filter.value);
    try{history.replaceState(null,'','#'+h);}catch(e){}
  }
  sel.addEventListener('change',function(){  // a score sorts best first; the prompt's number in order
    dir.value=(sel.value==='index'||sel.value==='length')?'asc':'desc'; sort(); remember();});
  dir.addEventListener('change',function(){sort(); remember();});
  filter.addEventListener('input',function(){apply(); remember();});
  location.hash.replace(/^#/,'').split('&').forEach(function(part){
    var kv=part.split('='), v=decodeURIComponent(kv[1]||'');
    if(kv[0]==='sort'&&sel.querySelector('option[value="'+v+'"]')) sel.value=v;
    if(kv[0]==='dir'&&(v==='asc'||v==='desc')) dir.value=v;
    if(kv[0]==='q') filter.value=v;
  });
  sort(); apply();
})();
"""


def render_page(title: str, settings: Sequence[str], summary_html: str, plot_html: str, prompts: Sequence,
                reference_answers: Sequence[str | None] | None, columns: Sequence[ModelColumn],
                notes: Sequence[str] = (), data: dict | None = None) -> str:
    """The whole page (see the module docstring). `data`, when given, is embedded as JSON for whoever wants it."""
    table, keys = prompts_table(prompts, reference_answers, columns)
    options = "".join(f'<option value="{html.escape(key)}">{html.escape(label)}</option>' for key, label in keys)
    embedded = ""
    if data is not None:  # "</" would end the script element early
        payload = json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/")
        embedded = f'<script type="application/json" id="eval-data">{payload}</script>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<ul class="settings">{"".join(f"<li>{html.escape(line)}</li>" for line in settings)}</ul>
<h2>Summary</h2>
<div class="wrap">{summary_html}</div>
{"".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)}
<h2>Plot</h2>
{plot_html}
<h2>Every prompt</h2>
<div class="controls">
<label>Filter <input id="filter" type="search" placeholder="text in the prompt or any reply"></label>
<label>Sort by <select id="sort-key">{options}</select></label>
<select id="sort-dir" aria-label="direction"><option value="asc">lowest first</option>
<option value="desc">highest first</option></select>
<span id="shown" class="muted">{len(prompts)} prompts</span>
</div>
<div class="wrap">{table}</div>
{embedded}
<script>{SCRIPT}</script>
</body></html>
"""


def eval_page(report: dict) -> str:
    """`eval.html` from the report `upo eval` writes to `eval.json`."""
    summaries = report["summaries"]
    names = [s["name"] for s in summaries]
    per_prompt = report["per_prompt"]
    columns = []
    for name in names:
        entries = [entry[name] for entry in per_prompt]
        objectives = sorted({k for e in entries for k in (e.get("objectives") or {})})
        columns.append(ModelColumn(
            name, [e["reply"] for e in entries],
            {score: [e.get(score) for e in entries] for score, _, _ in SCORES},
            {n: [(e.get("objectives") or {}).get(n) for e in entries] for n in objectives}))
    points = [(s["name"], s.get("designer_score"), s.get("preference_score"),
               "reference" if s["name"] == "reference" else "model") for s in summaries]
    settings = [f"Reference: {report.get('reference_model')}", f"Data: {report.get('data')}",
                f"Decoding: {report.get('decoding')}", f"Preference scorer: {report.get('preference_scorer')}",
                f"Designer objectives standardised with {report.get('designer_scale_source')}"]
    return render_page(f"upo eval: {', '.join(n for n in names if n != 'reference')} against the reference", settings,
                       markdown_table_html(side_by_side(summaries)),
                       scatter_svg(points, "designer score (weighted z, mean over prompts)", "preference score"),
                       [e["prompt"] for e in per_prompt], [e.get("reference_answer") for e in per_prompt], columns,
                       data={"summaries": summaries})


def frontier_page(results: dict, png: bytes | None, report_markdown: str) -> str:
    """`frontier.html` from `upo.experiments.frontier.results.collect_results`, the plot it drew and the report's
    Markdown (`upo.experiments.frontier.report.format_report`): its tables as HTML tables, its other lines as text."""
    columns = []
    reference = results.get("reference_per_prompt")
    if reference and reference.get("replies"):
        columns.append(ModelColumn("reference", reference["replies"],
                                   {"preference": reference.get("preference"), "designer": reference.get("designer")}))
    for run in results["runs"]:
        if run.get("replies"):
            columns.append(ModelColumn(run["name"], run["replies"],
                                       {"preference": run.get("preference"), "win": run.get("wins"),
                                        "designer": run.get("designer"), "kl": run.get("kl")}))
    plot = png_img(png, "preference score against designer score for every run") if png else \
        '<p class="muted">No finished run yet.</p>'
    prompts = results.get("prompts") or []
    settings = [f"Runs finished: {len(results['runs'])}",
                f"Preference: {results.get('preference_scorer') or 'preference score'}"]
    return render_page("upo frontier", settings, markdown_blocks_html(report_markdown), plot, prompts,
                       results.get("reference_answers"), columns)
