#!/usr/bin/env bash
# The GPU figures of videotag in one run, under 8 minutes on one GPU. Installs nothing: a CUDA build of
# Paddle and a visible GPU are there, or the script says which is missing and stops (exit 0).
#
#     bash bench/gpu_check.sh            # PYTHON=/path/to/python to choose the interpreter
#
# Prints, each with the ratio that matters:
#   1. extraction (tsn_extractor.py, ResNet101 in Paddle Inference), fp32 and fp16: frames/s of the whole
#      command from start to exit against the model alone (bench_extract.py), and fp16 against fp32;
#   2. AttentionLSTM training (train.py, full size, batch 128, random features of 300 steps on disk):
#      samples/s of epochs 1-2 (epoch 0 warms up) in fp32 and with --amp, and --amp against fp32;
#   3. prediction: predict.py from start to exit (batch 64), against the model alone at batch 64; and
#      the model alone at batch 1 and 64 in dygraph and through Paddle Inference (bench_engine.py).
# A step that fails or runs out of time (timeout: exit 124) says so and the next one runs; all steps
# together get GPU_CHECK_SECONDS (450). GPU_CHECK_ON_CPU=1 runs the same steps on CPU at small sizes: a
# check of this script, not figures.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
BUDGET=${GPU_CHECK_SECONDS:-450}  # every step's time limit is cut to what is left of this
say() { printf '%s\n' "$*"; }
elapsed() { echo $(( $(date +%s) - START )); }
failed() {  # $1: what failed, $2: its exit status, $3: its output
    if [ "$2" -eq 124 ]; then say "$1: ran out of time (bench/gpu_check.sh gives all steps ${BUDGET} s)"
    else say "$1 failed (exit $2):"; printf '%s\n' "$3" | tail -5; fi
}
limit() {  # seconds a step may take: at most $1, and what is left of the budget
    local left=$(( BUDGET - $(elapsed) ))
    [ "$left" -ge 1 ] || left=1  # (timeout 0 would mean no limit)
    if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}

# --- Is there a GPU Paddle can use? -----------------------------------------------------------------
GPU_NAMES=""
if command -v nvidia-smi >/dev/null 2>&1; then
    GPU_NAMES=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | paste -sd ',' -)
fi
PROBE=$("$PYTHON" - "$GPU_NAMES" 2>/dev/null <<'EOF'
import sys
names = sys.argv[1]
try:
    import paddle
except Exception as e:  # noqa: BLE001 - any failure to import means: nothing to measure with
    print(f"NO Paddle cannot be imported by {sys.executable} ({type(e).__name__}: {e})")
    sys.exit()
version = paddle.__version__
if not paddle.is_compiled_with_cuda():
    where = f"a GPU is here ({names}) but " if names else "no GPU: "
    print(f"NO {where}Paddle {version} is a CPU build (paddlepaddle, not paddlepaddle-gpu)")
elif paddle.device.cuda.device_count() < 1:
    print(f"NO no GPU: Paddle {version} is a CUDA build but sees no CUDA device")
else:
    name = paddle.device.cuda.get_device_name(0)
    print(f"YES {name}; Paddle {version}, CUDA {paddle.version.cuda()}, cuDNN {paddle.version.cudnn()}")
EOF
)
[ -n "$PROBE" ] || PROBE="NO Paddle cannot be run by $PYTHON"
if [ "${GPU_CHECK_ON_CPU:-0}" = "1" ]; then
    say "gpu_check: GPU_CHECK_ON_CPU=1: the steps on CPU at small sizes (a check of this script, not figures)"
    say "           (probe said: ${PROBE#* })"
    GPU=False; VIDEOS=1; MODEL_SECONDS=2; PRECISIONS="fp32"; FEATURES=64; EPOCHS=3; BATCHES="1 8"; REPEATS=1
    BATCH=32
else
    case "$PROBE" in
        YES*) ;;
        *) say "gpu_check: ${PROBE#NO }: nothing measured."; exit 0 ;;
    esac
    say "gpu_check: ${PROBE#YES }; $(nproc) CPU core(s)"
    GPU=True; VIDEOS=8; MODEL_SECONDS=10; PRECISIONS="fp32 fp16"; FEATURES=2048; EPOCHS=3; BATCHES="1 64"
    REPEATS=5; BATCH=128
fi
USE_GPU_FLAG=$([ "$GPU" = True ] && echo "--use_gpu" || true)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
export TMPDIR=$WORK  # the steps' own temporary files (bench_extract.py keeps its) go when the script ends

# --- 1. Extraction -------------------------------------------------------------------------------
say ""
say "== 1. extraction (tsn_extractor.py against the model alone; ResNet101, batch 8, $VIDEOS videos x 300 frames)"
declare -A E2E
for precision in $PRECISIONS; do
    out=$(timeout "$(limit 200)" "$PYTHON" bench/bench_extract.py $USE_GPU_FLAG --precision "$precision" --videos "$VIDEOS" \
          --seconds 10 --model_seconds "$MODEL_SECONDS" --skip_bf16 --skip_contention --skip_videotag \
          --skip_memory 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then
        failed "$precision: bench_extract.py" $rc "$out"
        continue
    fi
    say "$precision:"
    printf '%s\n' "$out" | grep -E "^(model only|end to end|ratio|while extracting)" | sed 's/^/    /'
    E2E[$precision]=$(printf '%s\n' "$out" | sed -n 's/^end to end *: *\([0-9.]*\) frames.*/\1/p')
done
if [ -n "${E2E[fp32]:-}" ] && [ -n "${E2E[fp16]:-}" ]; then
    say "fp16 / fp32 end to end: $("$PYTHON" -c "print(f'{${E2E[fp16]} / ${E2E[fp32]}:.2f}x')")"
fi
say "($(elapsed) s so far)"

# --- 2. AttentionLSTM training ---------------------------------------------------------------------
say ""
say "== 2. AttentionLSTM training (train.py, full size, batch $BATCH, $FEATURES random videos of 300 steps)"
timeout "$(limit 90)" "$PYTHON" - "$WORK" "$FEATURES" <<'EOF' || { say "could not write the features in time"; exit 0; }
import os, sys
import numpy as np
work, count = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
os.makedirs(os.path.join(work, "features"))
lines = []
for i in range(count):
    path = os.path.join(work, "features", f"v{i}.npy")
    np.save(path, rng.standard_normal((300, 2048), dtype=np.float32))
    lines.append(f"{path} {' '.join(str(c) for c in rng.choice(3396, 3, replace=False))}")
with open(os.path.join(work, "train.list"), "w") as f:
    f.write("\n".join(lines) + "\n")
with open(os.path.join(work, "infer.list"), "w") as f:
    f.write("\n".join(line.split()[0] for line in lines) + "\n")
with open(os.path.join(work, "labels.txt"), "w") as f:
    f.write("".join(f"class {i}\n" for i in range(3396)))
EOF
train_rate() {  # samples/s of the epochs after the first, from <save_dir>/metrics.csv
    "$PYTHON" - "$1" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1] + "/metrics.csv")))
rates = [float(r["samples_per_s"]) for r in rows[1:] if r.get("samples_per_s")]
print(f"{statistics.median(rates):.1f}" if rates else "")
EOF
}
TRAIN=(train.py --model_name=AttentionLSTM --config=configs/attention_lstm-single.yaml "--use_gpu=$GPU"
       "--filelist=$WORK/train.list" --epoch "$EPOCHS" --valid_interval=0 -o "TRAIN.batch_size=$BATCH"
       -o TRAIN.keep_checkpoints=1)
declare -A RATE
for mode in fp32 amp; do
    flags=()
    if [ "$mode" = amp ]; then
        if ! "$PYTHON" train.py --help 2>/dev/null | grep -q -- "--amp"; then
            say "amp: not available in this version (train.py has no --amp)"
            continue
        fi
        flags=(--amp)
    fi
    out=$(timeout "$(limit 150)" "$PYTHON" "${TRAIN[@]}" "${flags[@]}" "--save_dir=$WORK/train_$mode" 2>&1)
    rc=$?
    RATE[$mode]=$( [ $rc -eq 0 ] && train_rate "$WORK/train_$mode" )
    if [ -n "${RATE[$mode]}" ]; then
        say "$mode: ${RATE[$mode]} samples/s (median of epochs 1..$((EPOCHS - 1)))"
    else
        failed "$mode: train.py" $rc "$out"
    fi
done
if [ -n "${RATE[fp32]:-}" ] && [ -n "${RATE[amp]:-}" ]; then
    say "--amp / fp32: $("$PYTHON" -c "print(f'{${RATE[amp]} / ${RATE[fp32]}:.2f}x')")"
fi
say "($(elapsed) s so far)"

# --- 3. Prediction ---------------------------------------------------------------------------------
say ""
say "== 3. prediction (predict.py from start to exit, batch ${BATCHES##* }; the model alone: bench_engine.py)"
WEIGHTS="$WORK/train_fp32/AttentionLSTM.pdparams"
if [ ! -f "$WEIGHTS" ]; then
    timeout "$(limit 60)" "$PYTHON" - "$WEIGHTS" 2>/dev/null <<'EOF'
import sys
from video_tag import weights
from video_tag.config import load_config
from video_tag.models import build_model
weights.write_state(weights.model_state(build_model("AttentionLSTM", load_config("configs/attention_lstm.yaml"))),
                    sys.argv[1])
EOF
fi
engine_out=$(timeout "$(limit 120)" "$PYTHON" bench/bench_engine.py $USE_GPU_FLAG --batches $BATCHES --repeats "$REPEATS" \
             --skip_onednn 2>&1)
rc=$?
[ $rc -eq 0 ] || failed "bench_engine.py" $rc "$engine_out"
printf '%s\n' "$engine_out" | grep -E "^batch +[0-9]+ +(dygraph|Paddle)|engine built" | sed 's/^/    /'
begin=$(date +%s.%N)
last=$(echo "$BATCHES" | awk '{print $NF}')
out=$(timeout "$(limit 100)" "$PYTHON" predict.py --model_name=AttentionLSTM --config=configs/attention_lstm-single.yaml \
      "--use_gpu=$GPU" "--weights=$WEIGHTS" "--filelist=$WORK/infer.list" "--label_file=$WORK/labels.txt" \
      "--save_dir=$WORK/predict" "--batch_size=$last" 2>&1 >/dev/null)
rc=$?
end=$(date +%s.%N)
if [ $rc -eq 0 ]; then
    model=$(printf '%s\n' "$engine_out" | sed -n "s/^batch *$last  dygraph *\([0-9.]*\) samples.*/\1/p")
    "$PYTHON" - "$FEATURES" "$begin" "$end" "${model:-0}" "$last" <<'EOF'
import sys
count, begin, end, model, batch = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
rate = count / (end - begin)
ratio = f", ratio {rate / model:.2f} to the model alone at batch {batch} (dygraph)" if model else ""
print(f"predict.py: {rate:.1f} samples/s ({count} videos in {end - begin:.1f} s, start to exit){ratio}")
EOF
else
    failed "predict.py" $rc "$out"
fi
say ""
say "gpu_check: done in $(elapsed) s"
exit 0
