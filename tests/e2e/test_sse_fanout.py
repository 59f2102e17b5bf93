"""tests/e2e/test_sse_fanout.py — many event streams on one running job share one feed (api/sse.c): each
still gets every event exactly once, in order, then "end"; a stream that starts behind the feed (from an
early Last-Event-ID, or from the beginning while others are live) catches up from its own pages and joins."""
import threading
import unittest

from harness import SSE, DaemonTest, all_events, tiny_job, wait_event

JOBS = "/v1/fine_tuning/jobs"


class SseFanoutTest(DaemonTest):
    args = ("--workers", "1", "--threads-per-job", "1")

    def follow(self, jid, out, key, last_event_id=None):
        s = SSE(self.d, f"{JOBS}/{jid}/events", last_event_id=last_event_id, timeout=120)
        out[key] = list(s)
        s.close()

    def test_streams_share_a_feed_and_each_gets_every_event(self):
        status, job, _ = self.d.request("POST", JOBS, tiny_job(epochs=3))
        self.assertEqual(status, 200, job)
        jid = job["id"]
        out, threads = {}, []

        def start(key, lei=None):
            t = threading.Thread(target=self.follow, args=(jid, out, key, lei))
            t.start()
            threads.append(t)

        for k in range(4):                       # live from the start
            start(f"live{k}")
        first = wait_event(self.d, jid, lambda e: e["type"] == "metrics")
        wait_event(self.d, jid, lambda e: e["type"] == "metrics" and e["data"]["step"] >= first["data"]["step"] + 5)
        start("late")                            # from the beginning while the others are live
        start("resumed", first["id"])            # from an early Last-Event-ID: behind the feed
        for t in threads:
            t.join(180)
            self.assertFalse(t.is_alive(), "a stream did not end")
        events = all_events(self.d, jid)
        ids = [e["id"] for e in events]
        self.assertEqual(events[-1]["data"]["status"], "succeeded")
        for key, got in out.items():
            self.assertEqual(got[-1][1], "end", key)
            self.assertEqual([d for _, _, d in got[:-1]], events if key != "resumed" else events[ids.index(first["id"]) + 1:], key)
            self.assertEqual([i for i, _, _ in got[:-1]], [d["id"] for _, _, d in got[:-1]], key)


if __name__ == "__main__":
    unittest.main()
