"""Where one run's evaluation in a frontier grid spends its time, piece by piece, and what the levers would save.

Evaluates a trained LoRA run folder as `upo frontier` does (`upo.eval.evaluate.Evaluator`: the reference once, then
the run) and times each piece in this process: the model load (base weights, tokenizer, adapter, merge), prompt
rendering, generation (its prefill and decode forwards apart from the rest of `generate`), the KL (the reference's
forward, the arithmetic), the implicit-reward accuracy, the designer objectives and the preference scorer. Then it
times the alternatives the measurement suggests, on the same prompts and model: the adapter merged into a copy of
the reference already in memory, the reference's prompt pass done once per grid, smaller generation batches, a
static KV cache. Written against the evaluation code of commit 66d2ec5; medians of `--reps` repetitions after a
warm-up, one process, `--threads` torch threads. Times are CPU seconds of this process (`time.process_time`): on one
thread they are the work's own time, which other jobs on a shared machine move far less than wall time (on several
threads they add up the threads).

    python bench/grid.py --pairs 64 --steps 16 --prompts 32 --runs dpo --keep --work_dir /tmp/grid
    python bench/eval_profile.py --run /tmp/grid/this-rep0/out/runs/dpo --prompts 32 --reps 3
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


clock = time.process_time


class ForwardTimer:
    """CPU time of every forward of a module (forward hooks): the first of a `generate` call is its prefill."""

    def __init__(self, module):
        self.times: list[float] = []
        self._start = None
        self._handles = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, *_):
        self._start = clock()

    def _post(self, *_):
        self.times.append(clock() - self._start)

    def remove(self):
        for handle in self._handles:
            handle.remove()


def timed(fn, reps: int):
    """(median seconds, last result) of `reps` calls after one warm-up call."""
    result = fn()
    seconds = []
    for _ in range(reps):
        start = clock()
        result = fn()
        seconds.append(clock() - start)
    return statistics.median(seconds), result


def once(fn):
    start = clock()
    result = fn()
    return clock() - start, result


def run_arguments(description: str, reps: int) -> argparse.ArgumentParser:
    """The options of a benchmark of one run's evaluation (this script's and bench/eval_paths.py's)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run", required=True, type=Path, help="A trained LoRA run folder (upo frontier's runs/NAME).")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new_tokens", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval_data", default=str(ROOT / "examples" / "data" / "chitchat_eval.jsonl"))
    parser.add_argument("--out", type=Path, default=None, help="Also write the numbers as JSON here.")
    return parser


def main() -> None:
    args = run_arguments(__doc__.split("\n\n")[0], reps=3).parse_args()
    torch.set_num_threads(args.threads)

    from peft import PeftModel

    from upo.eval.evaluate import Evaluator
    from upo.eval.generate import generation_batches, render_prompts, reply_kl
    from upo.eval.metrics import implicit_reward_accuracy, score_objectives
    from upo.models import load_causal_lm, load_tokenizer

    try:  # the layout since the evaluation's settings and the trained-model loading got their own modules
        from upo.eval.settings import EvalSettings
        from upo.models.trained import base_model_name_or_path, load_model, resolve_base_model
    except ImportError:  # 66d2ec5's
        from upo.eval.evaluate import EvalSettings, load_model, resolve_base_model
        from upo.models import base_model_name_or_path

    out: dict[str, float] = {}
    run = str(args.run)
    train_data = next(args.run.parent.parent.glob("train_pairs_*.jsonl"), None)
    settings = EvalSettings(eval_data=args.eval_data, train_data=str(train_data) if train_data else None,
                            reward_funcs=["readability", "non_offensive"], reward_weights=[1.0, 1.0],
                            max_prompts=args.prompts, max_new_tokens=args.new_tokens, batch_size=args.batch_size)

    # ---- as the frontier does it, cold in this process
    out["setup: Evaluator (reference load, data, designer standardisation, similarity scorer)"], ev = once(
        lambda: Evaluator(settings, "smollm2-135m-instruct", progress=False))
    scorer = ev.scorer
    out["reference evaluation (first, cold)"], _ = once(ev.evaluate_reference)
    out["run evaluation (first, cold)"], _ = once(lambda: ev.evaluate("run", run))
    out["run evaluation (warm)"], _ = timed(lambda: ev.evaluate("run", run), args.reps)

    # ---- the model load, piece by piece
    base_name = resolve_base_model(base_model_name_or_path(run))
    out["load: base weights (load_causal_lm)"], base = timed(lambda: load_causal_lm(base_name, dtype=torch.float32),
                                                              args.reps)
    out["load: tokenizer from the run folder"], _ = timed(lambda: load_tokenizer(run), args.reps)

    def adapter_then_merge():  # the two steps after the base's load, each timed
        model = load_causal_lm(base_name, dtype=torch.float32)
        start = clock()
        model = PeftModel.from_pretrained(model, run)
        middle = clock()
        model.merge_and_unload()
        return middle - start, clock() - middle

    steps = [adapter_then_merge() for _ in range(args.reps)]
    out["load: adapter (PeftModel.from_pretrained)"] = statistics.median(a for a, _ in steps)
    out["load: merge (merge_and_unload)"] = statistics.median(m for _, m in steps)

    def merged_from_disk():
        return PeftModel.from_pretrained(load_causal_lm(base_name, dtype=torch.float32), run).merge_and_unload()

    out["load: base + adapter + merge"], policy = timed(merged_from_disk, args.reps)
    out["load (whole load_model)"], _ = timed(lambda: load_model(run), args.reps)

    reference = ev.reference

    def merged_from_reference():  # lever: the base already in memory, copied, the adapter merged into the copy
        return PeftModel.from_pretrained(copy.deepcopy(reference), run).merge_and_unload().eval()

    out["lever: deepcopy(reference) + adapter + merge"], copied = timed(merged_from_reference, args.reps)
    out["lever: deepcopy(reference) alone"], _ = timed(lambda: copy.deepcopy(reference), args.reps)
    same = all(torch.equal(a, b) for a, b in zip(policy.state_dict().values(), copied.state_dict().values()))
    out["check: copied+merged weights equal loaded+merged (1 = yes)"] = float(same)
    del base, copied

    # ---- generation, piece by piece (as upo.eval.generate.generate, one batch of `batch_size` prompts)
    tokenizer = ev.tokenizer
    prompts = ev.prompts
    out["tokenisation: render_prompts"], prompt_ids = timed(lambda: render_prompts(tokenizer, prompts), args.reps)
    lengths = [len(p) for p in prompt_ids]
    out["prompt tokens: mean"] = statistics.fmean(lengths)
    out["prompt tokens: max"] = max(lengths)
    pad = tokenizer.pad_token_id
    eos = sorted({tokenizer.eos_token_id} | {policy.generation_config.eos_token_id} - {None})

    def batch_of(indices):
        length = max(lengths[i] for i in indices)
        ids = torch.full((len(indices), length), pad, dtype=torch.long)
        mask = torch.zeros((len(indices), length), dtype=torch.long)
        for row, i in enumerate(indices):
            ids[row, length - lengths[i]:] = torch.tensor(prompt_ids[i])
            mask[row, length - lengths[i]:] = 1
        return ids, mask

    batches = generation_batches(prompt_ids, args.batch_size)
    out["padding: share of prompt positions that are padding"] = 1 - sum(lengths) / sum(
        len(b) * max(lengths[i] for i in b) for b in batches)

    def hf_generate(model, with_logits=True, size=args.batch_size, **extra):
        results = []
        for indices in generation_batches(prompt_ids, size):
            ids, mask = batch_of(indices)
            results.append((ids, mask, model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens, do_sample=False,
                pad_token_id=pad, output_logits=with_logits, return_dict_in_generate=True, **extra)))
        return results

    timer = ForwardTimer(policy)
    generated, runs = hf_generate(policy), []  # warm-up, then per repetition: total, prefill and decode forwards
    for _ in range(args.reps):
        timer.times.clear()
        start = clock()
        generated = hf_generate(policy)
        runs.append((clock() - start, timer.times[0], sum(timer.times[1:]), len(timer.times) - 1))
    timer.remove()
    whole, prefill, decode, steps = (statistics.median(column) for column in zip(*runs))
    out["generate: HF generate, output_logits (as upo)"] = whole
    if len(batches) == 1:
        out["generate: forwards, prefill"] = prefill
        out["generate: forwards, decode (all steps)"] = decode
        out["generate: decode forwards"] = steps
        out["generate: outside the forwards (HF loop, cache, logits)"] = whole - prefill - decode
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        hf_generate(policy)
    out["generate: GFLOP counted (matmuls, attention)"] = counter.get_total_flops() / 1e9
    out["generate: achieved GFLOP/s"] = out["generate: GFLOP counted (matmuls, attention)"] / whole
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    matmul, _ = timed(lambda: a @ b, 5)
    out["machine: float32 matmul GFLOP/s (1024^3, this process's threads)"] = 2 * 1024**3 / matmul / 1e9
    out["generate: without output_logits"], _ = timed(lambda: hf_generate(policy, False), args.reps)
    for size in (8, 16):
        if size < args.batch_size:
            out[f"lever: generate in batches of {size}"], _ = timed(lambda s=size: hf_generate(policy, True, s),
                                                                    args.reps)
    try:
        out["lever: generate with a static KV cache"], _ = timed(
            lambda: hf_generate(policy, True, cache_implementation="static"), args.reps)
    except Exception as error:  # not every transformers/torch pairing supports it on this CPU
        out["lever: generate with a static KV cache"] = float("nan")
        print(f"static cache: {type(error).__name__}: {error}")

    # ---- the KL: the reference's forward over prompt + reply, and the arithmetic
    ids, mask, gen = generated[0]
    n_new = gen.sequences.shape[1] - ids.shape[1]
    new_tokens = gen.sequences[:, ids.shape[1]:]
    is_eos = torch.isin(new_tokens, torch.tensor(eos))
    in_reply = (is_eos.long().cumsum(-1) - is_eos.long()) == 0
    full_mask = torch.cat([mask, in_reply.long()], dim=1)
    out["reply tokens: mean (to the end of turn)"] = float(in_reply.sum(-1).float().mean())
    policy_logits = torch.stack(gen.logits, dim=1)
    with torch.no_grad():
        out["KL: reply_kl (reference forward + arithmetic)"], _ = timed(
            lambda: reply_kl(policy_logits, reference, gen.sequences, full_mask, in_reply), args.reps)
        position_ids = (full_mask.cumsum(-1) - 1).clamp(min=0)
        out["KL: the reference's forward alone"], ref_out = timed(lambda: reference(
            input_ids=gen.sequences, attention_mask=full_mask, position_ids=position_ids,
            logits_to_keep=n_new + 1), args.reps)
        ref_logits = ref_out.logits[:, :-1]
        with FlopCounterMode(display=False) as counter:
            reference(input_ids=gen.sequences, attention_mask=full_mask, position_ids=position_ids,
                      logits_to_keep=n_new + 1)
        out["KL: the reference's forward, achieved GFLOP/s"] = counter.get_total_flops() / 1e9 / out[
            "KL: the reference's forward alone"]

        def arithmetic():
            p = policy_logits.float().log_softmax(-1)
            r = ref_logits.float().log_softmax(-1)
            return ((p.exp() * (p - r)).sum(-1) * in_reply).sum(-1)

        out["KL: arithmetic (log-softmax over the vocabulary)"], _ = timed(arithmetic, args.reps)
        out["KL: torch.stack of the step logits"], _ = timed(lambda: torch.stack(gen.logits, dim=1), args.reps)
        # Lever: the reference's pass over the prompts once per grid (its KV cache kept), each run then only the
        # reply positions on top of it.
        prompt_positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out["lever: reference prompt pass (once per grid)"], prefix = timed(lambda: reference(
            input_ids=ids, attention_mask=mask, position_ids=prompt_positions, use_cache=True), args.reps)

        def reply_part():
            cache = copy.deepcopy(prefix.past_key_values)
            return reference(input_ids=gen.sequences[:, ids.shape[1]:], attention_mask=full_mask,
                             position_ids=position_ids[:, ids.shape[1]:], past_key_values=cache, use_cache=True)

        out["lever: reference reply positions on the cached prompt (each run)"], part = timed(reply_part, args.reps)
        cached_logits = torch.cat([prefix.logits[:, -1:], part.logits[:, :-1]], dim=1)
        out["check: max |logit difference| cached vs full reference pass"] = float(
            (cached_logits - ref_logits).abs().max())
        out["lever: deepcopy of the prompt KV cache (included above)"], _ = timed(
            lambda: copy.deepcopy(prefix.past_key_values), args.reps)

    # ---- implicit accuracy, objectives, preference scorer
    rows = ev.rows
    out["implicit accuracy (reference log-probs cached)"], _ = timed(
        lambda: implicit_reward_accuracy(policy, reference, tokenizer, rows, settings.max_length), args.reps)
    replies = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    out["designer objectives (warm)"], _ = timed(
        lambda: score_objectives(prompts, replies, settings.reward_funcs, rows), args.reps)
    human = [r["reference_answer"] for r in rows]
    out["preference scorer: embed the replies"], _ = timed(lambda: scorer.similarity.embed(replies), args.reps)
    out["preference scorer: embed the human replies (the same every run)"], _ = timed(
        lambda: scorer.similarity.embed(human), args.reps)

    width = max(map(len, out))
    for name, value in out.items():
        print(f"{name:<{width}}  {value:10.3f}")
    if args.out:
        args.out.write_text(json.dumps({"settings": vars(args) | {"run": run, "out": str(args.out)},
                                        "threads": torch.get_num_threads(), "seconds": out}, indent=1, default=str))


if __name__ == "__main__":
    main()
