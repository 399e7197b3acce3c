#!/usr/bin/env bash
# The miniature world's training in one go, fitted to a wall-clock budget: three teachers side by side, then the
# one-step students (SB and PG-SB on every backbone, the two guidance ablations on unet-eps) side by side, then one
# evaluation row per model. Written for one lent GPU (docs/results.md says which run made the committed weights):
#
#     DEVICE=cuda PYTHON=python3 BUNDLE=$OUT bash trainer/train_world.sh
#     SMOKE=1 bash trainer/train_world.sh            (tiny sizes, a few steps: checks the pipeline on any machine)
#     STAGES="4 5" STUDENTS="shapes-unet-eps-pgsb shapes-unet-eps-sb" ... (more time for some students, on the
#     committed teachers; stage 5 then evaluates only the students)
#     TEACHER_INIT=models/base RUNS=runs/world3 ... (stage 2 continues the committed teachers: train_teacher init_from,
#     fresh optimizer, lr TEACHER_LR, default 3e-4, instead of training from scratch at 1e-3 / 5e-4 for the DiT)
#     STUDENT_LR=1e-4 ... (the students' AdamW lr, default 3e-5)
#     SEEDS="0 1 2" ABLATIONS="unet-eps unet-v dit" ... (the claim's grid: every student once per seed, named -s<seed>,
#     and PG-SB's two one-sided ablations on these backbones; default seed 0 and the ablations on unet-eps only)
#     DIT_REGRESS_ONTO=models/base/teacher-unet-eps.pt ... (stage 2's DiT regresses onto that teacher's predictions:
#     train_teacher regress_onto) REGRESSION_WEIGHT=0.25 ... (distill regression_weight: DMD's regression beside VSD)
#
# 1. encode the teachers' training set once ($RUNS/cache, shared by the three runs)
# 2. train unet-eps, unet-v and dit concurrently, each fitted to TEACHER_S seconds (train_teacher time_budget_s)
# 3. evaluate each teacher (25-step DDIM, CFG 4.5 / 2 / 7.5), save its sample grid, export models/base/teacher-*.pt
# 4. distil the students concurrently (SB, PG-SB, the ablations where ABLATIONS says, per seed), each fitted to
#    DISTILL_S seconds (distill time_budget_s, no ONNX export)
# 5. evaluate every teacher and student (trainer.evaluate: alignment, CLIP score, FID, NASA sweep, spread, ms/image)
# BUNDLE (optional): after 3 the teachers, at the end the students named by the glob BUNDLE_STUDENTS (default *pgsb*:
# PG-SB and its ablations, every seed), logs, grids and results, as tar parts of <= 15 MB there (a lent GPU's output
# folder), so that a run cut short still returns what it finished.
# Each process logs to $RUNS/logs/<name>.log. A failed process does not stop the others: later stages skip what
# depends on it, and the script exits 1 at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/usr/bin/python3}
DEVICE=${DEVICE:-cpu}
RUNS=${RUNS:-runs/world}
read -r -a BACKBONES <<<"${BACKBONES:-unet-eps unet-v dit}"
read -r -a SEED_LIST <<<"${SEEDS:-0}"
ABLATIONS=" ${ABLATIONS:-unet-eps} "
STAGES=" ${STAGES:-1 2 3 4 5} "
STUDENTS=${STUDENTS:-}  # empty: all eight
if [ "${SMOKE:-0}" = 1 ]; then
  TEACHER_S=${TEACHER_S:-20}; DISTILL_S=${DISTILL_S:-20}; DATASET=512; TEACHER_BATCH=8; DISTILL_BATCH=4; DDIM=2
  TEACHERS=$RUNS/base; ALIGN_N=4; EVAL=(--n $ALIGN_N --fid-n 4 --images-per-pair 1 --nasa-scales 0.5)
  TEACHER_EXTRA=(--max_steps=60 --eval_prompts=2 --eval_every=30)
  DISTILL_EXTRA=(--steps=60 --eval_every=30 --eval_n=4 --warm_start_pairs=8)
  UNET_MODEL=('--model={"block_channels": [16, 32], "attention_levels": [false, true], "norm_groups": 8}')
  DIT_MODEL=('--model={"hidden_size": 32, "depth": 1, "heads": 2}')
else
  TEACHER_S=${TEACHER_S:-200}; DISTILL_S=${DISTILL_S:-170}; DATASET=100000; TEACHER_BATCH=256; DISTILL_BATCH=128
  DDIM=25; TEACHERS=models/base; ALIGN_N=200; EVAL=(--n $ALIGN_N --fid-n 1000 --images-per-pair 10 --batch-size 200)
  TEACHER_EXTRA=(--max_steps=100000 --eval_every=1000); DISTILL_EXTRA=(--steps=100000 --eval_every=${EVAL_EVERY:-100})
  UNET_MODEL=(); DIT_MODEL=()
fi
export PYTHONUNBUFFERED=1
mkdir -p "$RUNS/logs" "$RUNS/grids" "$RUNS/results" "$TEACHERS"
started=$(date +%s)
stage() { echo "[$(( $(date +%s) - started )) s] $*"; }
# run NAME CMD...: in the background, output to $RUNS/logs/NAME.log; pids collected for `join`
pids=(); names=(); failures=0
run() { local name=$1; shift; "$@" >"$RUNS/logs/$name.log" 2>&1 & pids+=($!); names+=("$name"); }
join() {
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      failures=$((failures + 1)); stage "FAILED: ${names[$i]}"; tail -n 15 "$RUNS/logs/${names[$i]}.log"
    fi
  done
  pids=(); names=()
}
bundle() {  # bundle NAME PATHS...: the existing PATHS as NAME.tar.part-aa, -ab, ... in $BUNDLE
  [ -n "${BUNDLE:-}" ] || return 0
  local name=$1; shift
  local paths=(); for path in "$@"; do [ -e "$path" ] && paths+=("$path"); done
  [ ${#paths[@]} -gt 0 ] || return 0
  tar cf - "${paths[@]}" | split -b 15m - "$BUNDLE/$name.tar.part-"
}

if [[ $STAGES == *" 1 "* ]]; then
stage "1. training set ($DATASET samples, device $DEVICE)"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
run cache "$PYTHON" -m trainer.train_teacher trainer/configs/teacher-unet-eps.json --device="$DEVICE" \
  --dataset_size=$DATASET --max_steps=0 --cache_dir="$RUNS/cache" --out_dir="$RUNS/cache-build"
join
[ "$failures" = 0 ] || exit 1
fi

if [[ $STAGES == *" 2 "* ]]; then
stage "2. teachers, $TEACHER_S s each"
for b in "${BACKBONES[@]}"; do
  lr=1e-3; model=("${UNET_MODEL[@]}"); init=()
  if [ "$b" = dit ]; then lr=5e-4; model=("${DIT_MODEL[@]}"); fi
  if [ -n "${TEACHER_INIT:-}" ]; then lr=3e-4; init=(--init_from="$TEACHER_INIT/teacher-$b.pt" --warmup_steps=100); fi
  if [ "$b" = dit ] && [ -n "${DIT_REGRESS_ONTO:-}" ]; then init+=(--regress_onto="$DIT_REGRESS_ONTO"); fi
  run "teacher-$b" "$PYTHON" -m trainer.train_teacher "trainer/configs/teacher-$b.json" --device="$DEVICE" \
    --dataset_size=$DATASET --cache_dir="$RUNS/cache" --batch_size=$TEACHER_BATCH --learning_rate="${TEACHER_LR:-$lr}" \
    --time_budget_s="$TEACHER_S" \
    --threads=2 --out_dir="$RUNS/teacher-$b" "${TEACHER_EXTRA[@]}" "${model[@]}" "${init[@]}"
done
join
fi

if [[ $STAGES == *" 3 "* ]]; then
stage "3. teachers: alignment, grids, export"
for b in "${BACKBONES[@]}"; do
  [ -f "$RUNS/teacher-$b/ckpt.pt" ] || continue
  run "sample-$b" "$PYTHON" -m trainer.sample --ckpt "$RUNS/teacher-$b/ckpt.pt" --device "$DEVICE" --eval \
    --guidance=4.5,2,7.5 --n $ALIGN_N --steps $DDIM --grid "$RUNS/grids/teacher-$b.png" \
    --json "$RUNS/results/align-teacher-$b.json" --export "$TEACHERS/teacher-$b.pt"
done
join
bundle teachers "$TEACHERS"/teacher-*.pt "$TEACHERS"/teacher-*.json "$RUNS/grids" "$RUNS"/teacher-*/progress.jsonl
fi

if [[ $STAGES == *" 4 "* ]]; then
stage "4. students, $DISTILL_S s each"
distill() {  # name backbone method [extra keys]: once per seed of SEEDS (named <name>-s<seed> when there are several)
  local base=$1 backbone=$2 method=$3; shift 3
  [ -f "$TEACHERS/teacher-$backbone.pt" ] || return 0
  [ -z "$STUDENTS" ] || [[ " $STUDENTS " == *" $base "* ]] || return 0
  for seed in "${SEED_LIST[@]}"; do
    local name=$base
    [ ${#SEED_LIST[@]} = 1 ] || name=$base-s$seed
    run "distill-$name" "$PYTHON" -m trainer.distill --config "trainer/configs/distill-$backbone.json" \
      --out "$RUNS/packages/$name" --backbone="$TEACHERS/teacher-$backbone.pt" --method="$method" --seed="$seed" \
      --batch_size=$DISTILL_BATCH --time_budget_s="$DISTILL_S" --student_lr="${STUDENT_LR:-3e-5}" --device="$DEVICE" \
      --regression_weight="${REGRESSION_WEIGHT:-0}" --write_package=false --run_dir="$RUNS/distill/$name" \
      "${DISTILL_EXTRA[@]}" "$@"
  done
}
for b in "${BACKBONES[@]}"; do
  distill "shapes-$b-sb" "$b" sb
  distill "shapes-$b-pgsb" "$b" pg-sb
  if [[ $ABLATIONS == *" $b "* ]]; then
    distill "shapes-$b-pgsb-teacher-only" "$b" pg-sb --guidance_mode=random-teacher-only
    distill "shapes-$b-pgsb-lora-only" "$b" pg-sb --guidance_mode=random-lora-only
  fi
done
join
fi

if [[ $STAGES == *" 5 "* ]]; then
stage "5. evaluation rows"
for b in "${BACKBONES[@]}"; do
  [ -f "$TEACHERS/teacher-$b.pt" ] && [[ $STAGES == *" 3 "* ]] || continue
  run "eval-teacher-$b" "$PYTHON" -m trainer.evaluate --teacher "$TEACHERS/teacher-$b.pt" --cfg 4.5 --steps $DDIM \
    --device "$DEVICE" "${EVAL[@]}" --out "$RUNS/results/teacher-$b.json"
done
for dir in "$RUNS"/distill/*/; do
  name=$(basename "$dir")
  [ -f "$dir/student.pt" ] || continue
  run "eval-$name" "$PYTHON" -m trainer.evaluate --student "$dir/student.pt" --device "$DEVICE" "${EVAL[@]}" \
    --out "$RUNS/results/$name.json"
done
join
fi

bundle students "$RUNS"/distill/${BUNDLE_STUDENTS:-*pgsb*}/student.* "$RUNS/logs" "$RUNS/grids" "$RUNS/results" \
  "$RUNS"/distill/*/progress.jsonl
[ -z "${BUNDLE:-}" ] || ls -l "$BUNDLE"
stage "done, $failures failed"
[ "$failures" = 0 ]
