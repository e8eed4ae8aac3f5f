"""The options of `upo eval`, each declared once with its default, help and range: `upo eval`'s parser is generated
from these dataclasses (`upo.options.read_eval_options`), and the frontier builds its evaluation from them.

* `EvalSettings`: what every model of one comparison is evaluated with (the data, the designer objectives, the
  decoding). The frontier's `eval:` section and its evaluation key (`settings_key`) are these settings.
* `ScorerArguments`: the preference scorer (`upo.eval.scorers.build_preference_scorer`): the spec, and every
  option of every kind of scorer (`upo/eval/scorers/`, one file per kind). `SCORER_RUNTIME_OPTIONS` names those that
  change how a scorer runs, never what it scores.
* `EvalArguments`: which models, the reference, where they run and where the results go.

A numeric option declares its range in its type (`Annotated[int, POSITIVE_INT]`, upo.config_checks), checked when
the dataclass is built, before any model or data loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from upo.config_checks import OPTIONAL_POSITIVE_INT, POSITIVE, POSITIVE_INT, SEED, EachEntry, Range, check_ranges
from upo.eval.scorers import scorer_usage
from upo.rewards.guard import DEFAULT_TIMEOUT

DEFAULT_EVAL_DATA = "examples/data/chitchat_eval.jsonl"


@dataclass
class EvalSettings:
    """What every model of one comparison is evaluated with."""

    _argument_group_name = "evaluation: data, designer objectives, decoding"

    eval_data: str | None = field(
        default=None,
        metadata={"help": f"A .jsonl/.json/.csv/.parquet file or a local dataset folder; default {DEFAULT_EVAL_DATA}."},
    )
    train_data: str | None = field(
        default=None,
        metadata={"help": "Training pairs to standardise the objectives on; default the statistics stored in the first "
                  "model's upo_config.json, else the evaluation pairs, else the reference's replies."},
    )
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Designer objectives (built-in names or dotted import paths; in Python, reward functions "
                  "too); default those of the first model's upo_config.json."},
    )
    reward_weights: Annotated[list[float] | None, EachEntry(Range())] = field(
        default=None,
        metadata={"help": "One weight per designer objective; default the first model's when its objectives are used, "
                  "else 1.0 each."},
    )
    standardize_rewards: bool = field(
        default=True,
        metadata={"help": "Z-score each designer objective before weighting, as training does (false: the weighted "
                  "raw scores)."},
    )
    max_prompts: Annotated[int | None, OPTIONAL_POSITIVE_INT] = field(
        default=None, metadata={"help": "Evaluate on the first N prompts; default all of them."}
    )
    max_new_tokens: Annotated[int, POSITIVE_INT] = field(
        default=32, metadata={"help": "The most tokens a reply may have."}
    )
    batch_size: Annotated[int, POSITIVE_INT] = field(default=32, metadata={"help": "Prompts generated at once."})
    seed: Annotated[int, SEED] = field(
        default=0, metadata={"help": "Seed of the generation (batch i under seed + i): the same replies on every run."}
    )
    max_length: Annotated[int, Range(low=2, integer=True)] = field(
        default=256, metadata={"help": "Tokens of prompt + response for the implicit-reward accuracy."}
    )
    do_sample: bool = field(
        default=False,
        metadata={"help": "Sample replies (seeded, top_k 0: the whole distribution, noisier) instead of greedy."},
    )
    temperature: Annotated[float, POSITIVE] = field(
        default=1.0, metadata={"help": "Sampling temperature, with --do_sample."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A dataset for datasets.load_dataset (Hub ID, or a local folder laid out as a Hub dataset), "
                  "instead of eval_data."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    split: str | None = field(default=None, metadata={"help": "The split; default 'test' (or the only one)."})
    prompt_column: str = field(default="prompt", metadata={"help": "The column holding the prompts."})
    reference_column: str | None = field(
        default=None,
        metadata={"help": "The column holding a reference answer (for --preference_scorer similarity); default "
                  "human_reply when present."},
    )
    reward_timeout: Annotated[float | None, Range(low=0, low_open=True, none_ok=True)] = field(
        default=DEFAULT_TIMEOUT,
        metadata={"help": f"Seconds one call of a designer reward function may take on the generated replies; default "
                  f"{DEFAULT_TIMEOUT:g}, null or None: no limit."},
    )
    prompt_format: str = field(
        default="auto",
        metadata={"help": "auto: HH-style text prompts ('Human: ... Assistant:') become chat messages when the "
                  "reference tokenizer has a chat template; text: as they are; chat: always converted.",
                  "choices": ["auto", "text", "chat"]},
    )

    def __post_init__(self):
        check_ranges(self, "evaluation")  # before any model loads


@dataclass
class ScorerArguments:
    """The preference scorer: the user's side of the comparison (upo.eval.scorers)."""

    _argument_group_name = "preference scorer"

    preference_scorer: str = field(
        default="similarity",
        metadata={"help": f"{scorer_usage()}."},
    )
    scorer_batch_size: Annotated[int, POSITIVE_INT] = field(
        default=16, metadata={"help": "Batch size of a reward model."}
    )
    judge_model: str | None = field(
        default=None, metadata={"help": "The judge's model name, as its server serves it."}
    )
    judge_template: str | None = field(
        default=None,
        metadata={"help": "A file (or text) with {prompt}, {reply_a} and {reply_b}; default a short pairwise prompt."},
    )
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "The environment variable holding the judge's API key, if it needs one."},
    )
    judge_concurrency: Annotated[int, POSITIVE_INT] = field(
        default=8, metadata={"help": "Judge requests in flight at once."}
    )
    judge_timeout: Annotated[float, POSITIVE] = field(
        default=60.0, metadata={"help": "Seconds one judge request may take before it is tried again."}
    )
    judge_retries: Annotated[int, Range(low=0, integer=True)] = field(
        default=2,
        metadata={"help": "Tries after the first of a judge request that timed out, found no server, was rate-limited "
                  "(429) or failed on the server (5xx); waiting 1, 2, 4, ... s (at most 60), or as the server's "
                  "Retry-After says. A request that fails them all stops the evaluation at once."},
    )
    judge_deadline: Annotated[float | None, Range(low=0, low_open=True, none_ok=True)] = field(
        default=None,
        metadata={"help": "Seconds all the judge's requests for one model may take together; past it the evaluation "
                  "stops, naming it. None: no overall limit (each request is bounded by judge_timeout and "
                  "judge_retries)."},
    )
    scorer_timeout: Annotated[float | None, Range(low=0, low_open=True, none_ok=True)] = field(
        default=DEFAULT_TIMEOUT,
        metadata={"help": f"Seconds one call of a function scorer may take; default {DEFAULT_TIMEOUT:g}, None: no "
                  "limit."},
    )

    def __post_init__(self):
        check_ranges(self, "evaluation")


@dataclass
class EvalArguments:
    """Which models `upo eval` compares, where they run, and where the results go."""

    _argument_group_name = "models and results"

    model: list[str] = field(
        metadata={"help": "Run folders (full or LoRA), model folders, Hub IDs or known names."},
    )
    name: list[str] | None = field(
        default=None, metadata={"help": "A display name per model; default the folder name."}
    )
    reference: str | None = field(
        default=None,
        metadata={"help": "The reference model; default the base model the first --model was trained from."},
    )
    device: str | None = field(
        default=None, metadata={"help": "Where models run; default cuda when available, else cpu."}
    )
    dtype: str | None = field(
        default=None,
        metadata={"help": "Model dtype; default the checkpoint's own on a GPU, float32 on a CPU.",
                  "choices": ["auto", "float32", "bfloat16", "float16"]},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code shipped with a model (or reward model) to run."}
    )
    report_to: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={"help": "Trackers to log the metrics and a table of sample replies to: tensorboard, wandb."},
    )
    run_name: str | None = field(
        default=None, metadata={"help": "The tracker's run name; default upo-eval-<first model>."}
    )
    logging_dir: str | None = field(default=None, metadata={"help": "Where TensorBoard writes; default OUT/runs."})
    update_model_card: bool = field(
        default=False,
        metadata={"help": "Add each evaluated run's results to the model-index of its model card (README.md)."},
    )
    num_threads: str = field(
        default="auto",
        metadata={"help": "torch CPU threads: a number, or 'auto' (1 when other processes keep the CPU busy)."},
    )
    generation_backend: str = field(
        default="transformers",
        metadata={"help": "What generates the replies: transformers' generate. vllm is refused for now (no vLLM "
                  "installs beside upo's transformers to test it).", "choices": ["transformers", "vllm"]},
    )
    out: str | None = field(
        default=None, metadata={"help": "Folder for eval.json, eval.md and eval.html; default the first model's."}
    )


EVAL_DATACLASSES = (EvalArguments, ScorerArguments, EvalSettings)
# The scorer's options that change how it runs, never what it scores: they stay out of the frontier's evaluation key.
SCORER_RUNTIME_OPTIONS = ("scorer_batch_size", "judge_api_key_env", "judge_concurrency", "judge_timeout",
                          "judge_retries", "judge_deadline", "scorer_timeout")
# The same of the evaluation settings.
EVAL_RUNTIME_SETTINGS = ("reward_timeout",)
