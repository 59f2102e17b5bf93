"""The connection policy (issue "Reliability", defects 2 and 3): slow or stalled clients cannot lock others
out. Hundreds of connections trickling their headers from 127.0.0.1 (where every client has the same
address) do not keep /healthz out; a connection that has not finished its headers within --header-timeout
is closed; a body that stops (truncated, a chunk longer than sent, half-closed) or crawls below
--body-min-rate is cut; a declared Content-Length above the limit is answered 413 as soon as the headers
arrive; an event stream whose client stopped reading is cut; open streams are capped (--max-streams) apart
from API requests, which keep working, and the next stream gets a JSON 503; the Unix socket is served while
TCP is flooded. The time bounds are generous (loaded machines): what they tell apart is seconds from the 60 s
the daemon used to hold such connections."""
import http.client
import json
import select
import socket
import threading
import time
import unittest

from harness import SSE, DaemonTest, tiny_job, unix_request, wait_for

JOBS = "/v1/fine_tuning/jobs"
HEADER_TIMEOUT = 2.0
SLACK = 8.0          # a loaded machine; the defect held these connections 60 s


def connect(port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)   # before connect: sets the window
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def seconds_until_closed(s, limit, trickle=None, every=0.5):
    """Wait until the daemon closes s (EOF or reset), sending `trickle` every `every` seconds meanwhile;
    returns the seconds it took, or None if still open after limit. Whatever the daemon answers is read."""
    t0 = time.time()
    next_send = t0 + every
    while time.time() - t0 < limit:
        r, _, _ = select.select([s], [], [], 0.1)
        try:
            if r and not s.recv(65536):
                return time.time() - t0
            if trickle and time.time() >= next_send:
                s.send(trickle)
                next_send += every
        except OSError:   # reset, or a broken pipe while trickling
            return time.time() - t0
    return None


def in_parallel(fns):
    """Run each fn in its own thread; returns their results in order."""
    out = [None] * len(fns)

    def run(i, fn):
        out[i] = fn()
    ts = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


class Flood:
    """n connections from 127.0.0.1, each having sent the first byte of a request line and then one more
    byte every second (so no idle timeout ever fires), until stop()."""

    def __init__(self, port, n):
        self.socks, self.refused = [], 0
        for _ in range(n):
            try:
                s = connect(port)
                s.send(b"G")
                self.socks.append(s)
            except OSError:
                self.refused += 1
        self.done = threading.Event()
        self.t = threading.Thread(target=self.trickle)
        self.t.start()

    def trickle(self):
        while not self.done.wait(1.0):
            for s in self.socks:
                try:
                    s.send(b"E")
                except OSError:
                    pass

    def stop(self):
        self.done.set()
        self.t.join()
        for s in self.socks:
            s.close()


def read_response(s, timeout):
    """The HTTP response on socket s (status, parsed JSON body)."""
    s.settimeout(timeout)
    r = http.client.HTTPResponse(s)
    r.begin()
    body = r.read()
    return r.status, json.loads(body) if body else None


class ConnectionPolicyTest(DaemonTest):
    args = ("--workers", "0", "--header-timeout", str(HEADER_TIMEOUT), "--max-connections", "150",
            "--max-streams", "3", "--sse-heartbeat", "0.5", "--max-upload-mb", "1")

    def auth(self):
        return f"Authorization: Bearer {self.d.token}\r\n"

    def test_trickling_flood_does_not_lock_out_healthz(self):
        flood = Flood(self.d.port, 200)   # more than the budget: the oldest are evicted for newcomers
        try:
            t0 = time.time()
            for _ in range(5):
                status, body, _ = self.d.request("GET", "/healthz", token=None, timeout=10)
                self.assertEqual((status, body["status"]), (200, "ok"))
            self.assertLess(time.time() - t0, 10.0)
            status, page, _ = self.d.request("GET", JOBS, timeout=10)
            self.assertEqual(status, 200, page)
        finally:
            flood.stop()

    def test_stalled_headers_are_closed_within_the_deadline(self):
        port = self.d.port
        trickling = connect(port)
        trickling.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")   # then one byte every 0.5 s
        half_closed = connect(port)
        half_closed.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        half_closed.shutdown(socket.SHUT_WR)
        silent = connect(port)                                       # connected, says nothing
        took = in_parallel([lambda: seconds_until_closed(trickling, 30, trickle=b"X"),
                            lambda: seconds_until_closed(half_closed, 30),
                            lambda: seconds_until_closed(silent, 30)])
        for name, secs in zip(("trickling", "half-closed", "silent"), took):
            self.assertIsNotNone(secs, f"{name} headers still open after 30 s")
            self.assertLess(secs, HEADER_TIMEOUT + SLACK, name)
        for s in (trickling, half_closed, silent):
            s.close()
        self.assertEqual(self.d.request("GET", "/healthz", token=None)[0], 200)

    def test_incomplete_bodies_are_cut(self):
        port, auth = self.d.port, self.auth()
        head = f"POST {JOBS} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
        cases = {
            "truncated": (head + "Content-Length: 1000\r\n\r\n{\"model\":", False, None),
            "chunk longer than sent": (head + "Transfer-Encoding: chunked\r\n\r\n3e8\r\n{\"model\":", False, None),
            "unknown transfer-encoding": (head + "Transfer-Encoding: gzip\r\n\r\n{\"model\":", False, None),
            "half-closed": (head + "Content-Length: 1000\r\n\r\n{\"model\":", True, None),
            "crawling": (head + "Content-Length: 100000\r\n\r\n{\"model\":", False, b" "),
        }
        socks = {}
        for name, (text, shut, _) in cases.items():
            s = connect(port)
            s.sendall(text.encode())
            if shut:
                s.shutdown(socket.SHUT_WR)
            socks[name] = s
        took = in_parallel([lambda s=socks[n], t=cases[n][2]: seconds_until_closed(s, 30, trickle=t)
                            for n in cases])
        for name, secs in zip(cases, took):
            self.assertIsNotNone(secs, f"{name}: still open after 30 s")
            self.assertLess(secs, HEADER_TIMEOUT + SLACK, name)
            socks[name].close()
        self.assertEqual(self.d.request("GET", JOBS)[0], 200)

    def test_oversize_content_length_is_413_before_the_body(self):
        port, auth = self.d.port, self.auth()
        for path, ctype, length in ((JOBS, "application/json", 10 ** 9),
                                    ("/v1/files", "multipart/form-data; boundary=b", 5 << 20)):
            with self.subTest(path=path):
                s = connect(port)
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {ctype}\r\n"
                          f"Content-Length: {length}\r\n\r\n".encode())   # and not one byte of the body
                try:
                    status, body = read_response(s, timeout=10)
                except socket.timeout:
                    self.fail(f"{path}: no answer within 10 s to a declared {length}-byte body")
                self.assertEqual(status, 413, body)
                self.assertEqual(body["error"]["code"], "request_too_large")
                s.close()

    def test_stream_cap_leaves_room_for_requests(self):
        _, job, _ = self.d.request("POST", JOBS, tiny_job())
        path = f"{JOBS}/{job['id']}/events"
        streams = [SSE(self.d, path, timeout=10) for _ in range(3)]
        for s in streams:
            self.assertEqual(s.resp.status, 200)
            next(iter(s))   # the job's first event: the stream is open
        extra = SSE(self.d, path, timeout=10)   # the status first: a stream granted would never end
        status = extra.resp.status
        err = json.loads(extra.resp.read()) if status == 503 else None
        extra.close()
        self.assertEqual(status, 503, err)
        self.assertEqual(err["error"]["code"], "too_many_streams")
        self.assertIn("max-streams", err["error"]["message"])
        for _ in range(5):   # API requests are not streams: they still find room
            self.assertEqual(self.d.request("GET", JOBS)[0], 200)
            self.assertEqual(self.d.request("GET", f"{JOBS}/{job['id']}")[0], 200)
        streams.pop().close()   # its slot comes back once the daemon notices (at the next heartbeat)
        deadline, status = time.time() + 15, None
        while time.time() < deadline and status != 200:
            s = SSE(self.d, path, timeout=10)
            status = s.resp.status
            if status == 200:
                streams.append(s)
            else:
                s.close()
                time.sleep(0.2)
        self.assertEqual(status, 200)
        for s in streams:
            s.close()

    def test_unix_socket_is_served_while_tcp_is_flooded(self):
        flood = Flood(self.d.port, 400)
        try:
            t0 = time.time()
            for _ in range(5):
                status, me, _ = unix_request(self.d.socket_path, "GET", "/v1/me", timeout=10)
                self.assertEqual((status, me["name"]), (200, "admin"))
            self.assertLess(time.time() - t0, 10.0)
        finally:
            flood.stop()


class UnreadStreamTest(DaemonTest):
    args = ("--workers", "1", "--sse-heartbeat", "0.5")

    def test_stream_whose_client_stopped_reading_is_cut(self):
        # a finished job with a few hundred events: replayed from the start, far more than the socket
        # buffers hold, so the daemon's writes block on a client that reads nothing
        body = tiny_job(epochs=3, train_limit=512)
        body["method"]["core_tuning"]["hyperparameters"]["batch_size"] = 4
        _, job, _ = self.d.request("POST", JOBS, body)
        wait_for(self.d, job["id"], {"succeeded"}, timeout=300)
        s = connect(self.d.port, rcvbuf=4096)
        s.sendall(f"GET {JOBS}/{job['id']}/events HTTP/1.1\r\nHost: x\r\n"
                  f"Accept: text/event-stream\r\nAuthorization: Bearer {self.d.token}\r\n\r\n".encode())
        time.sleep(3 * 0.5 + SLACK)   # reads nothing for many heartbeats
        got = b""
        s.settimeout(10)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except OSError:   # reset: the daemon dropped what it had not sent
            pass
        s.close()
        self.assertIn(b"200 OK", got[:200])
        self.assertFalse(b"event: end" in got, f"the stream was held open for a client that did not read: all "
                                               f"{len(got)} bytes came once it read")
        self.assertEqual(self.d.request("GET", "/healthz", token=None)[0], 200)


if __name__ == "__main__":
    unittest.main()
