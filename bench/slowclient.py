"""bench/slowclient.py — does a flood of slow clients from 127.0.0.1 keep others out? (make bench-http)

Starts bin/coretuned (default connection policy) and, from a second process, holds N connections that
trickle their headers one byte every 2 s (each reconnecting at once when the daemon cuts it, so N stay
open) and M event streams that are never read past their status line. Meanwhile this process sends
legitimate GET /v1/fine_tuning/jobs requests, each on a new connection, and prints their latency
(p50/p99/max), the failures, the daemon's RSS before/at peak/after, what the flood saw (cuts, streams
refused) and the CPU model. The target: p99 <= --target-ms and no failure; the exit status says whether
it was met. Stdlib only; the flood runs in its own process so its Python loop does not delay the
measurement."""
import argparse
import json
import multiprocessing
import os
import resource
import selectors
import socket
import sys
import time
import http.client

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402  (the e2e harness starts and stops the daemon)

JOBS = "/v1/fine_tuning/jobs"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def flood(port, token, job_id, n_trickle, n_streams, stop, out):
    """The second process: open the streams, then keep n_trickle trickling connections until stop is set."""
    raise_nofile()
    streams, refused = [], 0
    req = (f"GET {JOBS}/{job_id}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode()
    for _ in range(n_streams):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(req)
            head = s.recv(64)   # the status line, then never another byte is read
            if b" 200 " in head:
                streams.append(s)
            else:
                refused += 1
                s.close()
        except OSError:
            refused += 1
    sel = selectors.DefaultSelector()
    start_line = f"GET {JOBS} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode()
    stats = {"connects": 0, "cuts": 0, "connect_errors": 0}

    def open_one():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.setblocking(False)
            s.send(start_line[:1])
        except OSError:
            stats["connect_errors"] += 1
            return
        stats["connects"] += 1
        sel.register(s, selectors.EVENT_READ, [1, time.time() + 2.0])

    for _ in range(n_trickle):
        open_one()
    out.send({"ready": True, "streams_open": len(streams), "streams_refused": refused})
    while not stop.is_set():
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:   # cut by the daemon: replace it
                sel.unregister(s)
                s.close()
                stats["cuts"] += 1
                open_one()
        now = time.time()
        for key in list(sel.get_map().values()):
            st = key.data
            if now >= st[1]:
                st[1] = now + 2.0
                try:
                    key.fileobj.send(start_line[st[0]:st[0] + 1] or b"a")   # the header line, then its value
                    st[0] += 1
                except OSError:
                    pass
        while len(sel.get_map()) < n_trickle and not stop.is_set():
            open_one()
            if stats["connect_errors"] > 10 * n_trickle:
                break
    stats["open_at_end"] = len(sel.get_map())
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    for s in streams:
        s.close()
    out.send(stats)


def one_request(port, token):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", JOBS, headers={"Authorization": f"Bearer {token}"})
        r = c.getresponse()
        body = r.read()
        ok = r.status == 200 and json.loads(body)["object"] == "list"
    except (OSError, ValueError, http.client.HTTPException):
        ok = False
    finally:
        c.close()
    return ok, (time.perf_counter() - t0) * 1000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--trickle", type=int, default=1000)
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between legitimate requests")
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("daemon_args", nargs="*", help="extra coretuned options (after --)")
    args = ap.parse_args()
    raise_nofile()
    harness.BIN = args.bin
    d = harness.Daemon("--workers", "0", "--log-level", "warn", *args.daemon_args).start()
    try:
        pid = d.proc.pid
        _, job, _ = d.request("POST", JOBS, harness.tiny_job())
        for _ in range(20):
            one_request(d.port, d.token)
        rss_before = rss_kib(pid)
        base = [one_request(d.port, d.token)[1] for _ in range(50)]
        parent, child = multiprocessing.Pipe()
        stop = multiprocessing.Event()
        p = multiprocessing.Process(target=flood, args=(d.port, d.token, job["id"], args.trickle, args.streams,
                                                        stop, child))
        p.start()
        ready = parent.recv()
        time.sleep(2.0)   # the flood is at full size
        lat, failures, rss_peak = [], 0, rss_before
        t0, cpu0 = time.time(), cpu_seconds(pid)
        for i in range(args.requests):
            ok, ms = one_request(d.port, d.token)
            lat.append(ms)
            failures += not ok
            if i % 20 == 0:
                rss_peak = max(rss_peak, rss_kib(pid))
            time.sleep(args.interval)
        duration, cpu = time.time() - t0, cpu_seconds(pid) - cpu0
        rss_peak = max(rss_peak, rss_kib(pid))
        stop.set()
        stats = parent.recv() if parent.poll(30) else {}
        p.join(10)
        time.sleep(1.0)
        rss_after = rss_kib(pid)
        cuts_logged = d.read_log().count("closed slow or surplus connections")
    finally:
        d.cleanup()
    p99 = pct(lat, 99)
    print(f"cpu: {cpu_model()} ({os.cpu_count()} cpus)")
    print(f"flood: {args.trickle} trickling connections (1 byte / 2 s, reconnecting when cut), "
          f"{args.streams} unread event streams: {ready['streams_open']} open, {ready['streams_refused']} refused")
    print(f"flood saw: {stats.get('connects', '?')} connects, {stats.get('cuts', '?')} cut by the daemon, "
          f"{stats.get('connect_errors', '?')} connect errors, {stats.get('open_at_end', '?')} open at the end; "
          f"daemon summary lines: {cuts_logged}; daemon CPU {cpu / duration * 100:.0f}% of a core meanwhile")
    print(f"without flood: GET {JOBS} p50 {pct(base, 50):.1f} ms, p99 {pct(base, 99):.1f} ms")
    print(f"under flood:   GET {JOBS} x{len(lat)} over {duration:.0f} s: p50 {pct(lat, 50):.1f} ms, "
          f"p99 {p99:.1f} ms, max {max(lat):.1f} ms, failures {failures}")
    print(f"daemon RSS: before {rss_before / 1024:.1f} MiB, peak {rss_peak / 1024:.1f} MiB, "
          f"after {rss_after / 1024:.1f} MiB")
    met = failures == 0 and p99 <= args.target_ms
    print(f"target (p99 <= {args.target_ms:.0f} ms, 0 failures): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
