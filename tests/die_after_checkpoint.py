"""Run by test_trainer: ``train.py`` that SIGKILLs its own process right after writing checkpoint NAME
(e.g. ``AttentionLSTM_step17``), as a machine failure would, at a known point. Also under
``paddle.distributed.launch`` (rank 0 alone writes checkpoints, so rank 0 dies).

    python tests/die_after_checkpoint.py NAME [train.py arguments ...]
"""
import os
import runpy
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from video_tag import trainer  # noqa: E402

if __name__ == "__main__":
    name = sys.argv.pop(1)
    save = trainer._save_checkpoint

    def save_and_die(model, optimizer, prefix, record):
        save(model, optimizer, prefix, record)
        if os.path.basename(prefix) == name:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer._save_checkpoint = save_and_die
    sys.argv[0] = os.path.join(ROOT, "train.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
