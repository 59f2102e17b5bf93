#!/bin/sh
# bench/run.sh BIN — `make bench`: our training step (BIN/bench/bench_step) against the same step in
# PyTorch (bench/torch_step.py under Debian's python3-torch), one process per run, same machine, same
# model, batch, threads and Core-tuning loss. Runs are interleaved (rep by rep, the order of ours/torch
# alternating) because the machine is shared and noisy; the table quotes medians over repetitions of
# each run's median step. Prints the table and writes it, the raw JSON lines and the machine's state to
# bench/out/ (gitignored). Exit status 1 if any run failed.
# Knobs (environment):
#   BENCH_QUICK=1        one repetition, few steps (a smoke run, ~1-2 minutes)
#   BENCH_REPS=N         repetitions of every run (default 3: ~5 minutes on 2 idle cores, 10-15 when
#                        the neighbours load them)
#   BENCH_THREADS="1 2"  thread counts;  BENCH_CASES="r20 r18"  cases (r20: resnet20 1x28x28 b128,
#                        r18: resnet18 small stem 3x32x32 b64)
#   BENCH_METHOD=core|ce loss (default core, paper variant)
#   BENCH_ROOF1 / BENCH_ROOF2  nominal roof in GFLOP/s for 1 / 2 threads (default 77 / 155, OpenBLAS
#                        sgemm in /work/shared/PERFORMANCE.md); OpenBLAS and oneDNN sgemm are also
#                        measured here, each repetition, and the table gives the share of both
#   PYTHON=...           the python with torch (default /usr/bin/python3)
#   OMP_WAIT_POLICY      default PASSIVE for both sides, as the daemon runs (daemon/main.c, the systemd
#                        unit); OMP_WAIT_POLICY=ACTIVE (or "" for libgomp's default) to see the other
#                        side: spinning costs 3-5x on 2 threads when neighbours load the cores
# Everything else in the environment reaches both sides unchanged.
set -u

export OMP_WAIT_POLICY="${OMP_WAIT_POLICY-PASSIVE}"
[ -n "$OMP_WAIT_POLICY" ] || unset OMP_WAIT_POLICY
BIN=${1:-bin}
PY=${PYTHON:-/usr/bin/python3}
QUICK=${BENCH_QUICK:-0}
REPS=${BENCH_REPS:-3}
THREADS=${BENCH_THREADS:-"1 2"}
CASES=${BENCH_CASES:-"r20 r18"}
METHOD=${BENCH_METHOD:-core}
ROOF1=${BENCH_ROOF1:-77}
ROOF2=${BENCH_ROOF2:-155}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/out
STEP=$BIN/bench/bench_step

[ -x "$STEP" ] || { echo "bench: $STEP not built (make bin/bench/bench_step)" >&2; exit 1; }
"$PY" -c 'import torch, torchvision' 2>/dev/null || {
    echo "bench: $PY has no torch/torchvision (apt-get install python3-torch python3-torchvision)" >&2; exit 1; }
mkdir -p "$OUT"
stamp=$(date +%Y%m%d-%H%M%S)
raw=$OUT/raw-$stamp.jsonl
table=$OUT/table-$stamp.md
: >"$raw"

# case -> "arch in_ch size small_stem batch warmup iters fwd_MACs_per_image"
case_args() {
    if [ "$QUICK" = 1 ]; then
        case $1 in r20) echo "resnet20 1 28 0 128 1 4 31e6" ;; r18) echo "resnet18 3 32 1 64 1 2 555e6" ;; *) return 1 ;; esac
    else
        case $1 in r20) echo "resnet20 1 28 0 128 2 10 31e6" ;; r18) echo "resnet18 3 32 1 64 1 4 555e6" ;; *) return 1 ;; esac
    fi
}
[ "$QUICK" = 1 ] && REPS=1

fail=0
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
# the family/model say which generation a bare "AMD EPYC" is; the widest vector ISA the kernels can use
fam=$(sed -n 's/^cpu family[^:]*: *//p' /proc/cpuinfo | head -1) mod=$(sed -n 's/^model[[:space:]]*: *//p' /proc/cpuinfo | head -1)
isa=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|avx512f|avx512_bf16|amx_tile' | tr '\n' ' ')
cpu="$cpu (family $fam model $mod; ${isa% })"
ompenv="OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-unset}"
echo "bench: $cpu, $(nproc) CPUs, load $load_start; $REPS rep(s), threads $THREADS, cases $CASES, method $METHOD; $ompenv"

# the vectorised PyTorch loss must equal the golden loop implementation before its timings mean anything
if ! "$PY" "$HERE/torch_step.py" --check >"$OUT/check-$stamp.txt" 2>&1; then
    echo "bench: torch_step.py --check FAILED (see $OUT/check-$stamp.txt)" >&2
    exit 1
fi

run_one() { # impl rep case threads
    set -- "$1" "$2" "$3" "$4" $(case_args "$3")
    impl=$1 rep=$2 cs=$3 t=$4 arch=$5 ch=$6 sz=$7 ss=$8 b=$9
    shift 9
    wu=$1 it=$2 macs=$3
    if [ "$impl" = ours ]; then
        line=$("$STEP" "$arch" "$ch" "$sz" "$ss" "$b" "$t" "$METHOD" paper "$wu" "$it")
    else
        line=$("$PY" "$HERE/torch_step.py" "$arch" "$ch" "$sz" "$ss" "$b" "$t" "$METHOD" paper "$wu" "$it")
    fi
    rc=$?
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        echo "bench: FAILED $impl $cs threads $t (exit $rc)" >&2
        fail=1
        return
    fi
    echo "{\"rep\":$rep,\"case\":\"$cs\",\"macs\":$macs,\"load1\":$(cut -d' ' -f1 /proc/loadavg),\"run\":$line}" >>"$raw"
    printf '  rep %d %-4s %d thr %-5s %s img/s\n' "$rep" "$cs" "$t" "$impl" \
        "$(echo "$line" | sed 's/.*"img_s_median": *\([0-9.]*\).*/\1/')"
}

rep=1
while [ "$rep" -le "$REPS" ]; do
    for t in $THREADS; do
        r=$("$STEP" --roof "$t") && echo "{\"rep\":$rep,\"case\":\"roof\",\"run\":$r}" >>"$raw"
    done
    for cs in $CASES; do
        case_args "$cs" >/dev/null || { echo "bench: unknown case $cs" >&2; exit 1; }
        for t in $THREADS; do
            if [ $((rep % 2)) = 1 ]; then order="ours torch"; else order="torch ours"; fi
            for impl in $order; do run_one "$impl" "$rep" "$cs" "$t"; done
        done
    done
    rep=$((rep + 1))
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$raw" "$ROOF1" "$ROOF2" "$cpu" "$load_start" "$load_end" "$ompenv" >"$table" <<'EOF'
import json, statistics, sys
raw, roof_nom = sys.argv[1], {1: float(sys.argv[2]), 2: float(sys.argv[3])}
cpu, load0, load1, ompenv = sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
rows = [json.loads(l) for l in open(raw) if l.strip()]
roof = {}  # threads -> {"openblas": [..], "dnnl": [..]}
for r in rows:
    if r["case"] == "roof":
        x = r["run"]
        d = roof.setdefault(x["threads"], {"openblas": [], "dnnl": []})
        d["openblas"].append(x["openblas_gflops_median"])
        d["dnnl"].append(x["dnnl_gflops_median"])
runs = {}
for r in rows:
    if r["case"] != "roof":
        x = r["run"]
        runs.setdefault((r["case"], x["threads"], x["impl"]), []).append((r, x))
names = {"r20": "resnet20 1x28x28 b128", "r18": "resnet18 small stem 3x32x32 b64"}
med = statistics.median
print("%s; load average %s at the start, %s at the end; %s" % (cpu, load0, load1, ompenv))
print("sgemm 2048^3 measured in this run (median over reps), GFLOP/s: " +
      "; ".join("%d thr OpenBLAS %.0f, oneDNN %.0f" % (t, med(v["openblas"]), med(v["dnnl"]))
                for t, v in sorted(roof.items())))
print()
print("| case | thr | ours img/s | torch img/s | ratio | %% of roof %g/%g GFLOP/s: ours, torch | "
      "%% of oneDNN sgemm here: ours, torch | img per CPU-s: ours, torch (ratio) | peak RSS MiB ours / torch | "
      "reps: ours range / torch range |" % (roof_nom[1], roof_nom[2]))
print("|---|---|---|---|---|---|---|---|---|---|")
for cs in ("r20", "r18"):
    for t in sorted({k[1] for k in runs if k[0] == cs}):
        o, p = runs.get((cs, t, "coretuned"), []), runs.get((cs, t, "torch"), [])
        if not o or not p:
            continue
        oi = [x["img_s_median"] for _, x in o]
        pi = [x["img_s_median"] for _, x in p]
        macs = o[0][0]["macs"]
        share = lambda ips, rf: 100.0 * ips * 6 * macs / (rf * 1e9)  # noqa: E731
        rn = roof_nom.get(t, roof_nom[2] * t / 2)
        rm = med(roof[t]["dnnl"]) if t in roof else float("nan")
        oc = med([x["img_cpu_s_median"] for _, x in o])
        pc = med([x["img_cpu_s_median"] for _, x in p])
        print("| %s | %d | %.1f | %.1f | %.2fx | %.0f%%, %.0f%% | %.0f%%, %.0f%% | %.0f, %.0f (%.2fx) | %.0f / %.0f | "
              "%d: %.1f-%.1f / %.1f-%.1f |" % (
            names.get(cs, cs), t, med(oi), med(pi), med(oi) / med(pi), share(med(oi), rn), share(med(pi), rn),
            share(med(oi), rm), share(med(pi), rm), oc, pc, oc / pc,
            max(x["peak_rss_kib"] for _, x in o) / 1024, max(x["peak_rss_kib"] for _, x in p) / 1024,
            len(oi), min(oi), max(oi), min(pi), max(pi)))
print()
print("img/s: median over reps of each run's median step. Share of roof: images/s x 6 x forward MACs (31 M resnet20, "
      "555 M resnet18) / roof; the nominal roof is PERFORMANCE.md's OpenBLAS figure, the second share uses oneDNN's "
      "sgemm as measured in this run (AVX-512 where the CPU has it). img per CPU-s: batch / CPU time of the "
      "whole process per step (all threads); neighbours' load disturbs it far less than wall time, but with 2 "
      "threads it also counts spin-waiting.")
print()
print("median phase times, ms (ours: forward | loss | backbone backward | sgd; torch: forward | loss fwd | "
      "loss+backbone backward | optimiser step):")
for (cs, t, impl), v in sorted(runs.items()):
    xs = [x for _, x in v]
    print("  %s %d thr %-9s %8.1f | %6.1f | %8.1f | %6.1f" % (cs, t, impl, med([x["ms_forward"] for x in xs]),
          med([x["ms_loss"] for x in xs]), med([x["ms_backward"] for x in xs]), med([x["ms_optim"] for x in xs])))
EOF
cat "$table"
cp "$table" "$OUT/latest.md"
echo "bench: raw results $raw, table $table"
exit $fail
