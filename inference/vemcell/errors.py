"""One exception type for every input or usage problem the user can fix."""


class VemcellError(Exception):
    """A problem with the user's input, told in one sentence; the CLI exits nonzero on it."""

    exit_code = 2
