#!/bin/sh
# scripts/gpu-check.sh — everything that needs a GPU, in one run of a few minutes (for a session that
# is lent a GPU machine for minutes): build with CUDA, the GPU unit tests (every layer and whole
# backbones against the CPU path, three Core-tuning steps against the PyTorch fixtures), then the GPU
# benchmark table (bench/bench_gpu.c). Exits non-zero if the build or a test fails, or if the tests
# were skipped (no device: the reason is printed), so a GPU run never reads as passed by accident.
#   scripts/gpu-check.sh [JOBS]     JOBS: make -j (default: all cores)
set -u
cd "$(dirname "$0")/.."
jobs=${1:-$(nproc)}
status=0

echo "== build (CUDA=1)"
start=$(date +%s)
make -j"$jobs" CUDA=1 all bin/bench/bench_gpu >/tmp/gpu-check-build.log 2>&1 || {
    tail -n 40 /tmp/gpu-check-build.log; echo "build failed"; exit 1; }
echo "built in $(( $(date +%s) - start )) s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "== GPU unit tests"
for t in test_gpu test_train_golden; do
    out=$(bin/tests/$t 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^\[ *(OK|FAILED|SKIPPED|SKIP|ERROR|LINE) *\]|PASSED' | sed "s/^/$t: /"
    [ $rc -eq 0 ] || status=1
    if printf '%s\n' "$out" | grep -q '^\[  SKIPPED \] [0-9]* test'; then
        echo "$t: tests were SKIPPED (see the reason above): not a GPU pass"; status=1
    fi
done

echo "== GPU benchmark (backbone step: upload, forward, features to host, dL/dh back, backward, SGD)"
bin/bench/bench_gpu --header || exit 1
# name size small_stem batch; resnet50 at 224 is torchvision's ImageNet shape
for prec in fp32 tf32; do
    timeout 120 bin/bench/bench_gpu resnet50 224 0 64 $prec 3 10 || status=1
    timeout 120 bin/bench/bench_gpu resnet18 32 1 256 $prec 3 10 || status=1
done
exit $status
