"""`coretune sweep` (cli/sweep_cmd.c), driven with subprocess. Three parts:
- SweepUsageTest: usage errors and unreadable or malformed specs exit 2 before anything is sent; no
  daemon needed (a dead address shows nothing is contacted, and `list` against it exits 3);
- SweepStubTest: the client against a stub HTTP server that speaks the sweep API's contract
  (docs/api.md, docs/cli.md) with canned sweep objects: `show`'s facts and leaderboard (sorted by the
  objective per its goal, unfinished trials last, the best marked '*', parameters by short names),
  `list`, `logs`, `--follow` over server-sent events (including a dropped stream resumed with
  Last-Event-ID) with exit 0/1 by the final status, `cancel`, and 400/404 mapped to exit codes 2/4;
- SweepCLITest: the real daemon (harness.Daemon) running a 2-trial grid sweep of tiny real jobs:
  `submit --follow` streams to the end (exit 0) and prints the leaderboard, `show` marks the best,
  trials are ordinary jobs tagged with the sweep, `list`/`logs`/--json, `cancel` cancels a running
  sweep and its jobs, 400 names the bad parameter, 404 is exit 4. These need the daemon's sweep API."""
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import BIN, SANITIZED, Daemon, free_port, tiny_job

LR = "method.core_tuning.hyperparameters.learning_rate"
ETA = "method.core_tuning.hyperparameters.eta"


class CoretuneMixin:
    """Runs bin/coretune with a clean environment pointed at self.url (and self.token when set)."""
    token = None

    def env(self, url=None, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORETUNE_")}
        env["XDG_CONFIG_HOME"] = os.path.join(self.tmp, "xdg-empty")
        env["CORETUNE_URL"] = url or self.url
        if self.token:
            env["CORETUNE_TOKEN"] = self.token
        env.update(extra)
        return env

    def ct(self, *args, want=0, timeout=300, env=None, stdin=None):
        """Run coretune; check its exit code; return (stdout, stderr)."""
        p = subprocess.run([os.path.join(os.path.abspath(BIN), "coretune"), *args], capture_output=True, text=True,
                           env=env or self.env(), timeout=timeout, cwd=self.tmp, input=stdin)
        msg = f"coretune {' '.join(args)} -> {p.returncode}\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}"
        if SANITIZED:
            for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                self.assertNotIn(bad, p.stderr, msg)
        if want is not None:
            self.assertEqual(p.returncode, want, msg)
        if self.token:
            self.assertNotIn(self.token, p.stdout + p.stderr, "the token must never be printed")
        return p.stdout, p.stderr

    def ctj(self, *args, **kw):
        out, _ = self.ct(*args, "--json", **kw)
        return json.loads(out)

    def write_spec(self, name, spec):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(spec if isinstance(spec, str) else json.dumps(spec))
        return path


def leaderboard(out):
    """The leaderboard rows of `sweep show` / the end of `--follow`: dicts by the header's columns. The
    PARAMETERS cell has spaces, so columns are cut at the header's offsets."""
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("RANK "))
    head = lines[start]
    cols = [(m.group(0), m.start()) for m in re.finditer(r"\S+", head)]
    rows = []
    for line in lines[start + 1:]:
        if not line.strip() or not re.match(r"^(\d+\*?|-\*?)\s", line):
            break
        cells = {}
        for k, (name, off) in enumerate(cols):
            end = cols[k + 1][1] if k + 1 < len(cols) else None
            cells[name] = line[off:end].strip()
        rows.append(cells)
    return rows


def facts(out):
    """`show`'s key/value lines above the leaderboard."""
    d = {}
    for line in out.splitlines():
        if line.startswith("RANK "):
            break
        if line.strip():
            k, _, v = line.partition(" ")
            d[k] = v.strip()
    return d


class SweepUsageTest(CoretuneMixin, unittest.TestCase):
    """No daemon: everything here fails before a request (the address is a port nobody listens on)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="coretune-sweep-")
        self.url = f"http://127.0.0.1:{free_port()}"

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_usage_errors(self):
        _, err = self.ct("sweep", want=2)
        self.assertIn("usage: coretune sweep submit", err)
        self.ct("sweep", "frobnicate", want=2)
        self.ct("sweep", "show", want=2)
        self.ct("sweep", "show", "a", "b", want=2)
        self.ct("sweep", "logs", want=2)
        self.ct("sweep", "cancel", want=2)
        self.ct("sweep", "submit", want=2)
        self.ct("sweep", "list", "extra", want=2)
        self.ct("sweep", "list", "--limit", "0", want=2)
        self.ct("sweep", "list", "--bogus", want=2)
        self.ct("sweep", "submit", "x.json", "--max-parallel", "none", want=2)
        out, _ = self.ct("sweep", "--help")
        self.assertIn("sweep show ID", out)
        out, _ = self.ct("sweep", "show", "--help")
        self.assertIn("usage: coretune sweep show ID", out)
        out, _ = self.ct("--help")
        self.assertIn("sweep submit", out)

    def test_bad_specs(self):
        _, err = self.ct("sweep", "submit", os.path.join(self.tmp, "missing.json"), want=2)
        self.assertIn("missing.json", err)
        _, err = self.ct("sweep", "submit", self.write_spec("bad.json", "{not json"), want=2)
        self.assertIn("bad.json:1:", err)
        for name, spec in (("list.json", [1, 2]), ("nojob.json", {"parameters": {LR: [0.1]}}),
                           ("noparams.json", {"job": tiny_job()}), ("strjob.json", {"job": "x", "parameters": {}})):
            _, err = self.ct("sweep", "submit", self.write_spec(name, spec), want=2)
            self.assertIn('"job"', err, name)
        self.ct("sweep", "submit", "-", stdin="[]", want=2)
        # duplicate keys are refused like the job spec's
        self.ct("sweep", "submit", self.write_spec("dup.json", '{"job": {}, "job": {}, "parameters": {}}'), want=2)
        # a good spec gets as far as connecting: 3
        good = self.write_spec("good.json", {"job": tiny_job(), "parameters": {LR: [0.01, 0.05]}})
        _, err = self.ct("sweep", "submit", good, want=3)
        self.assertIn("cannot connect", err)
        self.ct("sweep", "list", want=3)
        self.ct("sweep", "show", "ftsweep-x", want=3)


# ---------------------------------------------------------------- a stub of the sweep API

def _trial(index, job, params, status, objective=None, seed=None, best_epoch=None):
    return {"index": index, "job_id": job, "parameters": params, "seed": seed, "status": status,
            "objective": objective, "best_epoch": best_epoch}


def stub_sweeps():
    """Canned sweep objects shaped as the contract says (newest first)."""
    running = {
        "object": "fine_tuning.sweep", "id": "ftsweep-running", "status": "running", "created_at": 1733130000,
        "finished_at": None, "owner": "alice", "job": tiny_job(), "search": "grid",
        "parameters": {LR: [0.01, 0.05], ETA: [0.1, 1.0]},
        "objective": {"metric": "valid_accuracy", "goal": "maximize"}, "max_parallel": 2, "seeds": None,
        "test_file": None,
        "trials": [
            _trial(0, "ftjob-t0", {LR: 0.01, ETA: 0.1}, "succeeded", 0.8125, best_epoch=2),
            _trial(1, "ftjob-t1", {LR: 0.05, ETA: 0.1}, "succeeded", 0.859375, best_epoch=1),
            _trial(2, "ftjob-t2", {LR: 0.01, ETA: 1.0}, "running", 0.5),
            _trial(3, None, {LR: 0.05, ETA: 1.0}, "pending"),
        ],
        "best": {"job_id": "ftjob-t1", "parameters": {LR: 0.05, ETA: 0.1}, "objective": 0.859375, "seeds": [],
                 "test_accuracy": None},
        "fine_tuned_model": None,
    }
    done = {
        "object": "fine_tuning.sweep", "id": "ftsweep-done", "status": "succeeded", "created_at": 1733120000,
        "finished_at": 1733120100, "owner": "alice", "job": tiny_job(), "search": {"random": 3, "seed": 5},
        "parameters": {"data.x": [1, 2], "architecture.x": {"log_uniform": [0.001, 0.1]}},
        "objective": {"metric": "valid_loss", "goal": "minimize"}, "max_parallel": 1, "seeds": [1, 2],
        "test_file": "fashion-mnist-test",
        "trials": [
            _trial(0, "ftjob-d0", {"data.x": 1, "architecture.x": 0.01}, "succeeded", 0.9, seed=1),
            _trial(1, "ftjob-d1", {"data.x": 1, "architecture.x": 0.01}, "succeeded", 0.7, seed=2),
            _trial(2, "ftjob-d2", {"data.x": 2, "architecture.x": 0.05}, "succeeded", 0.4, seed=1),
            _trial(3, "ftjob-d3", {"data.x": 2, "architecture.x": 0.05}, "failed", 0.1, seed=2),
        ],
        "best": {"job_id": "ftjob-d0", "parameters": {"data.x": 1, "architecture.x": 0.01}, "objective": 0.8,
                 "seeds": [1, 2], "test_accuracy": 0.8203},
        "fine_tuned_model": "ft:resnet20:sweep:ftjob-d0",
    }
    return [running, done]


def stub_events(sweep_id, final_status):
    evs = [
        ("trial_started", "trial 0 started", {"index": 0, "job_id": "ftjob-t0", "parameters": {LR: 0.01}, "seed": None}),
        ("trial_started", None, {"index": 1, "job_id": "ftjob-t1", "parameters": {LR: 0.05}, "seed": None}),
        ("trial_finished", None, {"index": 0, "job_id": "ftjob-t0", "status": "succeeded", "objective": 0.8125}),
        ("new_best", None, {"index": 0, "job_id": "ftjob-t0", "parameters": {LR: 0.01}, "objective": 0.8125}),
        ("trial_finished", "trial 1 succeeded", {"index": 1, "job_id": "ftjob-t1", "status": "succeeded", "objective": 0.86}),
        ("status", f"Sweep {final_status}", {"status": final_status}),
    ]
    return [{"object": "fine_tuning.sweep.event", "id": f"ftevent-{i + 1}", "created_at": 1733130000 + i,
             "level": "info", "message": m, "type": t, "data": d} for i, (t, m, d) in enumerate(evs)]


class StubAPI(http.server.BaseHTTPRequestHandler):
    """GET/POST /v1/fine_tuning/sweeps... from self.server.sweeps; records requests in server.seen."""
    protocol_version = "HTTP/1.0"  # the stream ends when the connection closes

    def log_message(self, *a):
        pass

    def reply(self, status, obj):
        raw = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def error(self, status, msg, param=None, code="invalid_value"):
        self.reply(status, {"error": {"message": msg, "type": "invalid_request_error", "param": param, "code": code}})

    def find(self, sid):
        return next((s for s in self.server.sweeps if s["id"] == sid), None)

    def do_GET(self):
        srv = self.server
        path, _, query = self.path.partition("?")
        srv.seen.append(("GET", self.path, dict(self.headers)))
        parts = path.strip("/").split("/")
        if parts[:3] != ["v1", "fine_tuning", "sweeps"]:
            return self.error(404, "no such route", code="not_found")
        if len(parts) == 3:
            return self.reply(200, {"object": "list", "data": srv.sweeps, "has_more": False})
        s = self.find(parts[3])
        if not s:
            return self.error(404, f"no sweep {parts[3]}", code="not_found")
        if len(parts) == 4:
            return self.reply(200, s)
        if parts[4] == "events":
            evs = stub_events(s["id"], "succeeded" if s["id"] != "ftsweep-failing" else "failed")
            if "text/event-stream" not in self.headers.get("Accept", ""):
                return self.reply(200, {"object": "list", "data": evs, "has_more": False})
            lei = self.headers.get("Last-Event-ID")
            start = int(lei.split("-")[-1]) if lei else 0
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b": hello\n\n")
            for e in evs[start:]:
                n = int(e["id"].split("-")[-1])
                self.wfile.write(f"id: {e['id']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n".encode())
                self.wfile.flush()
                if srv.drop_after and n == srv.drop_after and not lei:
                    self.wfile.write(b"id: ftevent-99\nevent: trial_started\ndata: {\"half")  # cut mid-event
                    return
            self.wfile.write(f"event: end\ndata: {json.dumps({'sweep_id': s['id']})}\n\n".encode())
            return
        return self.error(404, "no such route", code="not_found")

    def do_POST(self):
        srv = self.server
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"null")
        srv.seen.append(("POST", self.path, body))
        parts = self.path.strip("/").split("/")
        if parts == ["v1", "fine_tuning", "sweeps"]:
            for k, vals in body["parameters"].items():
                for i, v in enumerate(vals):
                    if isinstance(v, str):
                        return self.error(400, f"{k} must be a number", param=f"parameters.{k}[{i}]")
            s = dict(srv.sweeps[0], id="ftsweep-new", status="queued")
            return self.reply(200, s)
        if len(parts) == 5 and parts[4] == "cancel":
            s = self.find(parts[3])
            if not s:
                return self.error(404, f"no sweep {parts[3]}", code="not_found")
            return self.reply(200, dict(s, status="cancelled"))
        return self.error(404, "no such route", code="not_found")


class SweepStubTest(CoretuneMixin, unittest.TestCase):
    """The client's rendering, streaming and error mapping against a stub of the contract."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="coretune-sweep-")
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubAPI)
        self.srv.sweeps = stub_sweeps()
        failing = dict(stub_sweeps()[1], id="ftsweep-failing", status="failed", best=None, fine_tuned_model=None)
        self.srv.sweeps.append(failing)
        self.srv.seen = []
        self.srv.drop_after = 0
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def tearDown(self):
        self.srv.shutdown()
        self.srv.server_close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_show_running(self):
        out, _ = self.ct("sweep", "show", "ftsweep-running")
        f = facts(out)
        self.assertEqual(f["id"], "ftsweep-running")
        self.assertEqual(f["status"], "running")
        self.assertEqual(f["objective"], "valid_accuracy (maximize)")
        self.assertEqual(f["search"], "grid")
        self.assertEqual(f["parameters"], "learning_rate=[0.01,0.05] eta=[0.1,1]")
        self.assertEqual(f["trials"], "4 (2 succeeded, 1 running, 1 pending)")
        self.assertTrue(f["best"].startswith("ftjob-t1  learning_rate=0.05 eta=0.1  valid_accuracy=0.8594"), f["best"])
        rows = leaderboard(out)
        self.assertEqual(list(rows[0]), ["RANK", "TRIAL", "JOB", "PARAMETERS", "SEED", "STATUS", "OBJECTIVE", "EPOCH"])
        self.assertEqual([(r["RANK"], r["TRIAL"], r["JOB"]) for r in rows],
                         [("1*", "1", "ftjob-t1"), ("2", "0", "ftjob-t0"), ("-", "2", "ftjob-t2"), ("-", "3", "-")])
        self.assertEqual(rows[0]["PARAMETERS"], "learning_rate=0.05 eta=0.1")
        self.assertEqual((rows[0]["OBJECTIVE"], rows[0]["EPOCH"], rows[0]["SEED"]), ("0.8594", "1", "-"))
        self.assertEqual((rows[2]["STATUS"], rows[2]["OBJECTIVE"]), ("running", "0.5000"))
        self.assertEqual((rows[3]["STATUS"], rows[3]["OBJECTIVE"]), ("pending", "-"))
        self.assertEqual(self.ctj("sweep", "show", "ftsweep-running"), self.srv.sweeps[0])

    def test_show_minimize_seeds_and_clashing_names(self):
        out, _ = self.ct("sweep", "show", "ftsweep-done")
        f = facts(out)
        self.assertEqual(f["search"], "random, 3 trials, seed 5")
        self.assertEqual(f["objective"], "valid_loss (minimize)")
        self.assertEqual(f["seeds"], "[1,2]")
        self.assertEqual(f["test_file"], "fashion-mnist-test")
        self.assertEqual(f["test_accuracy"], "0.8203")
        self.assertEqual(f["fine_tuned_model"], "ft:resnet20:sweep:ftjob-d0")
        self.assertIn("(mean over seeds [1,2])", f["best"])
        # two parameters end in ".x": their names keep one more component
        self.assertEqual(f["parameters"], 'data.x=[1,2] architecture.x=log_uniform(0.001,0.1)')
        rows = leaderboard(out)
        # minimize: lowest first; the failed trial is not ranked; both seeds of the best parameters marked
        self.assertEqual([(r["RANK"], r["JOB"], r["SEED"]) for r in rows],
                         [("1", "ftjob-d2", "1"), ("2*", "ftjob-d1", "2"), ("3*", "ftjob-d0", "1"), ("-", "ftjob-d3", "2")])
        self.assertEqual(rows[0]["PARAMETERS"], "data.x=2 architecture.x=0.05")

    def test_list(self):
        out, _ = self.ct("sweep", "list")
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "STATUS", "MODEL", "OBJECTIVE", "TRIALS", "BEST", "CREATED"])
        self.assertEqual(lines[1].split()[:7], ["ftsweep-running", "running", "resnet20", "max", "valid_accuracy", "2/4", "0.8594"])
        self.assertEqual(lines[2].split()[:7], ["ftsweep-done", "succeeded", "resnet20", "min", "valid_loss", "4/4", "0.8000"])
        self.assertEqual([s["id"] for s in self.ctj("sweep", "list")["data"]], ["ftsweep-running", "ftsweep-done", "ftsweep-failing"])
        self.assertEqual(len(self.ctj("sweep", "list", "--all")["data"]), 3)
        self.ct("sweep", "list", "--limit", "7")
        self.assertIn(("GET", "/v1/fine_tuning/sweeps?limit=7"), [(m, p) for m, p, _ in self.srv.seen])

    def test_logs_and_follow(self):
        out, _ = self.ct("sweep", "logs", "ftsweep-running")
        lines = out.splitlines()
        self.assertEqual(len(lines), 6)
        self.assertIn("trial_started", lines[0])
        self.assertTrue(lines[0].endswith("trial 0 started"), lines[0])     # the daemon's message
        self.assertIn("trial 1 started: ftjob-t1 learning_rate=0.05", lines[1])  # made from data when absent
        self.assertIn("new best: trial 0 learning_rate=0.01 objective 0.8125", lines[3])
        self.assertEqual([e["id"] for e in self.ctj("sweep", "logs", "ftsweep-running")["data"]],
                         [f"ftevent-{i}" for i in range(1, 7)])
        # follow: every event, then the leaderboard and a closing line; exit by the final status
        out, _ = self.ct("sweep", "logs", "-f", "ftsweep-done")
        self.assertEqual(sum("trial_finished" in line for line in out.splitlines()), 2)
        self.assertEqual(len(leaderboard(out)), 4)
        self.assertTrue(out.splitlines()[-1].startswith("ftsweep-done succeeded: best ftjob-d0"), out)
        self.assertIn("ft:resnet20:sweep:ftjob-d0", out.splitlines()[-1])
        stream = [h for m, p, h in self.srv.seen if "/events" in p and m == "GET"][-1]
        self.assertIn("text/event-stream", stream.get("Accept", ""))
        out, err = self.ct("sweep", "logs", "-f", "ftsweep-failing", want=1)
        self.assertIn("ftsweep-failing failed", err)
        # --json: one event object per line, nothing else
        out, _ = self.ct("sweep", "logs", "-f", "ftsweep-done", "--json")
        self.assertEqual([json.loads(line)["id"] for line in out.splitlines()], [f"ftevent-{i}" for i in range(1, 7)])

    def test_follow_reconnects(self):
        self.srv.drop_after = 3  # the first stream breaks after ftevent-3, inside an event
        out, err = self.ct("sweep", "logs", "-f", "ftsweep-done", "--json")
        self.assertEqual([json.loads(line)["id"] for line in out.splitlines()], [f"ftevent-{i}" for i in range(1, 7)])
        streams = [h for m, p, h in self.srv.seen if "/events" in p]
        self.assertEqual(len(streams), 2, streams)
        self.assertEqual(streams[1].get("Last-Event-ID"), "ftevent-3")

    def test_submit_and_cancel(self):
        spec = self.write_spec("s.json", {"job": tiny_job(), "parameters": {LR: [0.01, 0.05]}, "search": "grid",
                                          "objective": {"metric": "valid_accuracy", "goal": "maximize"}})
        out, _ = self.ct("sweep", "submit", spec, "--suffix", "sw", "--max-parallel", "3")
        self.assertEqual(out.split()[:2], ["ftsweep-new", "queued"])
        self.assertIn("(4 trials)", out)
        sent = [b for m, p, b in self.srv.seen if m == "POST"][-1]
        self.assertEqual((sent["suffix"], sent["max_parallel"], sent["parameters"]), ("sw", 3, {LR: [0.01, 0.05]}))
        self.assertEqual(self.ctj("sweep", "submit", spec)["id"], "ftsweep-new")
        out, _ = self.ct("sweep", "submit", "-", stdin=json.dumps({"job": {}, "parameters": {LR: [1]}}))
        self.assertTrue(out.startswith("ftsweep-new"))
        # --follow goes on into the stream of the new sweep: here a 404 (the stub has no ftsweep-new)
        self.ct("sweep", "submit", spec, "--follow", want=4)
        bad = self.write_spec("b.json", {"job": tiny_job(), "parameters": {LR: [0.01, "fast"]}})
        _, err = self.ct("sweep", "submit", bad, want=2)
        self.assertIn(f"param parameters.{LR}[1]", err)
        out, _ = self.ct("sweep", "cancel", "ftsweep-running", "ftsweep-done")
        self.assertEqual(out.splitlines(), ["ftsweep-running  cancelled", "ftsweep-done  cancelled"])
        self.assertEqual(self.ctj("sweep", "cancel", "ftsweep-done")["status"], "cancelled")
        self.ct("sweep", "cancel", "ftsweep-nope", want=4)
        self.ct("sweep", "show", "ftsweep-nope", want=4)
        self.ct("sweep", "logs", "ftsweep-nope", want=4)
        self.ct("sweep", "logs", "-f", "ftsweep-nope", want=4)


# ---------------------------------------------------------------- the real daemon

class SweepCLITest(CoretuneMixin, unittest.TestCase):
    """Against the real daemon's sweep API (POST/GET /v1/fine_tuning/sweeps...)."""

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--workers", "2", "--threads-per-job", "1").start()
        cls.tmp = tempfile.mkdtemp(prefix="coretune-sweep-e2e-")
        cls.url = f"http://127.0.0.1:{cls.d.port}"
        cls.token = cls.d.token

    @classmethod
    def tearDownClass(cls):
        rc, _ = cls.d.stop(timeout=60)
        log = cls.d.read_log()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc == 0, log

    def sweep_spec(self, epochs=2, lrs=(0.01, 0.05), **extra):
        spec = {"job": tiny_job(epochs=epochs), "parameters": {LR: list(lrs)}, "search": "grid",
                "objective": {"metric": "valid_accuracy", "goal": "maximize"}, "max_parallel": 2}
        spec.update(extra)
        return spec

    def test_grid_sweep_follow_and_show(self):
        spec = self.write_spec("grid.json", self.sweep_spec(suffix="grid"))
        out, _ = self.ct("sweep", "submit", spec, "--follow", timeout=600)
        lines = out.splitlines()
        sid = lines[0].split()[0]
        self.assertTrue(sid.startswith("ftsweep-"), out)
        self.assertIn("(2 trials)", lines[0])
        self.assertEqual(sum(" trial_started " in line for line in lines), 2, out)
        self.assertEqual(sum(" trial_finished " in line for line in lines), 2, out)
        self.assertTrue(any(" new_best " in line for line in lines), out)
        self.assertTrue(lines[-1].startswith(f"{sid} succeeded: best ftjob-"), out)
        self.assertEqual(len(leaderboard(out)), 2)

        sweep = self.ctj("sweep", "show", sid)
        self.assertEqual((sweep["object"], sweep["id"], sweep["status"]), ("fine_tuning.sweep", sid, "succeeded"))
        self.assertEqual(len(sweep["trials"]), 2)
        self.assertEqual(sorted(t["parameters"][LR] for t in sweep["trials"]), [0.01, 0.05])
        best = sweep["best"]
        self.assertEqual(best["objective"], max(t["objective"] for t in sweep["trials"]))

        out, _ = self.ct("sweep", "show", sid)
        f = facts(out)
        self.assertEqual((f["status"], f["objective"], f["search"]), ("succeeded", "valid_accuracy (maximize)", "grid"))
        self.assertEqual(f["trials"], "2 (2 succeeded)")
        rows = leaderboard(out)
        self.assertEqual([r["RANK"].rstrip("*") for r in rows], ["1", "2"])
        starred = [r for r in rows if r["RANK"].endswith("*")]
        self.assertEqual(len(starred), 1, out)
        self.assertEqual(starred[0]["JOB"], best["job_id"])
        self.assertEqual(rows[0]["OBJECTIVE"], f"{best['objective']:.4f}")
        self.assertGreaterEqual(float(rows[0]["OBJECTIVE"]), float(rows[1]["OBJECTIVE"]))
        self.assertEqual({r["PARAMETERS"] for r in rows}, {"learning_rate=0.01", "learning_rate=0.05"})
        self.assertEqual({r["STATUS"] for r in rows}, {"succeeded"})

        # trials are ordinary jobs, tagged with their sweep
        job = self.ctj("show", best["job_id"])
        self.assertEqual(job["metadata"]["sweep_id"], sid)
        self.assertEqual(job["status"], "succeeded")
        met = self.ctj("metrics", best["job_id"], "--names", "valid_accuracy")
        self.assertEqual(len(met["series"]["valid_accuracy"]["values"]), 2)

        out, _ = self.ct("sweep", "list")
        self.assertIn(sid, out)
        self.assertIn(sid, [s["id"] for s in self.ctj("sweep", "list", "--all")["data"]])
        out, _ = self.ct("sweep", "logs", sid)
        self.assertIn("trial_finished", out)
        events = self.ctj("sweep", "logs", sid)["data"]
        self.assertEqual({e["object"] for e in events}, {"fine_tuning.sweep.event"})
        self.assertTrue({"trial_started", "trial_finished", "new_best"} <= {e["type"] for e in events})
        # following a finished sweep replays it and ends at once
        out, _ = self.ct("sweep", "logs", "-f", sid, "--json")
        self.assertEqual([json.loads(line)["id"] for line in out.splitlines()], [e["id"] for e in events])

    def test_cancel(self):
        spec = self.write_spec("long.json", self.sweep_spec(epochs=40, lrs=(0.01, 0.02, 0.03), max_parallel=1))
        out, _ = self.ct("sweep", "submit", spec)
        sid = out.split()[0]
        deadline = time.time() + 120
        while time.time() < deadline:
            sweep = self.ctj("sweep", "show", sid)
            if any(t["status"] == "running" for t in sweep["trials"]):
                break
            time.sleep(0.2)
        else:
            self.fail(f"no trial of {sid} started: {sweep}")
        out, _ = self.ct("sweep", "cancel", sid)
        self.assertEqual(out.split(), [sid, "cancelled"])
        _, err = self.ct("sweep", "logs", "-f", sid, want=1, timeout=120)
        self.assertIn(f"{sid} cancelled", err)
        sweep = self.ctj("sweep", "show", sid)
        self.assertEqual(sweep["status"], "cancelled")
        for t in sweep["trials"]:
            if t["job_id"]:
                deadline = time.time() + 60
                while self.ctj("show", t["job_id"])["status"] != "cancelled" and time.time() < deadline:
                    time.sleep(0.2)
                self.assertEqual(self.ctj("show", t["job_id"])["status"], "cancelled", t)
            self.assertIn(t["status"], ("cancelled", "pending"), t)

    def test_errors(self):
        self.ct("sweep", "show", "ftsweep-doesnotexist", want=4)
        self.ct("sweep", "cancel", "ftsweep-doesnotexist", want=4)
        self.ct("sweep", "logs", "-f", "ftsweep-doesnotexist", want=4)
        bad = self.write_spec("bad.json", self.sweep_spec(lrs=(0.01, "fast")))
        _, err = self.ct("sweep", "submit", bad, want=2)       # the server's 400 names the value
        self.assertIn(f"parameters.{LR}[1]", err)


if __name__ == "__main__":
    unittest.main()
