"""The one exception type stages raise for bad input.

Its message is a single line that names the problem (file, key or row). The CLI prints it
as ``error: <message>`` and exits non-zero; nothing else in the package prints tracebacks
for expected failures.
"""


class PipelineError(Exception):
    """Bad input or an unreachable resource; the message is shown to the user as is."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split("\n")))


class ParamsError(PipelineError):
    """params.yaml is invalid (unknown key, wrong type, out of range)."""

    exit_code = 2


def first_line(exc: BaseException, width: int = 200) -> str:
    """The first line of an exception's message, cut to ``width`` characters (for one-line errors)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:width]
