"""The one error type the tools report as a single line.

Every failure caused by what the user gave (a file, a flag, a model, an engine folder, the
machine) is a `SAM2LongError` whose message names what is wrong and what to do; the tools'
`main`s catch this one type, print its message and exit 2. It lives in `engine`, the
bottom layer, so that every layer can raise it without importing upwards.
"""


class SAM2LongError(Exception):
    """A failure the user can act on; the message is complete (what, where, what to do)."""


class ConfigError(SAM2LongError, ValueError):
    """A flag or setting out of range, or flags that do not fit together; the message
    names the flag."""
