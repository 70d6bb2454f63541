"""The versions this environment runs, as the "tested" row of README's "Versions tested" table, which
tests/test_versions.py compares with the table on every run of the suite (CI's included); ``./run test``
prints the row first, ready to paste.

    python -m video_tag.versions
    | tested | Debian 12 (Linux x86_64) | 3.11.7 | 3.3.1 CPU (`paddlepaddle`) | 5.1.0 (`opencv-python-headless`) | 2.4.6 |

Every cell is compared exactly: Python to the patch release, Paddle, OpenCV and numpy to their release;
the OS as distribution and major version (``/etc/os-release``: Debian's point releases are not in it),
kernel and machine. The CPU model is not a column: CI runners differ in it from run to run.
"""
import importlib.metadata
import platform

COLUMNS = ("OS", "Python", "Paddle", "OpenCV", "numpy")
PADDLE_DISTRIBUTIONS = ("paddlepaddle", "paddlepaddle-gpu")
OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                        "opencv-contrib-python")


def os_release(path="/etc/os-release"):
    """The ``KEY=value`` pairs of an os-release file (quotes removed); {} without one (macOS, Windows)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip().strip("\"'") for key, value in pairs}


def os_name(release=None, system=None, machine=None):
    """``Debian 12 (Linux x86_64)``: the first word of os-release's NAME and its VERSION_ID (else its
    PRETTY_NAME, else ``platform.platform``), then the kernel and the machine."""
    release = os_release() if release is None else release
    system, machine = system or platform.system(), machine or platform.machine()
    if release.get("NAME") and release.get("VERSION_ID"):
        name = f"{release['NAME'].split()[0]} {release['VERSION_ID']}"
    else:
        name = release.get("PRETTY_NAME") or platform.platform(terse=True)
    return f"{name} ({system} {machine})"


def installed(distributions):
    """The first of ``distributions`` (pip names) that is installed, or None."""
    for name in distributions:
        try:
            importlib.metadata.version(name)
            return name
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def paddle_version():
    """``3.3.1 CPU (`paddlepaddle`)`` or ``3.3.1 GPU, CUDA 12.6 (`paddlepaddle-gpu`)``; imports Paddle."""
    try:
        import paddle
    except ImportError:
        return "not installed"
    device = f"GPU, CUDA {paddle.version.cuda()}" if paddle.device.is_compiled_with_cuda() else "CPU"
    return f"{paddle.__version__} {device} (`{installed(PADDLE_DISTRIBUTIONS) or 'not from pip'}`)"


def opencv_version():
    """``5.1.0 (`opencv-python-headless`)``: cv2's release and the pip package that installed it."""
    import cv2
    return f"{cv2.__version__} (`{installed(OPENCV_DISTRIBUTIONS) or 'not from pip'}`)"


def environment():
    """{column: this environment's value} in ``COLUMNS`` order."""
    import numpy
    return {"OS": os_name(), "Python": platform.python_version(), "Paddle": paddle_version(),
            "OpenCV": opencv_version(), "numpy": numpy.__version__}


def row(values):
    """The table row of ``values`` ({column: value}), ``COLUMNS`` in order."""
    return "| tested | " + " | ".join(values[column] for column in COLUMNS) + " |"


if __name__ == "__main__":
    from video_tag import cli
    cli.setup_process()  # first: Paddle's own messages kept off the console
    print(row(environment()))
