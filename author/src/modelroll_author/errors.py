"""The two ways the command fails (no I/O). Each carries one line for the user."""

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and the check did not pass: a metric, a load, an upload
EXIT_BAD_INPUT = 2  # the command cannot run: arguments, files, columns (argparse uses 2 too)


class AuthorError(Exception):
    """One line for the user and the exit code it means."""

    exit_code = EXIT_FAILED


class InputError(AuthorError):
    """What the user gave cannot be used: a missing column, an unknown metric, a bad file."""

    exit_code = EXIT_BAD_INPUT


class CheckFailed(AuthorError):
    """The work was done and its result is refused: the server cannot load the artifact, an
    upload failed."""

    exit_code = EXIT_FAILED
