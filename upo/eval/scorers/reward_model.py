"""Preference scorer `reward_model:PATH_OR_ID`: a sequence-classification reward model's single logit on prompt +
reply, batched on its device (`--scorer_batch_size`)."""

from __future__ import annotations

from upo.errors import ConfigError
from upo.eval.scorers import PreferenceScorer
from upo.models import load_sequence_classifier, load_tokenizer, resolve_model_path


class RewardModelScorer(PreferenceScorer):
    """A reward model (`AutoModelForSequenceClassification` with one logit) on prompt + reply, batched on its device.

    A conversational prompt and its reply go through the reward model's chat template (as TRL's `RewardTrainer`
    trains them); a text prompt is followed by the reply as text. Inputs longer than `max_length` tokens are cut
    at the end. Scored at the last real token whatever the pad ids (`last_token_rewards`)."""

    kind = "reward_model"
    usage = "reward_model:PATH_OR_ID"

    @classmethod
    def from_options(cls, argument, options, *, device, dtype, trust_remote_code):
        return cls(argument, batch_size=options.scorer_batch_size, device=device, dtype=dtype,
                   trust_remote_code=trust_remote_code)

    @classmethod
    def check_options(cls, argument, options) -> None:
        resolve_model_path(argument)  # a folder, a Hub ID or a known name; loaded when it scores

    def __init__(self, name_or_path: str, batch_size: int, device: str | None = None, dtype=None,
                 max_length: int = 1024, trust_remote_code: bool = False):
        import torch

        self.spec = f"reward_model:{name_or_path}"
        self.batch_size, self.max_length = batch_size, max_length
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:  # the checkpoint's own dtype on an accelerator; float32 on a CPU (bf16 is slow there)
            dtype = "auto" if device.type != "cpu" else torch.float32
        self.model = load_sequence_classifier(name_or_path, dtype=dtype, trust_remote_code=trust_remote_code)
        if self.model.config.num_labels != 1:
            raise ConfigError(f"--preference_scorer {self.spec}: the model has {self.model.config.num_labels} "
                              "labels; a reward model has one (AutoModelForSequenceClassification, num_labels=1).")
        self.model.to(device).eval()
        self.tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:  # transformers refuses a batch without one (upo pools by the mask)
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.padding_side = "right"

    def describe(self) -> str:
        return f"reward model {self.spec.partition(':')[2]}"

    def texts(self, prompts: list, replies: list[str]) -> list[str]:
        out = []
        for prompt, reply in zip(prompts, replies):
            if isinstance(prompt, list) and self.tokenizer.chat_template:
                out.append(self.tokenizer.apply_chat_template(
                    [*prompt, {"role": "assistant", "content": reply}], tokenize=False))
            elif isinstance(prompt, list):
                out.append("\n".join(m["content"] for m in prompt) + "\n" + reply)
            else:
                out.append(prompt + ("" if prompt[-1:].isspace() or reply[:1].isspace() else " ") + reply)
        return out

    def score_replies(self, prompts, replies, rows):
        import torch

        texts = self.texts(prompts, replies)
        # A chat template already holds the special tokens (a second BOS would shift the score); plain text gets them.
        templated = [isinstance(p, list) and bool(self.tokenizer.chat_template) for p in prompts]
        encoded = [self.tokenizer(text, add_special_tokens=not t, truncation=True, max_length=self.max_length)
                   for text, t in zip(texts, templated)]
        device = next(self.model.parameters()).device
        scores = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                chunk = [{"input_ids": e["input_ids"]} for e in encoded[start:start + self.batch_size]]
                batch = self.tokenizer.pad(chunk, return_tensors="pt")
                scores += last_token_rewards(self.model, {k: v.to(device) for k, v in batch.items()}).cpu().tolist()
        return scores


def last_token_rewards(model, batch: dict):
    """A reward model's logit at each sequence's last real token, found by the attention mask. Shape: (B,) float32.

    transformers pools a decoder's sequence classifier at the last token that is not the *config's* pad id: where the
    tokenizer pads with another id, a shorter reply in a batch is scored at a padding position, and where the
    config's pad id is the end-of-text token a template ends with, that token is skipped even alone. So the head's
    logits at every position (`score`, as decoder classifiers name it) are taken and read at the mask's last 1. A
    classifier without such a head (an encoder pooling its first token) keeps its own pooling, which the mask guides.
    """
    import torch

    head = getattr(model, "score", None)
    per_token = []
    hook = head.register_forward_hook(lambda m, i, out: per_token.append(out)) if isinstance(
        head, torch.nn.Module) else None
    try:
        pooled = model(**batch).logits
    finally:
        if hook is not None:
            hook.remove()
    if not per_token or per_token[-1].dim() != 3:  # no per-position head: the model's own pooling
        return pooled[:, 0].float()
    mask = batch["attention_mask"]
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)
    return per_token[-1][torch.arange(len(last), device=last.device), last, 0].float()
