"""Errors that tell the user what is wrong and how to fix it, with no deep traceback needed."""


class UPOError(Exception):
    """Base class of every error this library raises on purpose."""


class DataError(UPOError, ValueError):
    """A data file or row is malformed: the message names the file or row, the column and the fix."""


class RewardFunctionError(UPOError, ValueError):
    """A designer reward function raised or returned something that is not a finite number or None."""


class ConfigError(UPOError, ValueError):
    """Options that are unknown, out of range or contradict each other."""


class ModelResolutionError(UPOError, RuntimeError):
    """A model name could not be resolved to a local folder."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or a KeyboardInterrupt from user code), with what was running named. A KeyboardInterrupt, not an
    Exception, so that `except Exception` anywhere does not swallow it; `upo`'s commands exit with status 130."""


class Terminated(Interrupted):
    """The process was asked to stop by a signal: SIGTERM (`kill`, a job scheduler, a launcher stopping its workers)
    or SIGHUP (its terminal closed). `upo`'s commands turn the signal into this exception (upo.cli), so it is handled
    as Ctrl-C is: what was running is named, nothing is left half-written, a frontier stops its training process and
    releases its locks. Exit status 128 + the signal's number (143 for SIGTERM)."""

    def __init__(self, message: str = "", signal_number: int = 15):
        super().__init__(message)
        self.signal_number = signal_number


def interruption(message: str, cause: BaseException) -> Interrupted:
    """An `Interrupted` saying `message`, of the same kind as `cause` (a `Terminated` stays one, with its signal)."""
    if isinstance(cause, Terminated):
        return Terminated(message, cause.signal_number)
    return Interrupted(message)
