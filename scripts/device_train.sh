#!/bin/bash
# Recognizer training on a lent accelerator (configs/recognizer_device.yaml), run there in the repo root with
# work/kit carried (scripts/device_kit.py pack, here). Every step must fit the device command's 10 minutes:
# install the carried wheels, unpack the crop sets, write composed handwriting on every core, train for at most
# TRAIN_SECONDS (checkpoints every epoch_steps, so a stopped run still leaves its best), and leave the best
# weights in float16 under $OUT (files come back at most 16 MiB each).
#   device run: carry ["work/kit"], command "bash scripts/device_train.sh", timeout_s 600
set -uo pipefail
OUT=${OUT:-work/device_out}
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-configs/recognizer_device.yaml}
SETS=${SETS:-16}              # parallel writers of composed handwriting
PER_SET=${PER_SET:-10000}     # crops each (~4 ms a crop on one core)
TRAIN_SECONDS=${TRAIN_SECONDS:-390}
mkdir -p "$OUT" work/devdata
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/device_train.log"; }
log "start: $(nproc) cores; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no GPU')"
if [ -z "${SKIP_WHEELS:-}" ]; then  # SKIP_WHEELS=1: a local smoke run with .venv (the wheels are for Python 3.12)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    work/kit/wheels/*.whl || { log "wheel install failed"; exit 1; }
fi
export PYTHONPATH="$PWD/src:/tmp/site" OMP_NUM_THREADS=1
susik() { "$PYTHON" -c "from susik.cli import app; app()" "$@"; }
"$PYTHON" scripts/device_kit.py unpack --kit work/kit --out work/devdata | tee -a "$OUT/device_train.log"
log "writing $SETS x $PER_SET composed handwriting crops"
for i in $(seq -w 0 $((SETS - 1))); do
  susik data handwriting --bank work/kit/bank.npz --glyphs work/kit/labels/glyph_labels.jsonl \
    --formulas work/kit/labels/formulas_0.txt --exclude work/kit/labels/exclude_0.jsonl \
    --count "$PER_SET" --seed "1$i" --out "work/devdata/hw_$i/manifest.jsonl" > "work/devdata/hw_$i.log" 2>&1 &
done
wait
tail -n 1 work/devdata/hw_*.log | grep -h wrote | tee -a "$OUT/device_train.log"
"$PYTHON" scripts/device_kit.py join --out work/devdata/hw/manifest.jsonl work/devdata/hw_*/manifest.jsonl \
  | tee -a "$OUT/device_train.log"
log "training (at most $TRAIN_SECONDS s)"
unset OMP_NUM_THREADS
# `timeout` runs a program, not the shell function above, so the CLI is spelled out here
PYTHONUNBUFFERED=1 timeout "$TRAIN_SECONDS" "$PYTHON" -c "from susik.cli import app; app()" train recognizer \
  --config "$CONFIG" --out work/devrun --init work/kit/init.pt 2>&1 | grep -v "^  want" | tee -a "$OUT/device_train.log"
log "training ended (rc ${PIPESTATUS[0]})"
for name in best last; do
  if [ -f "work/devrun/$name.pt" ]; then
    "$PYTHON" scripts/device_kit.py half "work/devrun/$name.pt" "$OUT/${name}_fp16.pt" && log "wrote $OUT/${name}_fp16.pt"
  fi
done
