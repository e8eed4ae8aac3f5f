"""Library errors at upo's boundaries: where upo hands the user's input to a library, a refusal becomes one line.

A library that refuses an input says so in its own words, from deep inside, without naming the option or file the
user wrote: `TypeError: LlamaForCausalLM.__init__() got an unexpected keyword argument 'foo'` for a key of
`model_init_kwargs`, `NoMatchingPeftModuleError` for `lora_target_modules`, `DatasetGenerationError: An error occurred
while generating the dataset` for a broken line in a dataset folder, `ImportError` for an optimizer's package,
`ValueError` for a scheduler's missing argument. upo's failure boundary (upo.failures) rightly calls such a
traceback a bug, because nothing said which input caused it.

Each call that hands the user's input to a library runs inside `refused_by_library(what, fix)`: the library's
refusal becomes a `LibraryRefused` (a `UPOError`, one line) that names the option or file (`what`), quotes the
library's message (`library_message`: with its cause when the message says only that something failed) and says
the fix. A `UPOError` passes unchanged, and so does any exception type the boundary does not list: a bug stays a
bug. The boundaries:

* `upo.models.loading`, `from_pretrained` of a model, tokenizer or reward model: the model, the keys of
  `model_init_kwargs`, the files of its folder;
* `upo.data.loading`, `datasets.load_dataset`: the dataset and split; in a local folder the file and line, or the
  two files whose columns differ;
* `upo.training.model_setup`, peft's `get_peft_model`: `lora_target_modules`, and the modules the model has;
* `upo.trainer`, the Trainer's `create_optimizer` and `create_scheduler`: `optim`, `optim_args`,
  `optim_target_modules`; `lr_scheduler_type`, `lr_scheduler_kwargs`.

What can be known before anything loads is checked earlier still (upo.preflight: packages, the Hub, the scheduler).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from upo.errors import UPOError

# What a library raises when it refuses its input (not OSError: upo.failures explains it with its path already).
REFUSALS = (ValueError, TypeError, ImportError, KeyError, NotImplementedError)


class LibraryRefused(UPOError):
    """A library refused the user's input at one of upo's boundaries; the message names the option or file, quotes the
    library and says the fix."""


def library_message(error: BaseException, limit: int = 300) -> str:
    """`error`'s message in one line (at most `limit` characters), with its cause's when it says only that something
    failed, as datasets' `DatasetGenerationError` does."""
    text = " ".join(str(error).split())
    cause = error.__cause__ or error.__context__
    if cause is not None and (not text or "error occurred" in text.lower()):
        text = f"{type(cause).__name__}: {' '.join(str(cause).split())}"
    elif not text:
        text = type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def refused_by_library(what: str, fix: str | Callable[[], str], errors: tuple = REFUSALS):
    """Around one call into a library with the user's input (see the module docstring): an exception of `errors`
    becomes `LibraryRefused("{what}: {library's message}. {fix}")`; `fix` may be a function, called only then."""
    try:
        yield
    except UPOError:
        raise
    except errors as error:
        advice = fix() if callable(fix) else fix
        raise LibraryRefused(f"{what}: {library_message(error).rstrip('.')}. {advice}") from error
