"""The one exception type that entry scripts turn into a one-line message and a non-zero exit."""


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
