"""One run's evaluation by the default path against the plain path (`Evaluator(plain=True)`: the run loaded from disk,
the KL's reference over prompt + reply, the implicit accuracy's whole forwards), in one process, alternating ABBA.

Each path's evaluator evaluates the reference first, as `upo frontier` does once per grid; then the run is evaluated
`--reps` times by each path, in the order A B B A A B ... Times are CPU seconds of this process (`time.process_time`,
on one thread the work's own time, which other jobs on a shared machine move far less than wall time) and wall
seconds; the table gives the medians, per phase, and the median of the per-pair ratios default / plain. A third
evaluator reads the default reference's stored evaluation, as a second `upo frontier` process does, and its first
run is timed apart (it pays the reference's prompt pass). The numbers of both paths are compared (replies, KL,
implicit accuracy).

    python bench/eval_paths.py --run /tmp/grid/this-rep0/out/runs/dpo --prompts 32 --reps 2
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from eval_profile import run_arguments  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main() -> None:
    args = run_arguments(__doc__.split("\n\n")[0], reps=2).parse_args()
    torch.set_num_threads(args.threads)

    from upo.eval.evaluate import Evaluator
    from upo.eval.settings import EvalSettings

    run = str(args.run)
    train_data = next(args.run.parent.parent.glob("train_pairs_*.jsonl"), None)
    settings = EvalSettings(eval_data=args.eval_data, train_data=str(train_data) if train_data else None,
                            reward_funcs=["readability", "non_offensive"], reward_weights=[1.0, 1.0],
                            max_prompts=args.prompts, max_new_tokens=args.new_tokens, batch_size=args.batch_size)
    evaluators = {"plain": Evaluator(settings, "smollm2-135m-instruct", progress=False, plain=True),
                  "default": Evaluator(settings, "smollm2-135m-instruct", progress=False)}
    out: dict = {"prompts": args.prompts, "new_tokens": args.new_tokens, "threads": args.threads, "reference": {},
                 "runs": {name: [] for name in evaluators}}
    for name, ev in evaluators.items():
        cpu, wall, record = timed(ev.evaluate_reference)
        out["reference"][name] = {"cpu": cpu, "wall": wall, "phases": record["summary"]["phases"]}
    records = {}
    for rep in range(args.reps):
        for name in (("plain", "default") if rep % 2 == 0 else ("default", "plain")):
            cpu, wall, records[name] = timed(lambda ev=evaluators[name]: ev.evaluate("run", run))
            out["runs"][name].append({"cpu": cpu, "wall": wall, "phases": records[name]["summary"]["phases"]})
            print(f"rep {rep} {name}: {cpu:.1f} CPU s, {wall:.1f} wall s, {records[name]['summary']['phases']}",
                  flush=True)
    later = Evaluator(settings, "smollm2-135m-instruct", progress=False)
    later.use_reference_record(json.loads(json.dumps(evaluators["default"].evaluate_reference())))
    cpu, wall, first = timed(lambda: later.evaluate("run", run))
    out["another process's first run"] = {"cpu": cpu, "wall": wall, "phases": first["summary"]["phases"]}

    plain, default = records["plain"], records["default"]
    out["same replies"] = plain["replies"] == default["replies"] == first["replies"]
    out["largest KL difference"] = max(abs(a - b) for a, b in zip(plain["kl"], default["kl"]))
    out["implicit accuracy"] = [r["summary"]["implicit_accuracy"] for r in (plain, default, first)]

    def median(name, key="cpu"):
        return statistics.median(r[key] for r in out["runs"][name])

    ratios = [d["cpu"] / p["cpu"] for p, d in zip(out["runs"]["plain"], out["runs"]["default"])]
    out["median ratio default / plain (CPU)"] = statistics.median(ratios)
    print(f"\n{args.prompts} prompts x {args.new_tokens} tokens, {args.threads} thread(s), {args.reps} rep(s) ABBA")
    print("| | plain | default |\n|---|---|---|")
    print(f"| reference evaluation, CPU s | {out['reference']['plain']['cpu']:.1f} | "
          f"{out['reference']['default']['cpu']:.1f} |")
    print(f"| run evaluation, CPU s (median) | {median('plain'):.1f} | {median('default'):.1f} |")
    print(f"| run evaluation, wall s (median) | {median('plain', 'wall'):.1f} | {median('default', 'wall'):.1f} |")
    for phase in out["runs"]["plain"][0]["phases"]:
        values = [statistics.median(r["phases"].get(phase, 0.0) for r in out["runs"][n]) for n in ("plain", "default")]
        print(f"| {phase}, wall s (median) | {values[0]:.1f} | {values[1]:.1f} |")
    print(f"\nmedian ratio default / plain, CPU: {out['median ratio default / plain (CPU)']:.2f} (per pair: "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"another process's first run (reference read from its stored evaluation): {cpu:.1f} CPU s, "
          f"{first['summary']['phases']}")
    print(f"same replies: {out['same replies']}; largest KL difference {out['largest KL difference']:.2e}; "
          f"implicit accuracy plain, default, another process: {out['implicit accuracy']}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
