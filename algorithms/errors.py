"""The project's own errors: bad input a user can fix, each kind its own class.

The mains turn a `PogoError` into one line (`error: ...`, naming the key, file or column) and
exit; any other exception is a bug and keeps its traceback. The kinds that are bad values also
subclass `ValueError`, so code that asks for a value error still sees them.
"""


class PogoError(Exception):
    """Bad input the user can fix: reported as one line, before any training where possible."""


class ConfigError(PogoError, ValueError):
    """A bad config file, key or value; the message names the key."""


class DatasetError(PogoError, ValueError):
    """A dataset's file or contents cannot serve the run; the message names the file and key."""


class BehaviorPolicyError(DatasetError):
    """A behaviour actor (or its replay buffer) cannot be loaded or made."""


class EnvError(PogoError, ValueError):
    """An env name that names no known D4RL dataset or gymnasium environment."""


class CheckpointError(PogoError):
    """A run directory or checkpoint that cannot be resumed (or would be overwritten)."""


class WandbError(PogoError):
    """Weights & Biases is asked for but cannot start (no account, no network)."""


class NonFiniteError(PogoError, RuntimeError):
    """A loss or parameter became NaN/Inf; the message names the step, actor and loss."""


class LaunchError(PogoError):
    """A sweep cannot be launched (no sbatch, bad launcher options, an unreadable sweep)."""
