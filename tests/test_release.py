"""video_tag/release.py: where a release file named by its documented path is found (README, "Get the
release model"; docs/reference.md, "Where the release files are found")."""
import os

import pytest

from video_tag import release, weights
from video_tag.errors import UserError


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("x\n")
    return str(path)


@pytest.mark.parametrize("path, name", [
    ("./weights/tsn.pdparams", "weights/tsn.pdparams"),
    ("weights/attention_lstm", "weights/attention_lstm.pdparams"),  # weight paths without the suffix
    ("./label_3396.txt", "label_3396.txt"),
    ("weights/../weights/tsn.pdparams", "weights/tsn.pdparams"),
    ("./weights/my_tsn.pdparams", None),
    ("data/checkpoints/AttentionLSTM_best", None),
    ("/abs/weights/tsn.pdparams", None),
    ("label_3396", None),
    ("", None),
])
def test_release_name(path, name):
    assert release.release_name(path) == name


@pytest.fixture
def places(tmp_path, monkeypatch):
    """(cwd, home, root): an empty working folder, $VIDEOTAG_HOME and the project root, all empty."""
    cwd, home, root = (tmp_path / n for n in ("cwd", "home", "root"))
    for folder in (cwd, home, root):
        folder.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("VIDEOTAG_HOME", str(home))
    monkeypatch.setattr(release, "project_root", lambda: str(root))
    return cwd, home, root


def test_search_order_current_folder_then_home_then_project_root(places):
    cwd, home, root = places
    assert release.find("./weights/tsn.pdparams") == "./weights/tsn.pdparams"  # nowhere: as given
    in_root = touch(root / "weights" / "tsn.pdparams")
    assert release.find("./weights/tsn.pdparams") == in_root
    in_home = touch(home / "weights" / "tsn.pdparams")
    assert release.find("./weights/tsn.pdparams") == in_home
    touch(cwd / "weights" / "tsn.pdparams")
    assert release.find("./weights/tsn.pdparams") == "./weights/tsn.pdparams"


def test_labels_and_suffixless_weights_in_home(places):
    _, home, _ = places
    labels = touch(home / "label_3396.txt")
    lstm = touch(home / "weights" / "attention_lstm.pdparams")
    assert release.find("./label_3396.txt") == labels
    assert release.find("weights/attention_lstm") == lstm
    assert weights.resolve("./weights/attention_lstm") == lstm


def test_other_paths_are_never_looked_up_elsewhere(places):
    _, home, _ = places
    touch(home / "weights" / "my_tsn.pdparams")
    touch(home / "my_labels.txt")
    assert release.find("./weights/my_tsn.pdparams") == "./weights/my_tsn.pdparams"
    assert release.find("my_labels.txt") == "my_labels.txt"
    with pytest.raises(UserError, match=r"weight file not found: \./weights/my_tsn\.pdparams \(nor [^,]*\)$"):
        weights.resolve("./weights/my_tsn.pdparams")


def test_a_missing_release_file_names_the_places_looked_at(places):
    _, home, root = places
    with pytest.raises(UserError) as e:
        weights.resolve("./weights/tsn.pdparams")
    assert str(e.value) == (f"weight file not found: ./weights/tsn.pdparams (nor ./weights/tsn.pdparams.pdparams, "
                            f"nor in {home} or {root}): {weights.RELEASE_HINT}")


def test_home_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("VIDEOTAG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert release.home() == os.path.join(str(tmp_path), ".cache", "videotag")
    monkeypatch.setenv("VIDEOTAG_HOME", "")  # empty: unset
    assert release.home() == os.path.join(str(tmp_path), ".cache", "videotag")


def test_project_root_is_above_the_package():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert release.project_root() == root
