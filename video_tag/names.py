"""File names from the real world in text outputs: names that are not UTF-8, or that hold a TAB or a newline.

On Linux a file name is bytes; Python gives a name that is not UTF-8 (e.g. GBK, from a zip made on
Windows) with its undecodable bytes as lone surrogates (``os.fsdecode``), which UTF-8 text cannot hold.
Two forms, both valid UTF-8, both leaving a UTF-8 name without TAB, CR or newline as it is (nearly every
name; backslashes of Windows paths included):

    shown(name)       for JSON fields, logs and the console: each undecodable byte as the four characters
                      ``\\xNN`` (JSON escapes TAB and newline itself)
    text_path(name)   for one field of a line-based, TAB-separated list (``features.list``, ``manifest.tsv``,
                      ``failed.list``, the records index): as ``shown``, and TAB, CR and newline as ``\\t``,
                      ``\\r``, ``\\n``, so that a row never breaks. A name for people and for comparing rows,
                      not for opening the file: a backslash is not escaped, so two names can be written alike
                      (a real TAB, and a backslash then ``t``): ``feature_store`` refuses the second of a run
"""
import os
import re

_UNSAFE = re.compile("[\t\r\n\udc80-\udcff]")


def shown(name):
    """``name`` (a str from the OS, or from a UTF-8 list) as valid UTF-8 text: undecodable bytes as ``\\xNN``."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to (e.g. from JSON)
        raw = name.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def text_path(path):
    """``path`` as one field of a UTF-8 list: ``shown(path)`` with TAB, CR and newline as ``\\t``, ``\\r``, ``\\n``."""
    if _UNSAFE.search(path) is None:
        return path
    return shown(path).replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


def text_paths(paths):
    """``[text_path(p) for p in paths]``, from one scan of them all when none needs escaping (nearly every
    list: millions of videos)."""
    joined = "\0".join(paths)  # no path holds a NUL
    if "\t" in joined or "\r" in joined or "\n" in joined or not joined.isascii() and _UNSAFE.search(joined):
        return [text_path(p) for p in paths]
    return list(paths)
