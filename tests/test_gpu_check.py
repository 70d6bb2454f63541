"""bench/gpu_check.sh on a machine without a GPU Paddle can use: it says so at once and exits 0."""
import os
import subprocess
import sys
import time

import paddle
import pytest

from conftest import ROOT


@pytest.mark.skipif(paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0,
                    reason="a GPU is here: the script would run its full check (minutes)")
def test_gpu_check_says_there_is_no_gpu_and_stops():
    start = time.time()
    result = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_check.sh")],
                            env={**os.environ, "PYTHON": sys.executable}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: "), result.stdout
    # "no GPU: Paddle 3.3.1 is a CPU build ...", or "a GPU is here (name) but Paddle 3.3.1 is a CPU build ..."
    assert f"Paddle {paddle.__version__} is a CPU build" in lines[0] and lines[0].endswith(": nothing measured.")
    assert time.time() - start < 60
