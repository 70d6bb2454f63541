"""Where the VideoTag release files are found when a path to one of them does not exist where given.

The release files have fixed names, relative to a folder laid out as the project root:

    weights/tsn.pdparams            TSN ResNet101
    weights/attention_lstm.pdparams AttentionLSTM
    label_3396.txt                  class names

A path naming one of them (``./weights/tsn.pdparams``, ``weights/attention_lstm`` without the suffix,
``label_3396.txt``: the scripts' defaults and the README's commands) is looked up, the first that has the
file wins, in:

    1. the current folder (the path as given: what every earlier version did);
    2. ``$VIDEOTAG_HOME`` when set, else ``~/.cache/videotag``;
    3. the project root the package runs from (a clone, or ``pip install -e``), where ``./run fetch``
       puts them.

Any other path is returned as given.
"""
import os

RELEASE_FILES = ("weights/tsn.pdparams", "weights/attention_lstm.pdparams", "label_3396.txt")
SUFFIX = ".pdparams"


def home():
    """The user's videotag folder: ``$VIDEOTAG_HOME``, else ``~/.cache/videotag``."""
    return os.environ.get("VIDEOTAG_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "videotag")


def project_root():
    """The folder above the ``video_tag`` package (the clone it runs from, or site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def release_name(path):
    """The release file ``path`` names (``"weights/tsn.pdparams"``, ...), or None. Accepts ``./`` and a
    weight path without its ``.pdparams`` suffix; an absolute path or any other name is no release name."""
    if not path or os.path.isabs(path):
        return None
    name = os.path.normpath(path).replace(os.sep, "/")
    for candidate in (name, name + SUFFIX):
        if candidate in RELEASE_FILES:
            return candidate
    return None


def find(path):
    """``path`` itself when it exists (or is no release name); else the release file it names in the
    first of ``home()`` and ``project_root()`` that holds it; else ``path`` unchanged (its reader then
    says it is missing)."""
    name = release_name(path)
    if name is None or os.path.exists(path) or os.path.exists(path + SUFFIX):
        return path
    for folder in (home(), project_root()):
        candidate = os.path.join(folder, *name.split("/"))
        if os.path.isfile(candidate):
            return candidate
    return path
