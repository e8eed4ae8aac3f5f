"""Several processes through the standard launchers (two CPU processes, gloo), and the caches that make the
expensive preparation happen once: reward scores and reference log-probs.

The launched script is tests/ddp_train.py. Each launch costs ~20 s here, mostly imports.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import ddp_train
import pytest
import torch
import yaml
from datasets import Dataset
from helpers import QUESTIONS, make_pairs, tiny_model, write_jsonl
from safetensors.torch import load_file

from upo import UPOConfig, UPOTrainer
from upo.data.collator import PreferenceCollator
from upo.data.tokenization import tokenize_dataset
from upo.errors import ConfigError
from upo.training.distributed import check_launch
from upo.training.reference import add_reference_logps, reference_fingerprint

TESTS = Path(__file__).parents[1]
ROOT = TESTS.parent
BIN = Path(sys.executable).parent
LAUNCH_TIMEOUT = 240  # a rank that hangs fails the test instead of the whole CI job


def equal_length_pairs(n=16):
    """Every chosen response is 9 tokens, every rejected one 5: each rank's batch has the same token count.

    L_aux (and the 'sft' loss) divide by the number of response tokens *of the batch on each rank*; DDP then
    averages the ranks' gradients. That equals one process on the joint batch only when the ranks' token
    counts are equal; see test_designer_term_with_unequal_lengths_differs_across_ranks.
    """
    chosen = [" Long sentences with complicated terminology impede comprehension.",
              " Water boils at one hundred degrees."]
    rejected = [" Short words help.", " Please explain.", " No."]
    return [{"prompt": f"Human: {QUESTIONS[i % len(QUESTIONS)]} Assistant:", "chosen": chosen[i % 2],
             "rejected": rejected[i % 3]} for i in range(n)]


def launch(command, tmp_path, cache):
    env = {**os.environ, "UPO_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    (tmp_path / "launch.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


def max_difference(a, b):
    a, b = load_file(a), load_file(b)
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def two_processes_vs_one(tmp_path, monkeypatch, common):
    """Trains with torchrun (2 processes x 2 pairs) and in this process (1 x 4), both with the arguments `common` of
    tests/ddp_train.py. Returns the launch log and the largest difference between the two final weights."""
    log = launch([BIN / "torchrun", "--standalone", "--nproc_per_node", "2", "tests/ddp_train.py",
                  "--out", str(tmp_path / "two"), "--batch_size", "2", *common], tmp_path, tmp_path / "cache-two")
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache-one"))
    ddp_train.main(["--out", str(tmp_path / "one"), "--batch_size", "4", *common])
    return log, max_difference(tmp_path / "two" / "final.safetensors", tmp_path / "one" / "final.safetensors")


def ranks(out):
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_torchrun_two_processes_equal_one_process_with_the_designer_term(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    # Reference batches of 3: 6 batches for 16 pairs, 3 per process, the last one short (padded, then dropped).
    common = ["--data", str(data), "--designer", "--precompute_ref", "--max_steps", "4",
              "--option", "precompute_ref_batch_size=3"]
    log, difference = two_processes_vs_one(tmp_path, monkeypatch, common)
    print(f"DDP (2 x 2) vs one process (1 x 4), designer term on: max weight difference {difference:.2e}")
    assert difference < 1e-5
    assert "upo_value_head.linear.weight" in load_file(tmp_path / "two" / "final.safetensors")
    first, second = ranks(tmp_path / "two")
    assert first["world_size"] == second["world_size"] == 2
    # Scored once: rank 0 ran the reward function, rank 1 read its cache. The reference ran on both, each on its
    # share of the batches (3 of 6), and both hold all 16 values, in order: those of one process.
    assert first["reward_calls"] > 0 and second["reward_calls"] == 0
    assert first["reference_forwards"] == second["reference_forwards"] == 3
    assert log.count("Reference log-probs of 16 pairs: computed") == 1
    assert "over 2 processes" in log
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    assert one["reference_forwards"] == 6
    assert first["ref_chosen_logps"] == second["ref_chosen_logps"]
    assert first["ref_chosen_logps"] == pytest.approx(one["ref_chosen_logps"], abs=1e-5)


def test_kto_two_processes_equal_one_process(tmp_path, monkeypatch):
    """KTO's reference point is averaged over both processes' batches (as TRL does), so two processes of 2 rows
    train exactly as one process of 4; with each process's own mean they would not."""
    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    common = ["--data", str(data), "--precompute_ref", "--max_steps", "8", "--option", 'loss_type=["kto"]',
              "--option", "beta=1.0"]
    _, difference = two_processes_vs_one(tmp_path, monkeypatch, common)
    print(f"KTO, DDP (2 x 2) vs one process (1 x 4): max weight difference {difference:.2e}")
    assert difference < 1e-5  # 2.3e-3 with each process's own reference point


def test_accelerate_launch_with_the_shipped_config_runs_the_cli(tmp_path, tokenizer, capsys):
    """`accelerate launch --config_file examples/accelerate/ddp.yaml -m upo.cli train ...`, DPO on pairs of
    unequal lengths, equals the same CLI in one process with twice the batch; checkpoints are marked complete."""
    from upo.cli import main

    model_dir = tmp_path / "model"
    tiny_model().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(16))
    flags = ["--model_name_or_path", str(model_dir), "--dataset", str(data), "--max_steps", "4", "--learning_rate",
             "1e-3", "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", "--max_length", "64",
             "--seed", "0", "--save_strategy", "steps", "--save_steps", "2"]
    log = launch([BIN / "accelerate", "launch", "--config_file", "examples/accelerate/ddp.yaml", "-m", "upo.cli",
                  "train", "--output_dir", str(tmp_path / "two"), "--per_device_train_batch_size", "2", *flags],
                 tmp_path, tmp_path / "cache-two")
    # upo's log and the command's answer once, not once per process
    assert log.count("Loaded 16 standard pairs from") == 1, log[-3000:]
    assert log.count("Saved the trained model to") == 1, log[-3000:]
    assert main(["train", "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "4", *flags]) == 0

    difference = max_difference(tmp_path / "two" / "model.safetensors", tmp_path / "one" / "model.safetensors")
    print(f"accelerate launch (2 x 2) vs one process (1 x 4), DPO: max weight difference {difference:.2e}")
    assert difference < 1e-5
    for step in (2, 4):
        checkpoint = tmp_path / "two" / f"checkpoint-{step}"
        assert (checkpoint / "upo_checkpoint.json").is_file()
        assert {f.name for f in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}


def test_shipped_accelerate_configs_name_their_engines():
    configs = (ROOT / "examples" / "accelerate").glob("*.yaml")
    engines = {path.name: yaml.safe_load(path.read_text()) for path in configs}
    assert {name: config["distributed_type"] for name, config in engines.items()} == {
        "ddp.yaml": "MULTI_GPU", "fsdp2.yaml": "FSDP", "multi_node.yaml": "MULTI_GPU",
        "deepspeed_zero1.yaml": "DEEPSPEED", "deepspeed_zero2.yaml": "DEEPSPEED", "deepspeed_zero3.yaml": "DEEPSPEED"}
    assert [engines[f"deepspeed_zero{k}.yaml"]["deepspeed_config"]["zero_stage"] for k in (1, 2, 3)] == [1, 2, 3]
    assert engines["fsdp2.yaml"]["fsdp_config"]["fsdp_version"] == 2
    multi_node = engines.pop("multi_node.yaml")
    assert multi_node["num_machines"] == 2 and multi_node["rdzv_backend"] == "c10d"
    assert all(config["num_processes"] == 2 and config["mixed_precision"] == "no" for config in engines.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without GPUs: with one, accelerate sets up the "
                    "process group the launcher asked for, and there is nothing to refuse")
def test_processes_that_would_train_alone_are_refused(tmp_path, monkeypatch):
    """torchrun on a machine without GPUs, without use_cpu: transformers would run N independent trainings."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = UPOConfig(output_dir=str(tmp_path), report_to="none")
    assert args.world_size == 1  # what accelerate decided: no GPU, so no process group
    with pytest.raises(ConfigError, match=r"Launched as 2 processes .*set use_cpu=True \(--use_cpu true\)"):
        check_launch(args)


@pytest.mark.parametrize("version", ["1", None])
def test_fsdp1_is_refused_in_one_line_before_anything_loads(tmp_path, monkeypatch, tokenizer, version):
    """FSDP1, named or accelerate's default (a config without fsdp_version): the value head would train at the
    policy's learning rate and be clipped by each process's own norm. Refused with the fix, before the model loads
    (a model name that does not exist is never reached), on GPUs and on CPU alike."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.delenv("FSDP_VERSION", raising=False)
    if version:
        monkeypatch.setenv("FSDP_VERSION", version)
    args = UPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ConfigError, match=r"^The accelerate config asks for FSDP1 \(fsdp_version: 1, accelerate's "
                       r"default .* set fsdp_version: 2 in the config's fsdp_config \(examples/accelerate/fsdp2.yaml\)"
                       r"\.$") as refused:
        UPOTrainer(str(tmp_path / "no-such-model"), args=args, train_dataset=Dataset.from_list(make_pairs(4)),
                   processing_class=tokenizer)
    assert "\n" not in str(refused.value)


def test_missing_deepspeed_is_one_line_with_the_fix(tmp_path, monkeypatch):
    """Without this, accelerate raises an ImportError from inside the Trainer (or, on GPUs, from transformers'
    process setup). Where deepspeed is installed, it is hidden from the check."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "deepspeed" else find_spec(name, *a))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(ConfigError, match=r"asks for DeepSpeed ZeRO-3, but the deepspeed package is not installed: pip "
                                          r"install deepspeed .* or shard with FSDP2"):
        UPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)


def test_fsdp2_or_deepspeed_requested_on_cpu_does_not_warn(tmp_path, monkeypatch):
    """upo switches them on where accelerate would fall back to data parallel (enable_sharding_on_cpu)."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    args = UPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_launch(args)
        monkeypatch.delenv("ACCELERATE_USE_FSDP")
        monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
        check_launch(args)


# --- FSDP2: accelerate never enables it on CPU, upo does (upo.training.fsdp); accelerate and the Trainer drive it ---


def test_fsdp2_with_the_shipped_config_equals_one_process(tmp_path, tokenizer):
    """`accelerate launch --config_file examples/accelerate/fsdp2.yaml -m upo.cli train --use_cpu true`: UPO with a
    designer reward, full fine-tuning, the value head and a reference model, all sharded over 2 processes x 2 pairs,
    equals one process of 4 pairs. Checkpoints hold the sharded state for resuming and one consolidated
    model.safetensors; the final model loads with plain from_pretrained."""
    from transformers import AutoModelForCausalLM

    from upo.cli import main

    model_dir = tmp_path / "model"
    tiny_model().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(16))
    flags = ["--model_name_or_path", str(model_dir), "--dataset", str(data), "--max_steps", "4", "--learning_rate",
             "1e-3", "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", "--max_length", "64",
             "--seed", "0", "--save_strategy", "steps", "--save_steps", "2", "--reward_funcs", "length",
             "--alpha", "1"]
    log = launch([BIN / "accelerate", "launch", "--config_file", "examples/accelerate/fsdp2.yaml", "-m", "upo.cli",
                  "train", "--output_dir", str(tmp_path / "two"), "--per_device_train_batch_size", "2", *flags],
                 tmp_path, tmp_path / "cache-two")
    assert "asks for FSDP" not in log
    assert main(["train", "--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", "4", *flags]) == 0

    difference = max(max_difference(tmp_path / "two" / name, tmp_path / "one" / name)
                     for name in ("model.safetensors", "value_head.safetensors"))
    print(f"FSDP2 (2 x 2) vs one process (1 x 4), UPO: max weight difference {difference:.2e}")
    assert difference < 1e-5
    for step in (2, 4):  # only an FSDP run writes pytorch_model_fsdp.bin: the run was sharded
        checkpoint = tmp_path / "two" / f"checkpoint-{step}"
        files = {f.name for f in checkpoint.iterdir()}
        assert {"pytorch_model_fsdp.bin", "model.safetensors", "upo_checkpoint.json"} <= files
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "two")
    trained = load_file(tmp_path / "two" / "model.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in trained.items())
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(trained[name], tiny_model().state_dict()[name])  # it trained


@pytest.mark.slow
def test_fsdp2_resumed_run_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    """Under FSDP2, a run resumed from its step-2 checkpoint (sharded weights, value head and Adam state) ends
    with the weights of the run that was never stopped, and both equal one process; the reference is sharded."""
    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    common = ["--data", str(data), "--designer", "--max_steps", "4", "--save_steps", "2", "--batch_size", "2"]
    fsdp2 = [BIN / "accelerate", "launch", "--config_file", "examples/accelerate/fsdp2.yaml", "tests/ddp_train.py"]
    launch([*fsdp2, "--out", str(tmp_path / "full"), *common], tmp_path, tmp_path / "cache")
    first, _ = ranks(tmp_path / "full")
    assert first["engine"] == "DistributedType.FSDP" and first["sharded"] and first["reference_sharded"]
    # The same run stopped after its step-2 checkpoint, then resumed
    shutil.copytree(tmp_path / "full", tmp_path / "stopped")
    shutil.rmtree(tmp_path / "stopped" / "run" / "checkpoint-4")
    (tmp_path / "stopped" / "final.safetensors").unlink()
    launch([*fsdp2, "--out", str(tmp_path / "stopped"), *common, "--resume"], tmp_path, tmp_path / "cache")
    resumed = max_difference(tmp_path / "stopped" / "final.safetensors", tmp_path / "full" / "final.safetensors")
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache-one"))
    ddp_train.main(["--out", str(tmp_path / "one"), *common[:-2], "--batch_size", "4"])
    one = max_difference(tmp_path / "full" / "final.safetensors", tmp_path / "one" / "final.safetensors")
    print(f"FSDP2 resumed vs uninterrupted: {resumed:.2e}; FSDP2 vs one process: {one:.2e}")
    assert resumed < 1e-6 and one < 1e-5


@pytest.mark.slow
def test_fsdp2_lora_equals_one_process(tmp_path, monkeypatch):
    """LoRA under FSDP2 (frozen base and trainable adapter in the same shards; the reference is the base with the
    adapter off) equals one process."""
    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    common = ["--data", str(data), "--designer", "--lora", "--max_steps", "4", "--option", "learning_rate=0.01"]
    log = launch([BIN / "accelerate", "launch", "--config_file", "examples/accelerate/fsdp2.yaml", "tests/ddp_train.py",
                  "--out", str(tmp_path / "two"), "--batch_size", "2", *common], tmp_path, tmp_path / "cache-two")
    assert "asks for FSDP" not in log
    first, _ = ranks(tmp_path / "two")
    assert first["engine"] == "DistributedType.FSDP" and first["sharded"]
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache-one"))
    ddp_train.main(["--out", str(tmp_path / "one"), "--batch_size", "4", *common])
    difference = max_difference(tmp_path / "two" / "final.safetensors", tmp_path / "one" / "final.safetensors")
    trained = load_file(tmp_path / "two" / "final.safetensors")
    assert any(k.endswith("lora_B.default.weight") and v.abs().max() > 0 for k, v in trained.items())
    print(f"FSDP2 + LoRA (2 x 2) vs one process (1 x 4): max weight difference {difference:.2e}")
    assert difference < 1e-5


def equal_shape_pairs(n=16):
    """equal_length_pairs with prompts of one token length too: every batch has the same shape, however it is drawn,
    so bf16 weights give each pair the same log-probs in any batch (bf16 kernels round by the padded shape)."""
    words = ["snow", "wind", "water", "fire", "ice", "salt", "sand", "soap"]
    return [{**row, "prompt": f"Human: What is {words[i % len(words)]}? Assistant:"}
            for i, row in enumerate(equal_length_pairs(n))]


@pytest.mark.slow
def test_fsdp2_bf16_with_a_precomputed_reference_keeps_the_implicit_rewards_at_zero(tmp_path, monkeypatch, tokenizer):
    """FSDP2 with bf16 computes with the weights cast to bf16 (its MixedPrecisionPolicy, which upo now sets on CPU as
    accelerate does on GPUs: the run was fp32 here). The reference precomputed before sharding is computed as the
    sharded policy will be, so at learning rate 0 every implicit reward is exactly 0 (8e-5 off otherwise). The
    log-probs are bf16's: within u = 2^-8 of fp32's, and not equal to them."""
    from upo.data.tokenization import tokenize_dataset

    rows = equal_shape_pairs()
    pairs = tokenize_dataset(Dataset.from_list(rows), tokenizer, max_length=64)
    assert all(len(set(map(len, pairs[c]))) == 1 for c in ("prompt_ids", "chosen_ids", "rejected_ids"))
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    common = ["--data", str(data), "--precompute_ref", "--max_steps", "4", "--option", "learning_rate=0.0"]
    launch([BIN / "accelerate", "launch", "--config_file", "examples/accelerate/fsdp2.yaml", "tests/ddp_train.py",
            "--out", str(tmp_path / "two"), "--batch_size", "2", *common, "--option", "bf16=true"], tmp_path,
           tmp_path / "cache-two")
    first, second = ranks(tmp_path / "two")
    assert first["engine"] == "DistributedType.FSDP" and first["sharded"]
    logs = [log for log in first["log_history"] if "loss" in log]
    assert len(logs) == 4
    for log in logs:
        assert (log["rewards/chosen"], log["rewards/rejected"], log["rewards/margins"]) == (0.0, 0.0, 0.0), log
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache-one"))
    ddp_train.main(["--out", str(tmp_path / "one"), "--batch_size", "4", *common])
    fp32 = [log for log in json.loads((tmp_path / "one" / "rank0.json").read_text())["log_history"] if "loss" in log]
    assert logs[0]["logps/chosen"] != fp32[0]["logps/chosen"]
    assert logs[0]["logps/chosen"] == pytest.approx(fp32[0]["logps/chosen"], rel=2.0 ** -8)


@pytest.mark.slow
def test_fsdp2_fp16_unscales_once_and_skips_overflows_on_every_process(tmp_path, monkeypatch):
    """FSDP2 with fp16 as on a GPU (tests/training/test_mixed_precision.py's set-up, under the launcher): the sharded
    gradients are unscaled once, then checked and clipped (value head apart) by their norm over both processes.
    accelerate's clip_grad_norm_ used to unscale them a second time ("unscale_() has already been called"). At the
    default scale the designer term's gradients, reduced in fp16 (FSDP2's MixedPrecisionPolicy), overflow: both
    processes skip the same steps (5 here) while the scale falls (to 2048), then train. At scale 256 nothing
    overflows and step 1's grad_norm is fp32's within fp16's unit roundoff (2^-11)."""
    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    common = ["--data", str(data), "--designer", "--option", "max_grad_norm=0.01"]
    fsdp2 = [BIN / "accelerate", "launch", "--config_file", "examples/accelerate/fsdp2.yaml", "tests/ddp_train.py",
             "--batch_size", "2", *common, "--option", "fp16=true"]
    launch([*fsdp2, "--out", str(tmp_path / "default"), "--max_steps", "8", "--fp16_scale", str(2.0 ** 16)], tmp_path,
           tmp_path / "c1")
    scalers = []
    for rank in ranks(tmp_path / "default"):
        assert rank["engine"] == "DistributedType.FSDP" and rank["sharded"]
        logs = [log for log in rank["log_history"] if "loss" in log]
        scalers.append([(log["amp/skipped_steps"], log["amp/loss_scale"]) for log in logs])
        skipped = logs[-1]["amp/skipped_steps"]
        assert 1 <= skipped < 8 and logs[-1]["amp/loss_scale"] == 2.0 ** (16 - skipped)
        assert math.isfinite(logs[-1]["grad_norm"])
    assert scalers[0] == scalers[1]
    launch([*fsdp2, "--out", str(tmp_path / "low"), "--max_steps", "1", "--fp16_scale", "256"], tmp_path,
           tmp_path / "c2")
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache-one"))
    ddp_train.main(["--out", str(tmp_path / "one"), "--batch_size", "4", "--max_steps", "1", *common])
    fp16, _ = ranks(tmp_path / "low")
    fp32 = json.loads((tmp_path / "one" / "rank0.json").read_text())
    norms = [[log["grad_norm"] for log in run["log_history"] if "loss" in log] for run in (fp16, fp32)]
    print(f"FSDP2 fp16 grad_norm {norms[0]}; one process fp32 {norms[1]}")
    assert norms[0][0] != norms[1][0] and norms[0][0] == pytest.approx(norms[1][0], rel=2.0 ** -11)


@pytest.mark.slow
def test_fsdp2_saves_a_tied_lm_head_once(tmp_path):
    """A Llama whose LM head is its embedding matrix, under FSDP2: the checkpoint's consolidated model.safetensors
    holds the tied weight once, as save_pretrained writes it (it held lm_head.weight as well), and loads tied."""
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    launch([BIN / "accelerate", "launch", "--config_file", "examples/accelerate/fsdp2.yaml", "tests/ddp_train.py",
            "--out", str(tmp_path / "two"), "--batch_size", "2", "--data", str(data), "--designer", "--tied",
            "--max_steps", "2", "--save_steps", "2"], tmp_path, tmp_path / "cache")
    first, _ = ranks(tmp_path / "two")
    assert first["engine"] == "DistributedType.FSDP" and first["sharded"]
    checkpoint = tmp_path / "two" / "run" / "checkpoint-2"
    saved = load_file(checkpoint / "model.safetensors")
    assert "model.embed_tokens.weight" in saved and "lm_head.weight" not in saved
    loaded = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    assert torch.equal(loaded.model.embed_tokens.weight, load_file(tmp_path / "two" / "final.safetensors")[
        "model.embed_tokens.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_equals_one_process(stage, tmp_path, monkeypatch):
    """`accelerate launch --config_file examples/accelerate/deepspeed_zero{2,3}.yaml` on CPU (upo.training.zero):
    UPO with the value head and a reference model (partitioned under ZeRO-3, as TRL does) equals one process.
    Needs `pip install deepspeed`; its first CPU run compiles DeepSpeed's shared-memory op (minutes, once)."""
    pytest.importorskip("deepspeed")
    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    # DeepSpeed clips all gradients by one norm, the value head's included (upo warns); one process clips the value
    # head on its own: compared without clipping, which also shows the warning goes with it.
    common = ["--data", str(data), "--designer", "--max_steps", "4", "--option", "max_grad_norm=0"]
    log = launch([BIN / "accelerate", "launch", "--config_file", f"examples/accelerate/deepspeed_zero{stage}.yaml",
                  "tests/ddp_train.py", "--out", str(tmp_path / "two"), "--batch_size", "2", *common], tmp_path,
                 tmp_path / "cache-two")
    assert "asks for DEEPSPEED" not in log and "clips every gradient by one global norm" not in log
    first, _ = ranks(tmp_path / "two")
    assert first["engine"] == "DistributedType.DEEPSPEED" and first["reference_sharded"] == (stage == 3)
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache-one"))
    ddp_train.main(["--out", str(tmp_path / "one"), "--batch_size", "4", *common])
    difference = max_difference(tmp_path / "two" / "final.safetensors", tmp_path / "one" / "final.safetensors")
    print(f"DeepSpeed ZeRO-{stage} (2 x 2) vs one process (1 x 4): max weight difference {difference:.2e}")
    # Measured (deepspeed 0.19.8): ZeRO-2 6.0e-8, as DDP; ZeRO-3 1.0e-6, in one element of one tensor (layer 0's
    # mlp.up_proj [6, 43]; every other tensor within 6.4e-8), there from step 1 on. Its gradient cancels to 4.36e-7
    # (the tensor's median |g| is 0.15). ZeRO-3 replaces F.linear by its own autograd function (zero.Init's
    # memory_efficient_linear), whose backward sums the weight gradient in another order: 4.56e-7 there, read with
    # deepspeed.utils.safe_get_full_grad, 2.1e-8 apart, float32 rounding of terms of order 0.1. Adam's first step
    # is lr * g / (|g| + eps), eps 1e-8, whose slope at that g is lr * eps / (|g| + eps)^2 = 0.05: 2.1e-8 becomes
    # 1.0e-6 (1e-3 of a step of lr 1e-3). With SGD instead (optim sgd) both stages are within 7.5e-9 after a step.
    assert difference < 1e-5
    # The logged grad_norm is the policy's (the engine's norm less the value head's; it was the engine's), as one
    # process's gradients give it (max_grad_norm 0: unclipped).
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    logged = [log["grad_norm"] for log in first["log_history"] if "loss" in log]
    print(f"grad_norm, DeepSpeed ZeRO-{stage}: {logged}; the policy's in one process: {one['policy_grad_norms']}")
    assert len(logged) == 4 and logged == pytest.approx(one["policy_grad_norms"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("skip", [False, True])
def test_deepspeed_non_finite_gradient_stops_or_is_skipped(tmp_path, skip):
    """Under DeepSpeed the engine steps inside the backward pass and shows no gradient; its ZeRO optimizer skips a
    step whose gradient norm is not finite, and upo reads that (was_step_applied): the run stops on both processes
    with the message (it went on silently, every step skipped), or with skip_nonfinite_batches counts the batches.
    The weights never move."""
    pytest.importorskip("deepspeed")
    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    command = [BIN / "accelerate", "launch", "--config_file", "examples/accelerate/deepspeed_zero3.yaml",
               "tests/ddp_train.py", "--out", str(tmp_path / "two"), "--batch_size", "2", "--data", str(data),
               "--nan_gradient", "--max_steps", "2", "--option", f"skip_nonfinite_batches={json.dumps(skip)}"]
    env = {**os.environ, "UPO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    output = result.stdout + result.stderr
    if not skip:
        assert result.returncode != 0
        for rank in (0, 1):
            assert (f"Non-finite gradient at step 1 (rank {rank}), found by DeepSpeed, which skipped the update"
                    in output), output[-3000:]
        return
    assert result.returncode == 0, output[-3000:]
    first, _ = ranks(tmp_path / "two")
    assert [log.get("nonfinite/skipped_batches") for log in first["log_history"] if "loss" in log] == [1, 2]
    trained = load_file(tmp_path / "two" / "final.safetensors")
    assert all(torch.equal(trained[k], v) for k, v in tiny_model().state_dict().items())


@pytest.mark.slow
def test_two_nodes_equal_one_process(tmp_path, monkeypatch):
    """`torchrun --nnodes 2 --nproc_per_node 1` twice, with a c10d rendezvous on localhost: two "machines" of one
    process each (as a SLURM job of 2 nodes would start them, docs/SCALING.md) train as one process of 4 pairs."""
    import socket

    data = write_jsonl(tmp_path / "pairs.jsonl", equal_length_pairs())
    common = ["--data", str(data), "--designer", "--precompute_ref", "--max_steps", "4"]
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "UPO_CACHE": str(tmp_path / "cache-two"), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    node = [BIN / "torchrun", "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
            f"127.0.0.1:{port}", "--rdzv_id", "upo-test"]
    nodes = [subprocess.Popen([*node, "--node_rank", str(rank), "tests/ddp_train.py", "--out", str(tmp_path / "two"),
                               "--batch_size", "2", *common],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    logs = [node.communicate(timeout=LAUNCH_TIMEOUT)[0] for node in nodes]
    (tmp_path / "launch.log").write_text("\n".join(logs))
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    first, second = ranks(tmp_path / "two")
    assert first["world_size"] == second["world_size"] == 2
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache-one"))
    ddp_train.main(["--out", str(tmp_path / "one"), "--batch_size", "4", *common])
    difference = max_difference(tmp_path / "two" / "final.safetensors", tmp_path / "one" / "final.safetensors")
    print(f"2 nodes x 1 process (2 x 2) vs one process (1 x 4): max weight difference {difference:.2e}")
    assert difference < 1e-5


@pytest.mark.slow
def test_designer_term_with_unequal_lengths_equals_one_process(tmp_path, monkeypatch):
    """Per-token averages divide by the whole step's tokens over both ranks (upo.losses.step_token_counts)."""
    data = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(16))
    common = ["--data", str(data), "--designer", "--max_steps", "4"]
    _, difference = two_processes_vs_one(tmp_path, monkeypatch, common)
    print(f"unequal lengths, designer term on: max weight difference {difference:.2e}")
    assert difference < 1e-5


# --- The reference log-prob cache ------------------------------------------------------------------------


@pytest.fixture
def tokenized(tokenizer, pairs):
    return tokenize_dataset(pairs, tokenizer, max_length=64)


def count_forwards(model):
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_reference_cache_is_read_instead_of_running_the_reference(tokenized, tmp_path):
    collator = PreferenceCollator(0)
    model = tiny_model()
    calls = count_forwards(model)
    first = add_reference_logps(tokenized, model, collator, 4, cache_dir=tmp_path)
    assert len(calls) == 4  # 16 pairs in batches of 4
    second = add_reference_logps(tokenized, model, collator, 4, cache_dir=tmp_path)
    assert len(calls) == 4
    assert second["ref_chosen_logps"][:] == first["ref_chosen_logps"][:]
    assert second["ref_rejected_logps"][:] == first["ref_rejected_logps"][:]
    # no temporary file left behind; the (empty) lock file stays, as flock locks do
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".lock", ".safetensors"]


def test_two_processes_on_the_same_data_compute_the_reference_once(tokenized, tmp_path):
    """Two frontier workers, say: the second waits on the cache's lock, then reads what the first wrote."""
    import threading

    collator = PreferenceCollator(0)
    model = tiny_model()
    calls = count_forwards(model)
    results = []
    threads = [threading.Thread(target=lambda: results.append(add_reference_logps(tokenized, model, collator, 4,
                                                                                  cache_dir=tmp_path)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 4  # one computation (16 pairs in batches of 4), not two
    assert results[0]["ref_chosen_logps"][:] == results[1]["ref_chosen_logps"][:]


def test_reference_cache_key_sees_weights_data_batching_and_the_adapter(tokenized, tmp_path):
    from peft import LoraConfig, get_peft_model

    collator = PreferenceCollator(0)
    model = tiny_model()
    add_reference_logps(tokenized, model, collator, 4, cache_dir=tmp_path)
    changed = tiny_model(seed=1)
    add_reference_logps(tokenized, changed, collator, 4, cache_dir=tmp_path)
    add_reference_logps(tokenized.select(range(8)), model, collator, 4, cache_dir=tmp_path)
    add_reference_logps(tokenized, model, collator, 8, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 4
    # With the adapter off, the reference is the base model: the adapter's (random) weights do not count.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    a = get_peft_model(tiny_model(), lora)
    base = tiny_model()
    torch.manual_seed(5)  # other adapter weights on the same base
    b = get_peft_model(base, lora)
    assert reference_fingerprint(a, disable_adapter=True) == reference_fingerprint(b, disable_adapter=True)
    assert reference_fingerprint(a) != reference_fingerprint(b)
    assert reference_fingerprint(a, disable_adapter=True) != reference_fingerprint(a)


def test_corrupt_reference_cache_file_is_recomputed_with_a_warning(tokenized, tmp_path):
    collator = PreferenceCollator(0)
    model = tiny_model()
    first = add_reference_logps(tokenized, model, collator, 4, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:40])  # what a half-written file would look like without the rename
    with pytest.warns(UserWarning, match="ignoring corrupt reference log-prob cache file"):
        again = add_reference_logps(tokenized, model, collator, 4, cache_dir=tmp_path)
    assert again["ref_chosen_logps"][:] == first["ref_chosen_logps"][:]
    assert load_file(path)["chosen"].shape == (16,)  # rewritten whole


def test_unwritable_reference_cache_only_warns(tokenized, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not write reference log-prob cache file"):
        out = add_reference_logps(tokenized, tiny_model(), PreferenceCollator(0), 4, cache_dir=blocker / "reference")
    assert len(out["ref_chosen_logps"]) == 16
