#!/bin/sh
# tests/run.sh BIN [unit|e2e|all] — the one test runner. Runs every unit-test binary in BIN/tests
# (each in its own process, as libuv does) and the end-to-end tests against the real daemon in BIN,
# then prints one closing line "N passed, N failed" and exits non-zero if anything failed.
set -u
BIN=${1:?usage: tests/run.sh BIN [unit|e2e|all]}
WHAT=${2:-all}
PY=/usr/bin/python3
passed=0 failed=0 skipped=0
logdir=$(mktemp -d "${TMPDIR:-/tmp}/coretuned-tests.XXXXXX")

count() { # $1 = log file; echo "passed failed skipped" from cmocka's summary
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$1" | tail -n 1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$1" | tail -n 1)
    echo "${p:-0} ${f:-0} ${s:-0}"
}

if [ "$WHAT" = all ] || [ "$WHAT" = unit ]; then
    for t in "$BIN"/tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        log="$logdir/$name.log"
        "$t" >"$log" 2>&1
        rc=$?
        set -- $(count "$log")
        p=$1 f=$2 s=$3
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or sanitizer report
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
        if [ "$f" -ne 0 ]; then
            echo "FAIL $name (exit $rc):"; sed 's/^/    /' "$log" | tail -n 40
        else
            echo "ok   $name ($p passed${s:+, $s skipped})"
        fi
    done
fi

if [ "$WHAT" = all ] || [ "$WHAT" = e2e ]; then
    log="$logdir/e2e.log"
    $PY tests/e2e/run.py --bin "$BIN" 2>&1 | tee "$log"
    line=$(grep -E '^e2e: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL e2e runner did not finish"; failed=$((failed + 1))
    else
        p=$(echo "$line" | sed 's/^e2e: \([0-9]*\) passed.*/\1/')
        f=$(echo "$line" | sed 's/.* \([0-9]*\) failed.*/\1/')
        passed=$((passed + p)); failed=$((failed + f))
    fi
fi

rm -rf "$logdir"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
