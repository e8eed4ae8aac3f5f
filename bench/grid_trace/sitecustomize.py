"""Times named functions of upo, transformers and peft in every Python process it reaches (`bench/grid.py`).

Python imports `sitecustomize` at start-up from the first folder of `PYTHONPATH` that has one, so with this folder on
`PYTHONPATH` and `UPO_BENCH_TRACE_DIR` set, every process of a grid is traced: `upo frontier` and the `upo train`
processes it starts (they inherit the environment). Nothing here imports upo, torch or transformers, and nothing
depends on timing code inside the library, so the same hook measures any checkout of the project, old or new.

Each function of `TARGETS` is wrapped right after its module is executed (an import hook), before any other module
can bind it with `from module import name`. Each call appends one JSON line to `trace-<pid>.jsonl`: its name, a tag
(e.g. the run name), start, wall and CPU duration, and the wrapped calls it runs inside (`stack`), from which
`bench/grid.py` derives every call's own time. A target whose module loads without it is recorded as `missing`
(a function renamed or removed in that version), never an error. With `UPO_BENCH_PROFILE=<target name>` the calls
of that target are also run under cProfile, each call's statistics written as `profile-<pid>-<n>.prof`.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import threading
import time

TRACE_DIR = os.environ.get("UPO_BENCH_TRACE_DIR")


def _run_name(args, kwargs):
    run = args[1] if len(args) > 1 else kwargs.get("run")
    return run.get("name") if isinstance(run, dict) else None


def _second_arg(args, kwargs):
    return str(args[1]) if len(args) > 1 else None


def _first_arg(args, kwargs):
    return str(args[0]) if args else None


# (module, qualified name, tag of a call or None). A class method is wrapped where the class defines it.
TARGETS = [
    # model files (every process)
    ("upo.models", "_convert_gguf", None),
    ("upo.models", "load_causal_lm", _first_arg),
    ("upo.models", "load_tokenizer", _first_arg),
    # a training process (`upo train`)
    ("upo.trainer", "UPOTrainer.__init__", None),
    ("upo.training.model_setup", "prepare_models", None),
    ("upo.data.pipeline", "prepare_preference_data", None),
    ("upo.rewards.scoring", "score_designer_rewards", None),
    ("upo.data.tokenization", "tokenize_dataset", None),
    ("upo.training.reference", "add_reference_logps", None),
    ("transformers.trainer", "Trainer.train", None),
    ("transformers.trainer", "Trainer.training_step", None),
    ("transformers.trainer", "Trainer.evaluate", None),
    ("transformers.trainer", "Trainer.save_model", None),
    # the frontier process
    ("upo.experiments.frontier.runner", "run_frontier", None),
    ("upo.experiments.frontier.runner", "train_run", _run_name),
    ("upo.experiments.frontier.runner", "preference_scorer", None),
    ("upo.experiments.frontier.runner", "log_run_evaluation", _run_name),
    ("upo.experiments.frontier.checks", "check_run_options", None),
    ("upo.experiments.frontier.results", "collect_results", None),
    ("upo.experiments.frontier.report", "write_report", None),
    # evaluation
    ("upo.eval.evaluate", "Evaluator.__init__", None),
    ("upo.eval.evaluate", "Evaluator.evaluate", _second_arg),
    ("upo.eval.evaluate", "Evaluator._evaluate", _second_arg),
    ("upo.eval.evaluate", "load_model", _first_arg),
    ("upo.eval.evaluate", "fit_designer_standardization", None),
    ("upo.eval.data", "load_eval_data", None),
    ("upo.eval.generate", "generate", None),
    ("upo.eval.generate", "render_prompts", None),
    ("upo.eval.generate", "reply_kl", None),
    ("transformers.generation.utils", "GenerationMixin.generate", None),
    ("upo.eval.metrics", "score_objectives", None),
    ("upo.eval.metrics", "implicit_reward_accuracy", None),
    ("upo.eval.scorers", "HumanReplySimilarity.__init__", None),
    ("upo.eval.scorers", "HumanReplySimilarity.score", None),
    ("upo.eval.scorers", "SimilarityScorer.score_replies", None),
    ("upo.eval.scorers", "RewardModelScorer.score_replies", None),
    ("upo.eval.scorers", "FunctionScorer.score_replies", None),
    ("upo.eval.scorers", "PairwiseJudge.compare", None),
    ("peft.peft_model", "PeftModel.from_pretrained", None),
    ("peft.tuners.tuners_utils", "BaseTuner.merge_and_unload", None),
]

_pending: dict[str, list] = {}
_local = threading.local()
_lock = threading.Lock()
_file = None
_profiled = 0


def _write(record: dict) -> None:
    global _file
    with _lock:
        if _file is None:
            _file = open(os.path.join(TRACE_DIR, f"trace-{os.getpid()}.jsonl"), "a", buffering=1)
        _file.write(json.dumps(record, default=str) + "\n")


def _stack() -> list:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def _timed(func, name: str, tag_of):
    profile_this = os.environ.get("UPO_BENCH_PROFILE") == name

    @functools.wraps(func)
    def timed(*args, **kwargs):
        global _profiled
        tag = None
        if tag_of is not None:
            try:
                tag = tag_of(args, kwargs)
            except Exception:  # a tag is a label only
                tag = None
        stack = _stack()
        record = {"event": "call", "name": name, "tag": tag, "stack": [list(s) for s in stack],
                  "thread": threading.get_ident(), "t0": time.time(), "p0": time.perf_counter()}
        c0 = time.process_time()
        stack.append((name, tag))
        profiler = None
        if profile_this:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        failed = True
        try:
            result = func(*args, **kwargs)
            failed = False
            return result
        finally:
            if profiler is not None:
                profiler.disable()
                _profiled += 1
                path = os.path.join(TRACE_DIR, f"profile-{os.getpid()}-{_profiled}.prof")
                profiler.dump_stats(path)
                record["profile"] = path
            record["dur"] = time.perf_counter() - record["p0"]
            record["cpu"] = time.process_time() - c0
            record["failed"] = failed
            stack.pop()
            _write(record)

    return timed


def _wrap_target(module, qualname: str, tag_of) -> str | None:
    """Wraps `module.qualname` in place; returns why it could not, or None."""
    owner_name, _, attr = qualname.rpartition(".")
    owner = module
    if owner_name:
        owner = getattr(module, owner_name, None)
        if owner is None:
            return f"{module.__name__} has no {owner_name}"
    found = owner.__dict__.get(attr) if owner_name else getattr(module, attr, None)
    if found is None:
        return f"{module.__name__}.{owner_name or ''}{'.' if owner_name else ''}{attr} not defined there"
    if isinstance(found, (classmethod, staticmethod)):
        wrapped = type(found)(_timed(found.__func__, qualname, tag_of))
    elif callable(found):
        wrapped = _timed(found, qualname, tag_of)
    else:
        return f"{module.__name__}.{qualname} is not callable"
    setattr(owner, attr, wrapped)
    return None


def _patch(module) -> None:
    for qualname, tag_of in _pending.pop(module.__name__, []):
        try:
            why = _wrap_target(module, qualname, tag_of)
        except Exception as error:  # never break the program being measured
            why = f"{type(error).__name__}: {error}"
        _write({"event": "missing" if why else "wrapped", "module": module.__name__, "name": qualname, "why": why})


class _WrapAfterImport:
    """A meta-path finder that lets the other finders find a target module and wraps its functions once the module
    has executed, before the import statement that asked for it returns."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module  # a file loader is made for this one module: patching the instance is safe

        def exec_module(module):
            execute(module)
            _patch(module)

        loader.exec_module = exec_module
        return spec


def _exit_record() -> None:
    import resource

    threads = None
    if "torch" in sys.modules:
        try:
            threads = sys.modules["torch"].get_num_threads()
        except Exception:
            threads = None
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    _write({"event": "exit", "pid": os.getpid(), "t": time.time(), "p": time.perf_counter(), "argv": sys.argv,
            "torch_threads": threads, "cpu_self": own.ru_utime + own.ru_stime,
            "cpu_children": children.ru_utime + children.ru_stime, "max_rss_mb": own.ru_maxrss / 1024,
            "never_loaded": sorted(f"{m}:{q}" for m, targets in _pending.items() for q, _ in targets)})


def _install() -> None:
    for module, qualname, tag_of in TARGETS:
        _pending.setdefault(module, []).append((qualname, tag_of))
    for name in list(_pending):  # already imported (never the case for these at start-up, but be exact)
        if name in sys.modules:
            _patch(sys.modules[name])
    sys.meta_path.insert(0, _WrapAfterImport())
    _write({"event": "start", "pid": os.getpid(), "ppid": os.getppid(), "t": time.time(), "p": time.perf_counter(),
            "argv": list(getattr(sys, "argv", []))})
    atexit.register(_exit_record)


if TRACE_DIR:
    _install()
