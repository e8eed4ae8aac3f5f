"""The fast paths give the plain path's log-probs: shared-prompt and padding-free batches, chunked LM head."""

import pytest
import torch
from helpers import tiny_model

from upo.data.collator import PreferenceCollator
from upo.data.tokenization import tokenize_pair
from upo.logps import forward_logps

PAIRS = [
    ("Human: What is rain? Assistant:", " Water that falls from clouds.", " No."),
    ("Human: Why is the sky blue? Please explain it in simple words. Assistant:", " Air scatters blue light more.",
     " I will not help with that, figure it out yourself."),
    ("Human: Hi Assistant:", " Hello! How can I help you today?", " Go away."),
]


def batch(tokenizer, layout):
    rows = [tokenize_pair(tokenizer, *pair) for pair in PAIRS]
    return PreferenceCollator(tokenizer.pad_token_id, layout=layout)(rows)


def run(model, tokenizer, layout, chunk_size=None):
    model.zero_grad()
    out = forward_logps(model, batch(tokenizer, layout), chunk_size)
    (out.logps.sum() + out.prompt_hidden.sum()).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return out, grads


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("layout", ["shared_prompt", "padding_free"])
def test_layout_gives_the_log_probs_of_separate_sequences(arch, layout, tokenizer):
    model = tiny_model(arch)
    plain, plain_grads = run(model, tokenizer, "separate")
    fast, fast_grads = run(model, tokenizer, layout)
    torch.testing.assert_close(fast.logps, plain.logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.lengths, plain.lengths)
    torch.testing.assert_close(fast.prompt_hidden, plain.prompt_hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast_grads, plain_grads, atol=1e-5, rtol=1e-4)


def test_separate_layout_matches_a_plain_forward(tokenizer):
    """The reference path itself, against log_softmax over the full logits of each sequence alone."""
    model = tiny_model("llama")
    out = forward_logps(model, batch(tokenizer, "separate"))
    expected = []
    for side in (1, 2):
        for prompt, *responses in PAIRS:
            ids = tokenize_pair(tokenizer, prompt, *responses)
            p, r = ids["prompt_ids"], ids["chosen_ids" if side == 1 else "rejected_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([p + r])).logits[0]
            logp = logits[len(p) - 1 : -1].log_softmax(-1).gather(-1, torch.tensor(r)[:, None]).sum()
            expected.append(logp)
    torch.testing.assert_close(out.logps.detach(), torch.stack(expected), atol=1e-5, rtol=1e-6)


def test_chunked_head_equals_one_go(tokenizer):
    model = tiny_model("llama")
    whole, whole_grads = run(model, tokenizer, "shared_prompt")
    chunked, chunked_grads = run(model, tokenizer, "shared_prompt", chunk_size=7)
    torch.testing.assert_close(chunked.logps, whole.logps, atol=1e-6, rtol=0)
    torch.testing.assert_close(chunked_grads, whole_grads, atol=1e-5, rtol=1e-4)


def test_shared_prompt_mask_hides_chosen_from_rejected(tokenizer):
    b = batch(tokenizer, "shared_prompt")
    ids = tokenize_pair(tokenizer, *PAIRS[0])
    p, c = len(ids["prompt_ids"]), len(ids["chosen_ids"])
    mask = b["attention_mask"][0, 0]
    assert mask[p + c, :p].all() and not mask[p + c, p : p + c].any()  # first rejected token: prompt only
    assert b["position_ids"][0, p + c] == p  # positions restart after the prompt


def test_logit_transform_follows_the_model_forward(tokenizer):
    """Models that scale or cap their logits after the head (Gemma 2's softcap here) keep their log-probs."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                           final_logit_softcapping=2.0, pad_token_id=0))
    out = forward_logps(model, batch(tokenizer, "separate"))
    prompt, chosen, _ = PAIRS[0]
    ids = tokenize_pair(tokenizer, prompt, chosen, "x")
    p, r = ids["prompt_ids"], ids["chosen_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([p + r])).logits[0]
    expected = logits[len(p) - 1 : -1].log_softmax(-1).gather(-1, torch.tensor(r)[:, None]).sum()
    torch.testing.assert_close(out.logps[0].detach(), expected, atol=1e-5, rtol=1e-6)
