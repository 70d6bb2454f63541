"""metrics.csv records and the curves drawn from them (video_tag/curves.py), without training."""
import math

import pytest

from video_tag import curves

VALID_KEYS = ["hit_at_one", "gap", "loss", "num_videos"]


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_rows_are_merged_per_epoch_and_written_whole(tmp_path):
    history = curves.History(str(tmp_path), VALID_KEYS)
    assert read_lines(tmp_path / "metrics.csv") == [",".join(curves.TRAIN_COLUMNS + [f"valid_{k}" for k in VALID_KEYS])]
    history.add(0, train_loss=2.5, learning_rate=0.01, samples_per_s=100.0, train_seconds=1.25)
    history.add(1, train_loss=float("nan"), learning_rate=0.001)
    history.add(0, valid_gap=0.1 + 0.2, valid_num_videos=10)  # validation of epoch 0, after epoch 1's row
    lines = read_lines(tmp_path / "metrics.csv")
    assert len(lines) == 3
    first = lines[1].split(",")
    assert first[:5] == ["0", "2.5", "0.01", "100.0", "1.25"]
    assert first[6:] == ["", "0.30000000000000004", "", "10"]  # every digit; empty where none
    assert lines[2].split(",")[:3] == ["1", "nan", "0.001"] and lines[2].endswith(",,,,")
    with pytest.raises(ValueError, match="valid_top1_acc"):
        history.add(1, valid_top1_acc=0.5)

    rows = curves.read_csv(str(tmp_path / "metrics.csv"))
    assert sorted(rows) == [0, 1]
    assert rows[0]["valid_num_videos"] == 10 and rows[0]["valid_gap"] == 0.1 + 0.2 and rows[0]["valid_loss"] is None
    assert math.isnan(rows[1]["train_loss"])
    assert rows[0]["elapsed_seconds"] >= rows[1]["elapsed_seconds"] >= 0  # a row's time is its last write


def test_a_resumed_run_keeps_the_rows_up_to_its_epoch_and_continues_the_clock(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "epoch,train_loss,elapsed_seconds,valid_gap\n0,3.0,100.0,0.5\n1,2.0,200.0,\n2,1.0,300.0,0.7\n"
        "3,0.5,40", encoding="utf-8")  # the last line torn by a kill
    history = curves.History(str(tmp_path), VALID_KEYS, resumed_epoch=1)
    assert [line.split(",")[0] for line in read_lines(tmp_path / "metrics.csv")] == ["epoch", "0", "1"]
    history.add(2, train_loss=1.5)
    rows = curves.read_csv(str(tmp_path / "metrics.csv"))
    assert sorted(rows) == [0, 1, 2] and rows[2]["train_loss"] == 1.5 and rows[2]["valid_gap"] is None
    assert 200.0 <= rows[2]["elapsed_seconds"] < 260.0  # 200 s before the stop, then this run's seconds

    curves.History(str(tmp_path), VALID_KEYS)  # a fresh run: no rows
    assert read_lines(tmp_path / "metrics.csv")[1:] == []


def test_figure_draws_every_recorded_value_against_its_epoch():
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    rows = {0: {"train_loss": 3.0, "learning_rate": 0.01, "samples_per_s": 50.0, "valid_gap": None},
            1: {"train_loss": 2.0, "learning_rate": 0.001, "samples_per_s": 60.0, "valid_gap": 0.4,
                "valid_loss": 2.5, "valid_num_videos": 10},
            2: {"train_loss": 1.0, "learning_rate": 0.001, "samples_per_s": 55.0, "valid_gap": 0.6,
                "valid_loss": 2.2, "valid_num_videos": 10}}
    fig = curves.figure(rows, "run")
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
             for ax in fig.axes for line in ax.lines}
    assert lines == {"train_loss": ([0, 1, 2], [3.0, 2.0, 1.0]), "valid_loss": ([1, 2], [2.5, 2.2]),
                     "valid_gap": ([1, 2], [0.4, 0.6]), "learning_rate": ([0, 1, 2], [0.01, 0.001, 0.001]),
                     "samples_per_s": ([0, 1, 2], [50.0, 60.0, 55.0])}
    assert fig.axes[2].get_yscale() == "log"


def test_render_writes_a_png_atomically(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    import cv2
    curves.render(str(tmp_path / "curves.png"), {0: {"train_loss": 1.0}, 1: {"train_loss": 0.5}})
    assert cv2.imread(str(tmp_path / "curves.png")).shape == (700, 1000, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
