"""Run by test_trainer, under ``paddle.distributed.launch`` or alone: train with ``fix_random_seed``, then
dump this rank's final parameters and validation metrics.

    python -m paddle.distributed.launch --nproc_per_node 2 tests/dist_harness.py CONFIG SAVE_DIR OUT_DIR
    python tests/dist_harness.py CONFIG SAVE_DIR OUT_DIR          # the same in one process
"""
import json
import os
import sys

import numpy as np
import paddle.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from video_tag import trainer  # noqa: E402
from video_tag.config import load_config  # noqa: E402

if __name__ == "__main__":
    config, save_dir, out_dir = sys.argv[1:4]
    captured = {}
    original = trainer.build_model

    def build_and_keep(name, cfg):
        captured["model"] = original(name, cfg)
        return captured["model"]

    trainer.build_model = build_and_keep
    metrics = trainer.train("AttentionLSTM", load_config(config), save_dir, fix_random_seed=True, use_gpu=False)
    rank = dist.get_rank()
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"),
             **{k: v.numpy() for k, v in captured["model"].state_dict().items()})
    with open(os.path.join(out_dir, f"valid{rank}.json"), "w") as f:
        json.dump({"world": dist.get_world_size(), **metrics}, f)
