"""GET /metrics (issue #6): Prometheus text format parsed strictly (every sample belongs to a family with
# HELP and # TYPE, label syntax, values are numbers, histogram buckets cumulative with +Inf == _count);
jobs by state and user, queue depth, per-job steps/s and images/s while a job runs, HTTP requests and the
latency histogram by route template and status (ids never become labels), database write latency, SSE
clients; the per-job label is job_id, never Prometheus's own `job`; admins only (403 for users, 401
anonymous)."""
import re
import time
import unittest

from harness import SANITIZED, SSE, DaemonTest, add_user, tiny_job, wait_event, wait_for

JOBS = "/v1/fine_tuning/jobs"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{family: {"type": t, "samples": [(name, {labels}, value)]}}; asserts the format."""
    fams, types, helps = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, t = line.split()
            assert t in ("counter", "gauge", "histogram"), line
            types[name] = t
            fams[name] = {"type": t, "samples": []}
        elif line.startswith("#") or not line:
            continue
        else:
            m = SAMPLE.match(line)
            assert m, f"bad sample line: {line!r}"
            name, labels, value = m.group(1), dict(LABEL.findall(m.group(3) or "")), float(m.group(4))
            fam = re.sub(r"_(bucket|sum|count)$", "", name) if re.sub(r"_(bucket|sum|count)$", "", name) in types else name
            assert fam in types, f"sample without # TYPE: {line}"
            assert fam in helps, f"sample without # HELP: {line}"
            fams[fam]["samples"].append((name, labels, value))
    for fam, f in fams.items():
        if f["type"] != "histogram":
            continue
        series = {}
        for name, labels, v in f["samples"]:
            key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
            series.setdefault(key, {"buckets": [], "count": None})
            if name.endswith("_bucket"):
                series[key]["buckets"].append((labels["le"], v))
            elif name.endswith("_count"):
                series[key]["count"] = v
        for key, s in series.items():
            vals = [v for _, v in s["buckets"]]
            assert vals == sorted(vals), (fam, key, vals)
            assert s["buckets"][-1][0] == "+Inf" and vals[-1] == s["count"], (fam, key)
    return fams


def value(fams, fam, name=None, **labels):
    for n, l, v in fams[fam]["samples"]:
        if (name or fam) == n and all(l.get(k) == x for k, x in labels.items()):
            return v
    return None


class MetricsTest(DaemonTest):
    args = ("--workers", "1", "--threads-per-job", "1")
    check_db = False

    def scrape(self):
        status, body, h = self.d.request("GET", "/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(h["Content-Type"].startswith("text/plain; version=0.0.4"))
        return parse(body.decode())

    def test_metrics(self):
        alice = add_user(self.d, "alice")
        self.assertEqual(self.d.request("GET", "/metrics", token=alice)[0], 403)
        self.assertEqual(self.d.request("GET", "/metrics", token=None)[0], 401)
        jid = self.d.request("POST", JOBS, tiny_job(epochs=30), token=alice)[1]["id"]  # still running when scraped
        self.d.request("POST", JOBS, tiny_job(), token=alice)          # waits behind it
        self.d.request("GET", f"{JOBS}/ftjob-nope")                     # a 404 on a templated route
        wait_event(self.d, jid, lambda e: e["type"] == "metrics" and e["data"]["step"] >= 3)
        stream = SSE(self.d, f"{JOBS}/{jid}/events")
        next(iter(stream))
        # steps/s is measured over at least a second of steps, so it is 0 until then: poll until it is positive
        # (a generous deadline: a loaded machine or sanitizers slow the job down, the rate must still come)
        deadline = time.time() + (180 if SANITIZED else 60)
        while True:
            f = self.scrape()
            sps = value(f, "coretuned_job_steps_per_second", job_id=jid, user="alice")
            self.assertIsNotNone(sps, "the running job has no steps/s sample")
            if sps > 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertGreater(sps, 0, "steps/s stayed 0 while the job ran steps")
        self.assertEqual(value(f, "coretuned_jobs", user="alice", state="running"), 1)
        self.assertEqual(value(f, "coretuned_jobs", user="alice", state="queued"), 1)
        self.assertEqual(value(f, "coretuned_queue_depth"), 1)
        self.assertGreater(value(f, "coretuned_job_images_per_second", job_id=jid, user="alice"), 0)
        # Prometheus owns the label "job" (a scrape renames ours exported_job): no family uses it
        self.assertFalse([n for fam in f.values() for n, l, _ in fam["samples"] if "job" in l])
        self.assertLessEqual(value(f, "coretuned_running_threads"), value(f, "coretuned_cores"))
        self.assertEqual(value(f, "coretuned_sse_clients"), 1)
        self.assertGreaterEqual(value(f, "coretuned_http_requests_total", route="/v1/fine_tuning/jobs", status="200"), 2)
        self.assertEqual(value(f, "coretuned_http_requests_total", route="/v1/fine_tuning/jobs/{id}", status="404"), 1)
        self.assertEqual(value(f, "coretuned_http_requests_total", route="/metrics", status="401"), 1)
        self.assertGreaterEqual(value(f, "coretuned_http_request_duration_seconds", "coretuned_http_request_duration_seconds_count",
                                      route="/v1/fine_tuning/jobs", status="200"), 2)
        self.assertGreater(value(f, "coretuned_db_write_seconds", "coretuned_db_write_seconds_count"), 0)
        labels = {l.get("route") for _, l, _ in f["coretuned_http_requests_total"]["samples"]}
        self.assertFalse(any("ftjob-" in (r or "") for r in labels), labels)
        stream.close()
        self.d.request("POST", f"{JOBS}/{jid}/cancel")
        wait_for(self.d, jid, ("cancelled",))


if __name__ == "__main__":
    unittest.main()
