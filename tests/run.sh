#!/bin/sh
# tests/run.sh BIN [unit|e2e|all] — the one test runner. Runs every unit-test binary in BIN/tests
# (each in its own process, as libuv does; on AVX-512 CPUs the trainer's kernel tests a second time with
# oneDNN held to AVX2, as NAME@avx2) and the end-to-end tests against the real daemon in BIN,
# then lists every skipped test ("skip BINARY: NAME: REASON" for cmocka, the reason being the test's own "[  SKIP    ]" line; "skip e2e TEST: REASON") and
# prints one closing line "N passed, N failed, N skipped" that counts both halves; exits non-zero if anything
# failed (a crash, a sanitizer report or an e2e runner that did not finish counts as a failure).
set -u
BIN=${1:?usage: tests/run.sh BIN [unit|e2e|all]}
WHAT=${2:-all}
PY=/usr/bin/python3
passed=0 failed=0 skipped=0
logdir=$(mktemp -d "${TMPDIR:-/tmp}/coretuned-tests.XXXXXX")
skips="$logdir/skips"
: >"$skips"

count() { # $1 = log file; echo "passed failed skipped" from cmocka's summary
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -n 1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$1" | tail -n 1)
    echo "${p:-0} ${f:-0} ${s:-0}"
}

# run_unit BINARY NAME [VAR=VALUE]: one unit-test binary (in the given environment), counted and reported as NAME
run_unit() {
    t=$1 name=$2
    log="$logdir/$name.log"
    if [ -n "${3:-}" ]; then env "$3" "$t" >"$log" 2>&1; else "$t" >"$log" 2>&1; fi
    rc=$?
    set -- $(count "$log")
    p=$1 f=$2 s=$3
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or sanitizer report
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    # cmocka prints a skip's reason ("[  SKIP    ] why") just before "[  SKIPPED ] name", and names the
    # test again in its summary: each name once, with the reason that came before it
    awk -v bin="$name" '/^\[  SKIP    \] /{ r = substr($0, 14); next }
        /^\[  SKIPPED \] [0-9]+ test/ { next }
        /^\[  SKIPPED \] / { t = substr($0, 14); if (!(t in seen)) print "skip " bin ": " t ": " (r != "" ? r : "no reason given"); seen[t] = 1; r = "" }' \
        "$log" >>"$skips"
    if [ "$f" -ne 0 ]; then
        echo "FAIL $name (exit $rc):"; sed 's/^/    /' "$log" | tail -n 40
    elif [ "$s" -ne 0 ]; then
        echo "ok   $name ($p passed, $s skipped)"
    else
        echo "ok   $name ($p passed)"
    fi
}

if [ "$WHAT" = all ] || [ "$WHAT" = unit ]; then
    for t in "$BIN"/tests/test_*; do
        [ -x "$t" ] || continue
        run_unit "$t" "$(basename "$t")"
    done
    # On an AVX-512 CPU the trainer's kernels run oneDNN's 16-channel layout and Winograd; the 8-channel
    # (AVX2) layout is run too, with oneDNN held to AVX2, so a machine of either kind tests both.
    if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
        for name in test_nn_conv test_model; do
            [ -x "$BIN/tests/$name" ] && run_unit "$BIN/tests/$name" "$name@avx2" DNNL_MAX_CPU_ISA=AVX2
        done
    fi
fi

if [ "$WHAT" = all ] || [ "$WHAT" = e2e ]; then
    log="$logdir/e2e.log"
    { $PY tests/e2e/run.py --bin "$BIN" 2>&1; echo $? >"$logdir/e2e.rc"; } | tee "$log"
    rc=$(cat "$logdir/e2e.rc" 2>/dev/null); rc=${rc:-1}
    line=$(grep -E '^e2e: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL e2e runner did not finish (exit $rc)"; failed=$((failed + 1))
    else
        set -- $(echo "$line" | sed 's/^e2e: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/')
        p=$1 f=$2 s=$3
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL e2e runner exited $rc"; fi
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
        sed -n 's/^e2e skip: /skip e2e /p' "$log" >>"$skips"
    fi
fi

cat "$skips"
rm -rf "$logdir"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
