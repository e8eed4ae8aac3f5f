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
