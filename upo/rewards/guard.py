"""User code (reward functions, scorers) runs under a guard: whatever escapes it stops the run with a message.

A reward function is the user's code, called by upo. Without a guard, `sys.exit(0)` inside it ends the whole
run with exit status 0 and no model (a script or `upo frontier` takes that for success), and a function that
never returns hangs the run. `call_user_function` turns what escapes the call into one of:

* `UserFunctionRaised` (an Exception): the function raised, or called `sys.exit` / raised `SystemExit`;
  `reason` says which, e.g. "called sys.exit(0)" or "ZeroDivisionError: division by zero";
* `UserFunctionTimeout` (an Exception): it did not return within `timeout` seconds;
* `Interrupted` (a KeyboardInterrupt, as Ctrl-C must stay): it was interrupted, by Ctrl-C or by raising
  KeyboardInterrupt itself.

The caller (`upo.rewards.scoring`) names the function and the rows in the final message.

With a `timeout`, the call runs in a daemon thread and the caller waits for it at most that long. Python cannot
stop a thread: on a timeout the call is abandoned (it ends with the process, which stops with the error), so a
function that holds on to a resource (a GPU, a server connection) may keep it until then. Without a timeout the
call runs in the caller's thread.

The options that set the timeout (`reward_timeout` of `upo train` and `upo eval`, `scorer_timeout` of a function
scorer) default to `DEFAULT_TIMEOUT`: a user's function that never returns stops the run after an hour instead of
holding a rented machine forever; `None` (null) means no limit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from upo.errors import Interrupted, Terminated, interruption

# Seconds one call of a user's function may take by default: far beyond a call that works (one call scores a batch
# of at most a few hundred responses), short of a night lost to a call that never returns.
DEFAULT_TIMEOUT = 3600.0


class UserFunctionRaised(Exception):
    """The user's function raised or exited; `reason` says how, `original` is what it raised."""

    def __init__(self, reason: str, original: BaseException):
        super().__init__(reason)
        self.reason = reason
        self.original = original


class UserFunctionTimeout(Exception):
    """The user's function did not return within its time limit."""


def _outcome_of(call: Callable[[], Any]) -> tuple[str, Any]:
    """('ok', value), or ('raised' | 'exited' | 'interrupted', the exception); never raises."""
    try:
        return "ok", call()
    except KeyboardInterrupt as error:
        return "interrupted", error
    except SystemExit as error:
        return "exited", error
    except BaseException as error:  # GeneratorExit and the like included: nothing escapes the user's code
        return "raised", error


def call_user_function(func: Callable, kwargs: dict[str, Any], timeout: float | None = None) -> Any:
    """`func(**kwargs)` under the guard (see the module docstring). The keyword arguments come as one dict, so
    that a dataset column may be called anything (even `timeout`)."""
    if timeout is None:
        kind, value = _outcome_of(lambda: func(**kwargs))
    else:
        result: list = []
        thread = threading.Thread(target=lambda: result.append(_outcome_of(lambda: func(**kwargs))),
                                  name=f"upo-user-function-{getattr(func, '__name__', 'call')}", daemon=True)
        thread.start()
        try:
            thread.join(timeout)
        except KeyboardInterrupt as error:  # Ctrl-C (or SIGTERM) while waiting: the call is abandoned, as on a timeout
            raise interruption("interrupted (Ctrl-C)" if not isinstance(error, Terminated) else "stopped", error) \
                from error
        if not result:
            raise UserFunctionTimeout(f"did not return within {timeout:g} s")
        kind, value = result[0]
    if kind == "ok":
        return value
    if kind == "interrupted":
        if isinstance(value, Terminated):  # the process was asked to stop while the function ran
            raise interruption("stopped", value) from value
        raise Interrupted("interrupted (Ctrl-C, or KeyboardInterrupt raised inside it)") from value
    if kind == "exited":
        code = value.code
        reason = f"called sys.exit({code!r})" if code is not None else "called sys.exit()"
        raise UserFunctionRaised(reason + ": a reward function must return its scores, not end the program", value)
    raise UserFunctionRaised(f"{type(value).__name__}: {value}", value)
