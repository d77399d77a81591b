"""A small error hierarchy: user errors carry an exit code and print as one line, no traceback."""

# Named exit codes (Celery uses EX_UNAVAILABLE for a broker it cannot reach).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69


class RagfleetError(Exception):
    """An expected failure the user can act on. Printed as one line."""

    exit_code = EXIT_FAILURE


class UsageError(RagfleetError):
    """The user asked for something that does not exist or cannot be done as asked."""

    exit_code = EXIT_USAGE


class ModelUnavailable(UsageError):
    """A model is unknown, or its GGUF file is missing or broken."""


class BrokerUnavailable(RagfleetError):
    """Redis cannot be reached."""

    exit_code = EXIT_UNAVAILABLE
