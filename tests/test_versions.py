"""video_tag/versions.py and README's "Versions tested" table: its "tested" row is this environment's, on
every run of the suite (CI's included); when it is not, the test prints the row to paste."""
import os

import pytest

from conftest import ROOT
from video_tag import versions

TABLE = """Versions tested, checked by every CI run.

| | OS | Python | Paddle | OpenCV | numpy |
| --- | --- | --- | --- | --- | --- |
| tested | Debian 12 (Linux x86_64) | 3.11.7 | 3.3.1 CPU (`paddlepaddle`) | 5.1.0 (`opencv-python-headless`) | 2.4.6 |
| not tested | macOS, Windows, ARM | 3.9, 3.10 | any GPU build | | |
"""


def cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_tested_row(text):
    """{column: value} of the "tested" row of the table whose header names ``versions.COLUMNS``; None
    when there is no such table."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and cells(line)[1:] == list(versions.COLUMNS):
            for below in lines[i + 2:]:
                if not below.startswith("|"):
                    break
                if cells(below)[0] == "tested":
                    return dict(zip(versions.COLUMNS, cells(below)[1:]))
    return None


def test_tested_row_is_read_by_column():
    assert table_tested_row(TABLE) == {"OS": "Debian 12 (Linux x86_64)", "Python": "3.11.7",
                                 "Paddle": "3.3.1 CPU (`paddlepaddle`)", "OpenCV": "5.1.0 (`opencv-python-headless`)",
                                 "numpy": "2.4.6"}
    assert table_tested_row(TABLE.replace("| OS |", "| System |")) is None  # another table
    assert table_tested_row(TABLE.replace("| tested |", "| passed |")) is None


def test_row_is_what_the_table_reads():
    values = table_tested_row(TABLE)
    assert table_tested_row(TABLE.replace(versions.row(values), versions.row({**values, "numpy": "2.5.0"})))["numpy"] == "2.5.0"
    assert versions.row(values) in TABLE  # the printed row is the README's line, character for character


def test_readme_versions_are_this_environments():
    """README's "tested" row names the OS, Python, Paddle, OpenCV and numpy this suite runs with."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = table_tested_row(f.read())
    assert readme is not None, f"README.md has no \"Versions tested\" table with columns {versions.COLUMNS}"
    here = versions.environment()
    differ = [f"{column}: README {readme[column]!r}, here {here[column]!r}" for column in versions.COLUMNS
              if readme[column] != here[column]]
    message = ("README.md's \"Versions tested\" row is not this environment (" + "; ".join(differ)
               + "): if the suite passes here, paste this row into README.md:\n" + versions.row(here))
    if differ and os.environ.get("CI") != "true" and not os.environ.get("VIDEOTAG_CHECK_VERSIONS"):
        pytest.skip(message)  # a contributor's machine; CI's run (.ci/run) is the one that keeps the table true
    assert not differ, message


@pytest.mark.parametrize("release, expected", [
    ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
     "Debian 12 (Linux x86_64)"),
    ('NAME="Ubuntu"\nVERSION_ID="24.04"\n', "Ubuntu 24.04 (Linux x86_64)"),
    ('PRETTY_NAME="Debian GNU/Linux trixie/sid"\nNAME="Debian GNU/Linux"\n', "Debian GNU/Linux trixie/sid (Linux x86_64)"),
])
def test_os_name_from_os_release(tmp_path, release, expected):
    (tmp_path / "os-release").write_text("# a comment\n" + release, encoding="utf-8")
    assert versions.os_name(versions.os_release(str(tmp_path / "os-release")), "Linux", "x86_64") == expected


def test_os_name_without_os_release(tmp_path):
    assert versions.os_release(str(tmp_path / "none")) == {}
    assert versions.os_name({}, "Darwin", "arm64").endswith(" (Darwin arm64)")


def test_environment_names_the_installed_packages():
    import platform
    import cv2
    import numpy
    import paddle
    here = versions.environment()
    assert list(here) == list(versions.COLUMNS)
    assert here["Python"] == platform.python_version() and here["numpy"] == numpy.__version__
    assert here["Paddle"].startswith(paddle.__version__ + " ") and here["OpenCV"].startswith(cv2.__version__ + " (`")
    assert versions.installed(["no-such-package-here", "numpy"]) == "numpy"
    assert versions.installed(["no-such-package-here"]) is None
