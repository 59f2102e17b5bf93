#!/bin/sh
# tests/fuzz/run.sh BIN SECONDS — runs every libFuzzer target BIN/fuzz_<t> for SECONDS seconds: first
# every committed seed (tests/fuzz/corpus/<t>) and regression input (tests/fuzz/regressions/<t>), then
# new mutations. New interesting inputs go to build/fuzz/corpus/<t> (kept between runs, never
# committed); a crash, leak, sanitizer report or timeout leaves its input in build/fuzz/artifacts/<t>/.
# Prints one line per target from libFuzzer's final stats (runs, executions per second, coverage)
# and exits non-zero if any target failed. Run from the repository root (make fuzz / make fuzz-quick).
set -u
BIN=${1:?usage: tests/fuzz/run.sh BIN SECONDS}
SECS=${2:?usage: tests/fuzz/run.sh BIN SECONDS}
WORK=build/fuzz
failed=0 n=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for bin in "$BIN"/fuzz_*; do
    [ -x "$bin" ] || continue
    t=${bin##*/fuzz_}
    case $t in # the largest input worth trying: a CIFAR record and its headers fit in data/multipart
        data|multipart) max_len=16384 ;;
        http|safetensors) max_len=8192 ;;
        *) max_len=4096 ;;
    esac
    mkdir -p "$WORK/corpus/$t" "$WORK/artifacts/$t"
    dirs="$WORK/corpus/$t tests/fuzz/corpus/$t"
    [ -d "tests/fuzz/regressions/$t" ] && dirs="$dirs tests/fuzz/regressions/$t"
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    log="$WORK/fuzz_$t.log"
    seeds=$(find $dirs -type f 2>/dev/null | wc -l) # shellcheck disable=SC2086
    # shellcheck disable=SC2086 # dirs and dict are word lists
    "$bin" -max_total_time="$SECS" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$WORK/artifacts/$t/" $dict $dirs >"$log" 2>&1
    rc=$?
    n=$((n + 1))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    new=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    if [ $rc -ne 0 ]; then
        failed=$((failed + 1))
        echo "FAIL fuzz $t (exit $rc): input in $WORK/artifacts/$t/, log $log"
        grep -E 'ERROR|SUMMARY|fuzz: |panic|Test unit written' "$log" | head -n 20 | sed 's/^/    /'
    else
        echo "ok   fuzz $t: ${runs:-?} runs in ${SECS} s, ${eps:-?} exec/s, cov ${cov:-?}, ${new:-0} new inputs, ${seeds} inputs replayed first, peak ${rss:-?} MB"
    fi
done
[ $n -gt 0 ] || { echo "FAIL fuzz: no targets in $BIN"; exit 1; }
echo "fuzz: $((n - failed)) of $n targets passed ($SECS s each)"
[ $failed -eq 0 ]
