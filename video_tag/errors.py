"""The exception types that entry scripts turn into a one-line message and a non-zero exit, and the one
line that says why an input failed (``failed.list``, logs)."""


class UserError(Exception):
    """Bad input from the user (a file, a list line, a flag, a config key).

    The message is a single line that names the file (and line) at fault; entry scripts print it as
    ``error: <message>`` and exit with status 2, never with a traceback.
    """


class RunError(Exception):
    """A run that started could not finish (a full disk, a failed process, an unshared folder).

    Entry scripts print ``error: <message>`` and exit with status 3; what was written before is complete
    (every file is written under a temporary name, then renamed), and re-running resumes.
    """


def failure_reason(error):
    """Why one input (a video, a feature file) failed, in one line: the message of a built-in
    ``ValueError`` or ``OSError`` (what the readers raise on purpose: "cannot open video ..."), else the
    exception's type and message, e.g. ``"cv2.error: ..."``, ``"PIL.UnidentifiedImageError: ..."``,
    ``"MemoryError: ..."`` (the module is named unless the type is a built-in one)."""
    message = " ".join(str(error).split())
    builtin = type(error).__module__ == "builtins"
    if builtin and isinstance(error, (ValueError, OSError)) and message:
        return message
    name = type(error).__name__ if builtin else f"{type(error).__module__}.{type(error).__name__}"
    return f"{name}: {message}" if message else name
