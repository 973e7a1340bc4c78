#!/bin/bash
# Everything configs/device_kit.yaml carries, built from nothing on a fresh machine, then packed into work/kit:
# run it here (CPU) before the first device call of a session that was lent an accelerator, so the device time
# goes to training. About 15 minutes on 2 cores (TeX renders ~700 crops/s here); all outputs are git-ignored.
#   bash scripts/prepare_device_kit.sh            # then: device run, carry ["work/kit"], "bash scripts/device_train.sh"
# Each step is skipped when its output is already there (delete it to rebuild), except renderings made by
# another version of the renderer and the crop writer (src/susik/data/render.py, crops.py, crop_augment.py).
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
SUSIK=${SUSIK:-.venv/bin/susik}
SHARED=${SHARED:-../shared/data}
PAGES=${PAGES:-200}  # training pages per seed: ~4.6 formulas a page, the kit takes 700 crops of each set
log() { echo "[$(date +%H:%M:%S)] $*"; }
# What rendered crops look like is the code that typesets and augments them: outputs made by another version of it
# are rebuilt.
RENDERER=$(cat src/susik/data/render.py src/susik/data/crops.py src/susik/data/crop_augment.py | sha256sum | cut -c1-16)
fresh() { [ -s "$1" ] && [ "$(cat "$(dirname "$1")/.renderer" 2>/dev/null)" = "$RENDERER" ]; }
stamp() { echo "$RENDERER" > "$1/.renderer"; }

if ! fresh work/recdata/summary.json; then  # synthetic, synthetic_val, crohme, im2latex(_recombined), hme100k
  log "recognizer crops (scripts/prepare_recognizer_data.py)"
  "$PYTHON" scripts/prepare_recognizer_data.py --out work/recdata --data "$SHARED" --workers "$(nproc)"
  stamp work/recdata
fi

pages() {  # seed -> work/det/train_s$seed: training pages as the detector's generate_train makes them
  local seed=$1
  fresh "work/det/train_s$seed/manifest.jsonl" && return
  log "training pages, seed $seed"
  rm -rf "work/det/train_s$seed" work/recdata/pages_train_all work/recdata/reach_s5
  "$PYTHON" scripts/training_pages.py --seed "$seed" --n "$PAGES" --out "work/det/train_s$seed" --shared "$SHARED" \
    --workers "$(nproc)"
  stamp "work/det/train_s$seed"
}
pages 7
pages 5
if [ ! -s work/recdata/pages_train_all/manifest.jsonl ]; then
  log "page crops (seed 7) and crops running on past an end (seed 5)"
  "$SUSIK" release crops work/det/train_s7/manifest.jsonl --out work/recdata/pages_train_all --height 64 --margin 0.12
  "$SUSIK" release crops work/det/train_s5/manifest.jsonl --out work/recdata/reach_s5 --height 64 --margin 0.12 \
    --run-on 0.9
fi

if [ ! -s work/kit_bank.npz ]; then
  log "glyph bank (susik data handwriting --save-bank)"
  "$SUSIK" data handwriting --glyphs "$SHARED/crohme/train.jsonl" --formulas "$SHARED/corpus/im2latex_train_formulas.txt" \
    --exclude "$SHARED/crohme/val2013.jsonl" --count 200 --out work/recdata/bank_sample/manifest.jsonl --seed 20 \
    --save-bank work/kit_bank.npz
fi

log "pack (scripts/device_kit.py)"
"$PYTHON" scripts/device_kit.py pack --spec configs/device_kit.yaml --out work/kit
du -sh work/kit
