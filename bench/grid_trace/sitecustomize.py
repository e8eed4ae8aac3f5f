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


# (qualified name, the modules that define it in one version or another, tag of a call or None). A name is wrapped
# where its module defines it (a class method where the class defines it); where another module re-exports it, the
# function found there is already the wrapped one. The modules moved between versions (upo.models became a package,
# the scorers got a package, the frontier's checks moved into its config), the names did not.
TARGETS = [
    # model files (every process)
    ("_convert_gguf", ("upo.models", "upo.models.smollm2"), None),
    ("load_causal_lm", ("upo.models", "upo.models.loading"), _first_arg),
    ("load_tokenizer", ("upo.models", "upo.models.loading"), _first_arg),
    # a training process (`upo train`)
    ("UPOTrainer.__init__", ("upo.trainer",), None),
    ("prepare_models", ("upo.training.model_setup",), None),
    ("prepare_preference_data", ("upo.data.pipeline",), None),
    ("score_designer_rewards", ("upo.rewards.scoring",), None),
    ("tokenize_dataset", ("upo.data.tokenization",), None),
    ("add_reference_logps", ("upo.training.reference",), None),
    ("Trainer.train", ("transformers.trainer",), None),
    ("Trainer.training_step", ("transformers.trainer",), None),
    ("Trainer.evaluate", ("transformers.trainer",), None),
    ("Trainer.save_model", ("transformers.trainer",), None),
    # the frontier process
    ("run_frontier", ("upo.experiments.frontier.runner",), None),
    ("train_run", ("upo.experiments.frontier.runner",), _run_name),
    ("preference_scorer", ("upo.experiments.frontier.runner",), None),
    ("log_run_evaluation", ("upo.experiments.frontier.runner",), _run_name),
    ("load_frontier_config", ("upo.experiments.frontier.config",), None),
    ("check_run_options", ("upo.experiments.frontier.checks",), None),
    ("collect_results", ("upo.experiments.frontier.results",), None),
    ("write_report", ("upo.experiments.frontier.report",), None),
    # evaluation
    ("Evaluator.__init__", ("upo.eval.evaluate",), None),
    ("Evaluator.evaluate", ("upo.eval.evaluate",), _second_arg),
    ("Evaluator._evaluate", ("upo.eval.evaluate",), _second_arg),
    ("load_model", ("upo.eval.evaluate", "upo.models.trained"), _first_arg),
    ("fit_designer_standardization", ("upo.eval.evaluate", "upo.rewards.standardization"), None),
    ("load_eval_data", ("upo.eval.data",), None),
    ("generate", ("upo.eval.generate",), None),
    ("render_prompts", ("upo.eval.generate",), None),
    ("reply_kl", ("upo.eval.generate",), None),
    ("GenerationMixin.generate", ("transformers.generation.utils",), None),
    ("score_objectives", ("upo.eval.metrics",), None),
    ("implicit_reward_accuracy", ("upo.eval.metrics",), None),
    ("HumanReplySimilarity.__init__", ("upo.eval.scorers", "upo.eval.scorers.similarity"), None),
    ("HumanReplySimilarity.score", ("upo.eval.scorers", "upo.eval.scorers.similarity"), None),
    ("SimilarityScorer.score_replies", ("upo.eval.scorers", "upo.eval.scorers.similarity"), None),
    ("RewardModelScorer.score_replies", ("upo.eval.scorers", "upo.eval.scorers.reward_model"), None),
    ("FunctionScorer.score_replies", ("upo.eval.scorers", "upo.eval.scorers.function"), None),
    ("PairwiseJudge.compare", ("upo.eval.scorers", "upo.eval.scorers.judge"), None),
    ("PeftModel.from_pretrained", ("peft.peft_model",), None),
    ("BaseTuner.merge_and_unload", ("peft.tuners.tuners_utils",), None),
]
MARK = "_upo_bench_target"  # set on a wrapper: a re-export of it is not wrapped twice

_pending: dict[str, list] = {}  # module -> [(qualified name, tag)] not looked at yet
_wrapped: set[str] = set()
_why_not: dict[str, list[str]] = {}
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

    setattr(timed, MARK, name)
    return timed


def _wrap_target(module, qualname: str, tag_of) -> str | None:
    """Wraps `module.qualname` in place where the module (or its class) defines it; returns why not, or None when
    it is wrapped (now, or already where it is defined)."""
    owner_name, _, attr = qualname.rpartition(".")
    owner = module
    if owner_name:
        owner = getattr(module, owner_name, None)
        if not isinstance(owner, type):
            return f"{module.__name__} has no class {owner_name}"
    found = owner.__dict__.get(attr)
    if found is None:
        return f"{module.__name__} has no {qualname}"
    func = found.__func__ if isinstance(found, (classmethod, staticmethod)) else found
    if getattr(func, MARK, None) == qualname:
        return None
    if not callable(func):
        return f"{module.__name__}.{qualname} is not callable"
    if not owner_name and getattr(func, "__module__", module.__name__) != module.__name__:
        return f"{module.__name__}.{qualname} is imported from {func.__module__}, not defined there"
    timed = _timed(func, qualname, tag_of)
    setattr(owner, attr, type(found)(timed) if isinstance(found, (classmethod, staticmethod)) else timed)
    return None


def _patch(module) -> None:
    for qualname, tag_of in _pending.pop(module.__name__, []):
        try:
            why = _wrap_target(module, qualname, tag_of)
        except Exception as error:  # never break the program being measured
            why = f"{type(error).__name__}: {error}"
        if why is None:
            _wrapped.add(qualname)
        else:
            _why_not.setdefault(qualname, []).append(why)


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
            "wrapped": sorted(_wrapped), "missing": _missing()})


def _missing() -> dict[str, list[str]]:
    """The targets that no module of this version defines: each module that could is loaded without it, or is not
    in this version (its package loaded, the module not there), with why not where one was looked at. A target whose
    modules this process never needed is not listed."""
    import importlib.util

    def absent(module: str) -> bool | None:  # True: loaded without the name (none is wrapped), or not there at all
        if module in sys.modules:
            return True
        parent = module.rpartition(".")[0]
        if parent and parent not in sys.modules:  # finding it would import its package: unknown here
            return None
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):
            return True

    missing = {}
    for name, modules, _ in TARGETS:
        if name not in _wrapped and all(absent(m) is True for m in modules):
            missing[name] = _why_not.get(name) or [f"no module {' or '.join(modules)} in this version"]
    return missing


def _install() -> None:
    for qualname, modules, tag_of in TARGETS:
        for module in modules:
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
