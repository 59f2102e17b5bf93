"""bench/api.py — the request path under load (make bench-api).

Starts bin/coretuned with --workers 0 (jobs are accepted and queued, nothing trains) on loopback with a
temporary data dir, adds two users ("bench" and "other") with a token each, and creates --jobs jobs through
the API, alternating between the two owners; every other job of each owner is cancelled, so half the jobs
(--jobs / 2) stay queued. Then wrk (Debian's) runs --connections connections for --seconds against each
route, as "bench" (not an admin: the owner filter and the authorization checks are on the path):

  /healthz                                  public, no identity
  /readyz                                   authenticated, no database read
  /v1/fine_tuning/jobs/{id}                 one queued job of bench's (queue position and estimate included)
  /v1/fine_tuning/jobs?limit=20             the newest page of bench's jobs

and against bench/api_peer (a do-nothing libmicrohttpd server on one thread, like the daemon's loop). Runs
are interleaved, route by route within a round, --rounds rounds (the peer's place in the order moves each
round), because the machine is shared; the table gives medians over rounds of req/s and wrk's p50/p99,
and the ratio of the daemon's median req/s to the peer's. Prints the CPU model. A non-2xx answer or a
socket error, or the daemon not exiting cleanly, fails the bench (exit 1). Stdlib only."""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402  (the e2e harness starts and stops the daemon)
from slowclient import cpu_model  # noqa: E402

JOBS = "/v1/fine_tuning/jobs"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def call(conn, token, method, path, body=None):
    """One request on a keep-alive connection: (status, parsed JSON). No contract check: it is set-up."""
    hdrs = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=hdrs)
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def populate(d, tokens, n_jobs):
    """n_jobs jobs, owners alternating; every other job of each owner cancelled. OUT: a queued job of
    tokens[0]'s owner."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
    t = time.time()
    queued = None
    for i in range(n_jobs):
        token = tokens[i % len(tokens)]
        st, job = call(conn, token, "POST", JOBS, harness.tiny_job())
        assert st == 200, job
        if (i // len(tokens)) % 2:
            st, job = call(conn, token, "POST", f"{JOBS}/{job['id']}/cancel")
            assert st == 200 and job["status"] == "cancelled", job
        elif token == tokens[0]:
            queued = job["id"]
    conn.close()
    print(f"{n_jobs} jobs ({n_jobs // 2} queued) created in {time.time() - t:.1f} s")
    return queued


def wrk(url, token, a):
    """One wrk run: (req/s, p50 ms, p99 ms)."""
    cmd = ["wrk", f"-t{a.threads}", f"-c{a.connections}", f"-d{a.seconds}s", "--latency", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if not rps or len(lat) != 2 or bad:
        raise SystemExit(f"bench-api: wrk on {url} failed:\n{out}")

    def ms(v):
        num, unit = re.match(r"([\d.]+)(\w+)", v).groups()
        return float(num) * UNITS[unit]
    return float(rps.group(1)), ms(lat["50"]), ms(lat["99"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench-api: wrk is not installed (scripts/deps.sh installs it)")
    harness.BIN = a.bin
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cpus); wrk -t{a.threads} -c{a.connections} -d{a.seconds}s, "
          f"{a.rounds} rounds")
    d = harness.Daemon("--workers", "0")
    d.start()
    peer = None
    try:
        tokens = [harness.add_user(d, "bench"), harness.add_user(d, "other")]
        job = populate(d, tokens, a.jobs)
        peer_port = harness.free_port()
        peer = subprocess.Popen([os.path.join(a.bin, "bench", "api_peer"), str(peer_port)])
        time.sleep(0.3)
        routes = [("/healthz", None), ("/readyz", tokens[0]), (f"{JOBS}/{job}", tokens[0]),
                  (f"{JOBS}?limit=20", tokens[0])]
        names = ["GET /healthz", "GET /readyz", "GET job", "GET list limit=20"]
        res = {n: [] for n in names + ["peer"]}
        for r in range(a.rounds):
            order = [(n, d.url(p), tok) for n, (p, tok) in zip(names, routes)]
            order.insert(r % (len(order) + 1), ("peer", f"http://127.0.0.1:{peer_port}/healthz", None))
            for name, url, tok in order:
                res[name].append(wrk(url, tok, a))
            print(f"round {r + 1}: " + ", ".join(f"{n} {res[n][-1][0]:.0f}" for n in res))
        med = {n: [statistics.median(x[k] for x in v) for k in range(3)] for n, v in res.items()}
        print(f"\nCPU: {cpu_model()} ({os.cpu_count()} cpus); {a.jobs} jobs, {a.jobs // 2} queued; "
              f"wrk -c{a.connections}, medians of {a.rounds} rounds")
        print("| route | req/s | p50 ms | p99 ms | ratio to peer |")
        print("|---|---|---|---|---|")
        for n in names + ["peer"]:
            rps, p50, p99 = med[n]
            print(f"| {n} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {rps / med['peer'][0]:.1%} |")
    finally:
        if peer:
            peer.send_signal(signal.SIGTERM)
            peer.wait(timeout=10)
        rc, _ = d.stop()
        log = d.read_log()
        d.cleanup()
        if rc != 0:  # a sanitizer report, or a crash under load, fails the bench
            print(log[-3000:])
            raise SystemExit(f"bench-api: coretuned exited with {rc}")


if __name__ == "__main__":
    main()
