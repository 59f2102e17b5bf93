"""Sweeps (POST /v1/fine_tuning/sweeps) against the real daemon: a 3-trial grid of tiny jobs runs to
`succeeded` with at most max_parallel trials at once and chooses the trial with the best validation
accuracy; the test set is evaluated once for the chosen model; random search is reproducible for a seed;
a bad parameter is a 400 naming its path and value with nothing stored; cancel cancels the trials; kill -9
mid-sweep then restart finishes each trial exactly once; the sweep's event stream ends with the sweep."""
import json
import signal
import time
import unittest

from harness import SSE, DaemonTest, all_events, tiny_job, wait_for

LR = "method.core_tuning.hyperparameters.learning_rate"


def wait_sweep(d, sid, statuses, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, w, _ = d.request("GET", f"/v1/fine_tuning/sweeps/{sid}")
        assert st == 200, w
        if w["status"] in statuses:
            return w
        time.sleep(0.1)
    raise AssertionError(f"sweep {sid} still {w['status']} after {timeout}s: {json.dumps(w)[:2000]}\n{d.read_log()[-3000:]}")


def sweep_body(values, **extra):
    body = {"job": tiny_job(epochs=1), "parameters": {LR: values}, "max_parallel": 2}
    body.update(extra)
    return body


class TestSweeps(DaemonTest):
    args = ("--workers", "2", "--threads-per-job", "1")

    def create(self, body, status=200):
        st, w, _ = self.d.request("POST", "/v1/fine_tuning/sweeps", body)
        self.assertEqual(st, status, w)
        return w

    def test_grid_sweep_chooses_the_best_validation_accuracy(self):
        w = self.create(sweep_body([0.001, 0.02, 0.08], test_file="fashion-mnist-test"))
        self.assertEqual(w["object"], "fine_tuning.sweep")
        self.assertEqual(len(w["trials"]), 3)
        self.assertEqual([t["parameters"][LR] for t in w["trials"]], [0.001, 0.02, 0.08])
        most = 0
        while True:
            _, w, _ = self.d.request("GET", f"/v1/fine_tuning/sweeps/{w['id']}")
            running = sum(t["status"] in ("queued", "running") for t in w["trials"])
            most = max(most, running)
            if w["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.05)
        self.assertLessEqual(most, 2)
        self.assertEqual(w["status"], "succeeded", json.dumps(w))
        accs = {}
        for t in w["trials"]:
            self.assertEqual(t["status"], "succeeded")
            _, j, _ = self.d.request("GET", f"/v1/fine_tuning/jobs/{t['job_id']}")
            self.assertEqual(j["metadata"]["sweep_id"], w["id"])
            self.assertEqual(j["hyperparameters"]["learning_rate"], t["parameters"][LR])
            self.assertEqual(t["objective"], j["best_valid_accuracy"])
            accs[t["job_id"]] = j["best_valid_accuracy"]
        best = max(accs, key=accs.get)
        self.assertEqual(w["best"]["objective"], accs[best])
        self.assertEqual(accs[w["best"]["job_id"]], accs[best])  # ties: any of the best
        _, bj, _ = self.d.request("GET", f"/v1/fine_tuning/jobs/{w['best']['job_id']}")
        self.assertEqual(w["fine_tuned_model"], bj["fine_tuned_model"])
        # the test set, once, for the chosen model only, after the choice
        deadline = time.time() + 120
        while w["best"].get("test_accuracy") is None and time.time() < deadline:
            time.sleep(0.2)
            w = self.d.request("GET", f"/v1/fine_tuning/sweeps/{w['id']}")[1]
        self.assertGreater(w["best"]["test_accuracy"], 0.0)
        self.assertEqual(w["best"]["test_images"], 10000)
        evs = all_events_sweep(self.d, w["id"])
        kinds = [e["type"] for e in evs]
        self.assertEqual(kinds.count("trial_started"), 3)
        self.assertEqual(kinds.count("trial_finished"), 3)
        self.assertGreaterEqual(kinds.count("new_best"), 1)
        self.assertEqual(kinds.count("test"), 1)
        chosen = next(i for i, e in enumerate(evs) if e["type"] == "status" and e["data"]["status"] == "succeeded")
        self.assertLess(chosen, kinds.index("test"))  # chosen before the test set is seen
        # the stream replays everything and ends with the sweep
        s = SSE(self.d, f"/v1/fine_tuning/sweeps/{w['id']}/events")
        got = [ev for _, ev, _ in s]
        s.close()
        self.assertEqual(got, [e["type"] for e in evs] + ["end"])
        st, page, _ = self.d.request("GET", "/v1/fine_tuning/sweeps")
        self.assertEqual((st, [x["id"] for x in page["data"]]), (200, [w["id"]]))

    def test_random_search_is_reproducible_for_a_seed(self):
        body = sweep_body({"log_uniform": [1e-4, 1e-1]}, search={"random": 4, "seed": 7}, max_parallel=1)
        body["parameters"]["method.core_tuning.hyperparameters.eta"] = [0.1, 1.0, 3.0]
        a = self.create(body)
        b = self.create(body)
        c = self.create(dict(body, search={"random": 4, "seed": 8}))
        pa = [t["parameters"] for t in a["trials"]]
        self.assertEqual(pa, [t["parameters"] for t in b["trials"]])
        self.assertNotEqual(pa, [t["parameters"] for t in c["trials"]])
        for p in pa:
            self.assertTrue(1e-4 <= p[LR] <= 1e-1, p)
            self.assertIn(p["method.core_tuning.hyperparameters.eta"], (0.1, 1.0, 3.0))
        for w in (a, b, c):
            self.assertEqual(self.d.request("POST", f"/v1/fine_tuning/sweeps/{w['id']}/cancel")[0], 200)

    def test_bad_parameter_is_a_400_naming_it_and_stores_nothing(self):
        err = self.create(sweep_body([0.01, -1]), status=400)["error"]
        self.assertEqual(err["param"], f"parameters.{LR}[1]")
        self.assertIn("-1", err["message"])
        err = self.create({"job": tiny_job(), "parameters": {"method.core_tuning.hyperparameters.nosuch": [1]}},
                          status=400)["error"]
        self.assertEqual(err["param"], "parameters.method.core_tuning.hyperparameters.nosuch[0]")
        for body, param in (({"job": tiny_job(), "parameters": {}}, "parameters"),
                            ({"job": tiny_job(), "parameters": {LR: [0.1]}, "max_parallel": 0}, "max_parallel"),
                            ({"job": tiny_job(), "parameters": {LR: [0.1]}, "bogus": 1}, "bogus"),
                            ({"job": tiny_job(), "parameters": {LR: [0.1] * 2}, "seeds": [1] * 200}, "seeds"),
                            ({"job": tiny_job(), "parameters": {LR: {"log_uniform": [1, 2]}}}, f"parameters.{LR}"),
                            ({"job": dict(tiny_job(), validation_file="fashion-mnist-test"), "parameters": {LR: [0.1]},
                              "test_file": "fashion-mnist-test"}, "test_file")):
            self.assertEqual(self.create(body, status=400)["error"]["param"], param, body)
        self.assertEqual(self.d.request("GET", "/v1/fine_tuning/sweeps")[1]["data"], [])
        self.assertEqual(self.d.request("GET", "/v1/fine_tuning/jobs")[1]["data"], [])
        self.assertEqual(self.d.request("GET", "/v1/fine_tuning/sweeps/ftsweep-nope")[0], 404)

    def test_cancel_cancels_the_trials(self):
        body = {"job": tiny_job(epochs=30), "parameters": {LR: [0.01, 0.02, 0.03]}, "max_parallel": 1}
        w = self.create(body)
        first = w["trials"][0]["job_id"]
        self.assertIsNotNone(first)
        wait_for(self.d, first, {"running"})
        st, w, _ = self.d.request("POST", f"/v1/fine_tuning/sweeps/{w['id']}/cancel")
        self.assertEqual((st, w["status"]), (200, "cancelled"), w)
        self.assertEqual(wait_for(self.d, first, {"cancelled"})["status"], "cancelled")
        self.assertEqual([t["status"] for t in w["trials"]], ["cancelled", "pending", "pending"])
        self.assertEqual(self.d.request("POST", f"/v1/fine_tuning/sweeps/{w['id']}/cancel")[0], 409)
        time.sleep(1.5)  # nothing starts after a cancel
        self.assertEqual(len(self.d.request("GET", "/v1/fine_tuning/jobs")[1]["data"]), 1)

    def test_kill9_mid_sweep_finishes_each_trial_once(self):
        w = self.create({"job": tiny_job(epochs=2), "parameters": {LR: [0.01, 0.02, 0.03, 0.04]}, "max_parallel": 2,
                         "seeds": [1]})
        deadline = time.time() + 120
        while time.time() < deadline:
            w = self.d.request("GET", f"/v1/fine_tuning/sweeps/{w['id']}")[1]
            if any(t["status"] == "succeeded" for t in w["trials"]):
                break
            time.sleep(0.05)
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        self.d.proc = None
        self.d.log.close()
        self.d.start()
        w = wait_sweep(self.d, w["id"], {"succeeded", "failed"})
        self.assertEqual(w["status"], "succeeded")
        ids = [t["job_id"] for t in w["trials"]]
        self.assertEqual(len(set(ids)), 4)
        jobs = self.d.request("GET", "/v1/fine_tuning/jobs?limit=100")[1]["data"]
        mine = [j for j in jobs if (j.get("metadata") or {}).get("sweep_id") == w["id"]]
        self.assertEqual(sorted(j["id"] for j in mine), sorted(ids), "a trial started twice")
        self.assertTrue(all(t["status"] == "succeeded" and t["seed"] == 1 for t in w["trials"]))


class TestEarlyStopping(DaemonTest):
    def test_a_job_whose_validation_stalls_stops_early_with_its_best_model(self):
        body = tiny_job(epochs=6)
        hp = body["method"]["core_tuning"]["hyperparameters"]
        hp.update(learning_rate=1e-7, early_stopping={"patience": 2, "min_delta": 1.0})
        body["data"]["valid_every"] = 1
        st, j, _ = self.d.request("POST", "/v1/fine_tuning/jobs", body)
        self.assertEqual(st, 200, j)
        self.assertEqual(j["hyperparameters"]["early_stopping"], {"patience": 2, "min_delta": 1.0})
        j = wait_for(self.d, j["id"], {"succeeded", "failed"})
        self.assertEqual(j["status"], "succeeded", j.get("error"))
        evs = all_events(self.d, j["id"])
        self.assertEqual(len([e for e in evs if e["type"] == "validation"]), 3)  # the first, then 2 without gain
        done = [e for e in evs if e["type"] == "status" and e["data"].get("status") == "succeeded"][0]
        self.assertTrue(done["data"]["early_stopped"])
        self.assertEqual(j["progress"]["epoch"], 3)
        self.assertEqual(j["final_valid_accuracy"], j["best_valid_accuracy"])
        bad = tiny_job()
        bad["method"]["core_tuning"]["hyperparameters"]["early_stopping"] = {"patience": 0}
        st, err, _ = self.d.request("POST", "/v1/fine_tuning/jobs", bad)
        self.assertEqual(st, 400)
        self.assertEqual(err["error"]["param"], "method.core_tuning.hyperparameters.early_stopping.patience")


def all_events_sweep(d, sid):
    out, after = [], None
    while True:
        q = f"/v1/fine_tuning/sweeps/{sid}/events?limit=100" + (f"&after={after}" if after else "")
        st, page, _ = d.request("GET", q)
        assert st == 200, page
        out += page["data"]
        if not page["has_more"]:
            return out
        after = page["data"][-1]["id"]


if __name__ == "__main__":
    unittest.main()
