"""The one exception type for a user's mistake.

`ConfigError` means the input is wrong (a config value, a folder, a missing data set)
and its message says which value, what is valid and what to do; the launchers print it
on one line without a traceback. Any other exception is a bug and keeps its traceback.
It is a `ValueError`, so code that catches those keeps working.
"""


class ConfigError(ValueError):
  """A bad config value, a wrong folder or missing input: fix the command, not the code."""


class MissingInputError(ConfigError, FileNotFoundError):
  """A folder, checkpoint or data set that the config names is not there."""
