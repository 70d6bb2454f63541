"""Console scripts for the entry scripts whose ``main`` is still in the project root (videotag.py,
train.py, eval.py, predict.py): each runs its script as ``python <script>`` does, from any folder.

They need the project's files next to the package, which an install from a clone with ``pip install -e``
(the README's install) has; a wheel install has not, and they say so in one line (exit 2). Moving these
``main`` functions into the package, as for ``videotag-extract``, lifts that limit.
"""
import os
import runpy
import sys

from video_tag.release import project_root


def run_script(name):
    """Run the project's ``name`` (e.g. ``"train.py"``) as ``__main__`` with this process's arguments."""
    path = os.path.join(project_root(), name)
    if not os.path.isfile(path):
        sys.stderr.write(f"error: {os.path.basename(sys.argv[0])} runs {name} of the videotag project, which "
                         f"this installation lacks ({path}): install videotag from a clone with "
                         f"pip install -e <clone>, or run python {name} in the clone\n")
        sys.exit(2)
    runpy.run_path(path, run_name="__main__")


def videotag():
    run_script("videotag.py")


def train():
    run_script("train.py")


def evaluate():
    run_script("eval.py")


def predict():
    run_script("predict.py")
