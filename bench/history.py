"""bench/history.py — a job with a long history, served by the daemon (make bench-history).

Creates a real job through the API (cancelled at once), stops the daemon, gives the job 1,000,000 metric
points (5 series x 200,000 steps) and 100,000 events through the storage layer (bench/history_load.c, which
also prints the query plans), starts the daemon again on the same data and times, over one keep-alive
connection, GET .../metrics?max_points=500 and GET .../events?after=<cursor>&limit=20 at cursors spread
over the history. Prints medians and p90 over --repeats; the goals are <= 50 ms and <= 10 ms. Stdlib only."""
import argparse
import http.client
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402
from slowclient import cpu_model  # noqa: E402

JOBS = "/v1/fine_tuning/jobs"


def timed(conn, token, path):
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t) * 1000
    assert r.status == 200, (path, r.status, body[:300])
    return ms, body


def stats(v):
    v = sorted(v)
    return v[len(v) // 2], v[min(len(v) - 1, int(len(v) * 0.9))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--steps", type=int, default=200000)
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=21)
    a = ap.parse_args()
    harness.BIN = a.bin
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cpus)")
    d = harness.Daemon()
    d.start()
    try:
        st, job, _h = d.request("POST", JOBS, harness.tiny_job())
        assert st == 200, job
        d.request("POST", f"{JOBS}/{job['id']}/cancel")
        harness.wait_for(d, job["id"], {"cancelled", "succeeded", "failed"})
        d.stop()
        t = time.time()
        subprocess.run([os.path.join(a.bin, "bench", "history_load"), os.path.join(d.data_dir, "coretuned.db"),
                        job["id"], str(a.steps), str(a.events)], check=True)
        print(f"loaded in {time.time() - t:.1f} s; database {os.path.getsize(os.path.join(d.data_dir, 'coretuned.db')) / 2**20:.0f} MiB")
        d2 = harness.Daemon(data_dir=d.data_dir)
        d2.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", d2.port, timeout=60)
            base = f"{JOBS}/{job['id']}"
            ms, body = timed(conn, d2.token, f"{base}/metrics?max_points=500")  # warm the page cache
            print(f"metrics answer: {len(body)} bytes")
            m = [timed(conn, d2.token, f"{base}/metrics?max_points=500")[0] for _ in range(a.repeats)]
            _ms, first = timed(conn, d2.token, f"{base}/events?limit=1")
            import json
            lo = int(json.loads(first)["data"][0]["id"].split("-")[-1])
            ev = []
            for i in range(a.repeats):
                cursor = lo + (a.events - 50) * i // max(1, a.repeats - 1)
                ev.append(timed(conn, d2.token, f"{base}/events?after=ftevent-{cursor}&limit=20")[0])
            ev100 = [timed(conn, d2.token, f"{base}/events?after=ftevent-{lo + a.events // 2}&limit=100")[0]
                     for _ in range(a.repeats)]
            conn.close()
            (m50, m90), (e50, e90), (f50, f90) = stats(m), stats(ev), stats(ev100)
            print(f"metrics?max_points=500 over {5 * a.steps} points: median {m50:.1f} ms, p90 {m90:.1f} ms (goal <= 50)")
            print(f"events?after=...&limit=20 over {a.events} events: median {e50:.2f} ms, p90 {e90:.2f} ms (goal <= 10)")
            print(f"events?after=...&limit=100: median {f50:.2f} ms, p90 {f90:.2f} ms")
        finally:
            d2.stop()
    finally:
        d.cleanup()
        shutil.rmtree(d.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
