"""File names from the real world in text outputs: names that are not UTF-8, or that hold a TAB or a newline.

On Linux a file name is bytes; Python gives a name that is not UTF-8 (e.g. GBK, from a zip made on
Windows) with its undecodable bytes as lone surrogates (``os.fsdecode``), which UTF-8 text cannot hold.
Two forms, both valid UTF-8:

    shown(name)         for JSON fields, logs and the console: each undecodable byte as the four
                        characters ``\\xNN``; everything else as it is (JSON escapes TAB and newline)
    escape_field(name)  for one field of a TAB-separated or line-based file (failed.list): as ``shown``,
                        and backslash, TAB, newline and carriage return as ``\\\\``, ``\\t``, ``\\n``,
                        ``\\r``; ``unescape_field`` gives back the name exactly, undecodable bytes included
"""
import os
import re

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {v[1]: k for k, v in _ESCAPES.items()}
_UNESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[\\tnr])")


def shown(name):
    """``name`` (a str from the OS, or from a UTF-8 list) as valid UTF-8 text: undecodable bytes as ``\\xNN``."""
    return _bytes(name).decode("utf-8", "backslashreplace")


def escape_field(name):
    """``name`` as one field of a line-based, TAB-separated file: no TAB, newline or carriage return in it,
    valid UTF-8; ``unescape_field`` reverses it."""
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else _ESCAPES.get(c, c)
                   for c in _bytes(name).decode("utf-8", "surrogateescape"))


def unescape_field(field):
    """The name ``escape_field`` was given (undecodable bytes back as lone surrogates, as ``os.fsdecode``)."""
    def one(match):
        code = match.group(1)
        return chr(0xDC00 + int(code[1:], 16)) if code[0] == "x" else _UNESCAPES[code]
    return os.fsdecode(_UNESCAPE.sub(one, field).encode("utf-8", "surrogateescape"))


def _bytes(name):
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to (e.g. from JSON)
        return name.encode("utf-8", "backslashreplace")
