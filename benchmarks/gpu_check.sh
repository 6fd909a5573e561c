#!/bin/bash
# training.precision on a GPU: client throughput f32 vs bf16 (VGG-16, MobileNetV3-Small at
# batch 32 and 256), then federated accuracy f32 vs bf16 through the real engine (a
# LocalCluster of 2 workers and the coordinator sharing the one GPU), on the CIFAR-10 slice.
#
#   bash benchmarks/gpu_check.sh throughput OUT_DIR
#   bash benchmarks/gpu_check.sh accuracy OUT_DIR [SEEDS] [JOBS] [ROUNDS]
#   bash benchmarks/gpu_check.sh accuracy OUT_DIR 0 1 1   # one seed, one round: the engine starts
#
# Needs JAX with a GPU backend; the data from FEDJAX_GRID_SHARED_DATA (or ../shared/data).
# Each part's tables go to stdout and OUT_DIR/<part>*.md.
set -uo pipefail
part=${1:?part: throughput or accuracy}; out=${2:?OUT_DIR}
seeds=${3:-0,1,2,3,4,5}; jobs=${4:-6}; rounds=${5:-10}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
case $part in
  throughput)
    for b in 32 256; do
      $py benchmarks/precision.py --models vgg16,mobilenet_v3_small --repeats 3 --steps 20 \
        --batch $b 2>&1 | tee "$out/throughput-b$b.md"
    done ;;
  accuracy)
    $py benchmarks/precision.py --accuracy --data cifar10 --seeds "$seeds" --jobs "$jobs" \
      --rounds "$rounds" 2>&1 | tee "$out/accuracy.md" ;;
  *) echo "error: part '$part' is invalid: allowed are throughput, accuracy" >&2; exit 2 ;;
esac
