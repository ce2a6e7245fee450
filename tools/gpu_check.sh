#!/usr/bin/env bash
# One-shot GPU check (issue 12, part 5): run as is on a fresh CUDA machine (H100/H200) with the
# repository and its .venv carried over; about 8 minutes. Each step has its own timeout; a failed
# or timed-out step is recorded and the script goes on. Raw outputs go to $OUT (default
# benchmarks/gpu_check/); tools/gpu_report.py then writes benchmarks/gpu.md: the device, torch,
# every step's status and the numbers next to the issue's goals.
#
#   tools/gpu_check.sh             # the real check (needs CUDA)
#   tools/gpu_check.sh --dry-run   # CPU, tiny models, seconds: exercises the script and the report
#
# Environment: PY (default .venv/bin/python), OUT (raw outputs), REPORT (default benchmarks/gpu.md).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-.venv/bin/python}
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
OUT=${OUT:-benchmarks/gpu_check}
REPORT=${REPORT:-benchmarks/gpu.md}
mkdir -p "$OUT"
: > "$OUT/status.tsv"

# step NAME SECONDS CMD...: run CMD under a timeout, stdout to $OUT/NAME.out, stderr to $OUT/NAME.log
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "== $name (timeout ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.log"
  local rc=$?
  local status=ok
  [[ $rc -eq 124 || $rc -eq 137 ]] && status=timeout
  [[ $rc -ne 0 && $status == ok ]] && status="failed (exit $rc)"
  printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >> "$OUT/status.tsv"
  echo "   $status in $((SECONDS - start)) s"
}
skip() { printf '%s\t%s\t0\n' "$1" "$2" >> "$OUT/status.tsv"; echo "== $1: $2"; }

if [[ $DRY == 1 ]]; then
  DEVICE=(--device cpu --peak-tflops 1.0)
  TINY=(model.image_size=32 model.num_blocks=1 --image-size 32 --batch-size 2 --repeats 1 --warmup 0)
  SSL_TINY=(model.dim=32 model.num_blocks=1 model.block_layer.mixer_layer.num_heads=2 model.num_registers=0
            task.dino_head.out_dim=16 task.dino_head.hidden_features=16 task.dino_head.bottleneck_dim=8
            task.ibot_head.out_dim=16 task.ibot_head.hidden_features=16 task.ibot_head.bottleneck_dim=8
            data.train_transform.global_crops_size=32 data.train_transform.local_crops_size=16
            data.train_transform.local_crops_number=1 --batch-size 2 --repeats 1 --warmup 0)
  HYBRID_TINY=(model.layer_pattern=H)
  COMPILE=()
  echo "cpu (dry run)" > "$OUT/device.txt"
else
  DEVICE=(--device cuda --dtype bf16)
  TINY=(--batch-size 256 --repeats 10 --warmup 3)
  SSL_TINY=(--batch-size 64 --repeats 5 --warmup 3)
  HYBRID_TINY=()
  COMPILE=(--compile)
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/device.txt" 2>&1 \
    || echo "nvidia-smi failed" > "$OUT/device.txt"
fi
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda)" > "$OUT/torch.txt" 2>&1

if [[ $DRY == 1 ]]; then
  skip gpu_tests "skipped (dry run)"
  skip bench_kernels "skipped (dry run)"
else
  step gpu_tests 60 "$PY" -m pytest -q -m gpu tests
  step bench_kernels 60 "$PY" tools/bench_kernels.py --dtype bf16 --out "$OUT/kernels.md"
fi
step vit_s16 70 "$PY" -m vitlab bench configs/models/vit_small_p16.py --timm vit_small_patch16_224 \
  "${TINY[@]}" "${DEVICE[@]}" "${COMPILE[@]}" --json
step vit_b16 70 "$PY" -m vitlab bench configs/models/vit_base_p16.py --timm vit_base_patch16_224 \
  "${TINY[@]}" "${DEVICE[@]}" "${COMPILE[@]}" --json
step hybrid_hr6 50 "$PY" -m vitlab bench configs/models/hybrid_small_p16.py \
  "${TINY[@]}" "${HYBRID_TINY[@]}" "${DEVICE[@]}" "${COMPILE[@]}" --json
step dinov3_vitl16_step 90 "$PY" tools/bench_ssl_step.py --model configs/models/dinov3_vitl16.py \
  --recipe configs/recipes/dinov3_im1k.py "${SSL_TINY[@]}" "${DEVICE[@]}" "${COMPILE[@]}" --json
if [[ $DRY == 1 ]]; then  # smoke runs of the same tools, outputs kept out of benchmarks/
  step dino_loss_memory 60 "$PY" tools/dino_loss_memory.py --tiny --out "$OUT/dino_loss.json"
  step bench_mixers 120 "$PY" tools/bench_mixers.py --device cpu --max-tokens 196 --dim 32 --num-heads 2 \
    --batch-size 1 --repeats 1 --out "$OUT/mixers.md"
else
  step dino_loss_memory 30 "$PY" tools/dino_loss_memory.py --out benchmarks/gpu_dino_loss.json
  step bench_mixers 90 "$PY" tools/bench_mixers.py --device cuda --dtype bfloat16 --out benchmarks/mixers_gpu.md
fi
"$PY" tools/gpu_report.py "$OUT" --out "$REPORT" && echo "wrote $REPORT"
