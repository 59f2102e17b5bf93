"""tests/soak/soak.py — the reliability battery's driver (`make soak`; `make soak-quick` in `make test`).
Runs the real bin/coretuned on one temporary data dir and kill -9s it at random moments, restarting it
each time on the same dir, while a client thread submits tiny jobs (half with an Idempotency-Key, which
it resubmits, also after a kill left the answer unknown), cancels, pauses, resumes, uploads CIFAR-10
batches and reads event pages, and one thread per job follows its SSE stream, reconnecting with
Last-Event-ID after every kill. Then a clean restart, a wait for the queue to drain, a clean stop, one
more start to read back everything committed, and check.py judges what the client was told against
it. Prints the figures; exits 1 on any failure, keeping the data dir and the record (soak-record.json)
for a look; 0 removes them. Standard library only, like tests/e2e (whose harness it uses)."""
import argparse
import http.client
import json
import os
import random
import signal
import shutil
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import SSE, Daemon, integrity_check, tiny_job  # noqa: E402
from test_files import cifar10_batch, multipart  # noqa: E402
import check  # noqa: E402

JOBS = "/v1/fine_tuning/jobs"
# Lower-level failures of a request to a daemon that is being killed: the answer is unknown.
GONE = (OSError, http.client.HTTPException, ValueError)
MAX_ACTIVE = 3  # jobs not yet final (paused included) the client keeps at once, so the queue drains


class Soak:
    def __init__(self, args):
        self.args = args
        self.rnd = random.Random(args.seed)             # the client's choices
        self.krnd = random.Random(args.seed + 1)        # the kill windows (another thread)
        self.dir = tempfile.mkdtemp(prefix="coretuned-soak-")
        # 1 worker: jobs queue behind each other; a short preempt grace lets priorities preempt.
        self.d = Daemon("--workers", "1", "--threads-per-job", "1", "--checkpoint-seconds", "1",
                        "--preempt-grace", "1", "--sse-heartbeat", "1", "--max-upload-mb", "1",
                        "--socket", "none", data_dir=self.dir)
        self.up = threading.Event()      # set while a daemon is serving
        self.acting = True               # the client thread keeps going
        self.following = True            # the SSE followers keep going
        self.rec = {"kills": 0, "jobs": [], "keys": {}, "cancels": [], "files": [], "chains": [], "listings": [],
                    "exits": [], "integrity": None, "final": None}
        self.status = {}                 # job id -> last status the client was told
        self.bodies = {}                 # Idempotency-Key -> body (resubmitted as it was)
        self.pending = []                # keys whose POST got no answer: the client retries them
        self.followers = {}              # job id -> thread
        self.chain_of = {}               # job id -> its chain in rec
        self.actions = {}                # what the client did: counts by outcome
        self.lock = threading.Lock()

    # ---- the daemon ----

    def start(self):
        self.d.start(timeout=60)
        self.up.set()

    def kill(self):
        self.up.clear()
        self.d.stop(sig=signal.SIGKILL)
        self.rec["kills"] += 1

    def clean_stop(self):
        self.up.clear()
        rc, _ = self.d.stop(timeout=60)
        self.rec["exits"].append(rc)

    def req(self, method, path, body=None, headers=None):
        """(status, body) or (None, None) when the daemon died under the request."""
        try:
            st, b, _ = self.d.request(method, path, body, headers=headers, timeout=10)
            return st, b
        except GONE:
            return None, None

    def count(self, what, st):
        k = f"{what} {st if st is not None else 'no answer'}"
        with self.lock:
            self.actions[k] = self.actions.get(k, 0) + 1

    # ---- the client ----

    def job_body(self):
        r = self.rnd
        if self.rec["files"] and r.random() < 0.2:  # train on an upload now and then
            b = tiny_job(epochs=1, training_file=r.choice(self.rec["files"]))
            b["architecture"] = {"in_channels": 3, "image_size": 32}
            b["data"] = {"valid_fraction": 0.25}
            b["method"]["core_tuning"]["hyperparameters"]["batch_size"] = 10
        else:
            b = tiny_job(epochs=r.choice((1, 2)), data={"train_limit": 64, "valid_limit": 32, "augment": False})
        b["seed"] = r.randrange(1000)
        b["priority"] = r.choice((4, 5, 6))
        b["metadata"] = {"soak": uuid.uuid4().hex[:12]}
        return b

    def acked(self, job, key):
        self.rec["jobs"].append({"id": job["id"], "key": key})
        self.status[job["id"]] = job["status"]
        if job["id"] not in self.followers:
            t = threading.Thread(target=self.follow, args=(job["id"],), daemon=True)
            self.followers[job["id"]] = t
            t.start()

    def submit(self, key=None):
        """A new job (half of them with a key), or key's body again (a resubmit, a retry)."""
        what = "submit" if key is None else "retry" if key in self.pending else "resubmit"
        body = self.bodies[key] if key else self.job_body()
        if key is None and self.rnd.random() < 0.5:
            key = uuid.uuid4().hex
            self.bodies[key] = body
            self.rec["keys"][key] = []
        st, j = self.req("POST", JOBS, body, headers={"Idempotency-Key": key} if key else None)
        self.count(what, st)
        if st == 200:
            if key:
                self.rec["keys"][key].append(j["id"])
                if key in self.pending:
                    self.pending.remove(key)
            self.acked(j, key)
        elif st is None and key and key not in self.pending:
            self.pending.append(key)

    def act_on(self, verb, jid):
        st, j = self.req("POST", f"{JOBS}/{jid}/{verb}")
        self.count(verb, st)
        if st == 200:
            self.status[jid] = j["status"]
            if verb == "cancel":
                self.rec["cancels"].append(jid)

    def upload(self):
        body, hdrs = multipart({"purpose": "fine-tune"}, "data_batch_1.bin", cifar10_batch(2))
        st, f = self.req("POST", "/v1/files", body, headers=hdrs)
        self.count("upload", st)
        if st == 200:
            self.rec["files"].append(f["id"])

    def listing(self, jid):
        """GET .../events page by page (small pages, so a listing spans several requests)."""
        ls = {"job": jid, "events": []}
        self.rec["listings"].append(ls)
        after, limit = None, self.rnd.randint(1, 7)
        while True:
            q = f"{JOBS}/{jid}/events?limit={limit}" + (f"&after={after}" if after else "")
            st, page = self.req("GET", q)
            if st != 200:
                self.count("events page", st)
                return
            ls["events"] += page["data"]
            if not page["has_more"] or not page["data"]:
                self.count("events page", st)
                return
            after = page["data"][-1]["id"]

    def refresh(self):
        for jid in self.active():
            st, j = self.req("GET", f"{JOBS}/{jid}")
            if st == 200:
                self.status[jid] = j["status"]

    def active(self):
        return [j for j, s in self.status.items() if s not in check.FINAL]

    def client(self):
        r = self.rnd
        while self.acting:
            if not self.up.wait(0.1):
                continue
            act = self.active()
            paused = [j for j in act if self.status[j] == "paused"]
            keys = [k for k, ids in self.rec["keys"].items() if ids]
            choices = [("refresh", 1.0), ("listing", 1.0), ("upload", 0.3)]
            if len(act) < MAX_ACTIVE:
                choices.append(("submit", 3.0))
            if self.pending:
                choices.append(("retry", 2.0))
            if keys:
                choices.append(("resubmit", 0.7))
            if act:
                choices += [("cancel", 0.05 if len(act) < MAX_ACTIVE else 0.15), ("pause", 0.3)]
            if paused:
                choices.append(("resume", 1.5))
            what = r.choices([c for c, _ in choices], [w for _, w in choices])[0]
            if what == "submit":
                self.submit()
            elif what == "retry":
                self.submit(self.pending[0])
            elif what == "resubmit":
                self.submit(r.choice(keys))
            elif what in ("cancel", "pause"):
                self.act_on(what, r.choice(act))
            elif what == "resume":
                self.act_on("resume", r.choice(paused))
            elif what == "upload":
                self.upload()
            elif what == "listing":
                pool = act or list(self.status)
                if pool:
                    self.listing(r.choice(pool))
            else:
                self.refresh()
            time.sleep(r.uniform(0, 0.06))

    # ---- SSE followers ----

    def follow(self, jid):
        chain = {"job": jid, "sessions": []}
        self.chain_of[jid] = chain
        self.rec["chains"].append(chain)
        last = None
        while self.following:
            if not self.up.wait(0.1):
                continue
            sess = {"lei": last, "status": None, "events": [], "end": False}
            try:
                s = SSE(self.d, f"{JOBS}/{jid}/events", last_event_id=last, timeout=10)
            except GONE:
                time.sleep(0.02)
                continue
            sess["status"] = s.resp.status
            chain["sessions"].append(sess)
            try:
                if s.resp.status != 200:
                    time.sleep(0.1)
                    continue
                ev = {}
                while self.following:
                    line = s.resp.readline()
                    if not line:
                        break
                    line = line.decode().rstrip("\n")
                    if line == "":
                        if ev.get("event") == "end":
                            sess["end"] = True
                            return
                        if "data" in ev:
                            sess["events"].append(json.loads(ev["data"]))
                            last = ev.get("id")
                        ev = {}
                    elif not line.startswith(":"):
                        k, _, v = line.partition(":")
                        ev[k] = v[1:] if v.startswith(" ") else v
            except GONE:
                pass
            finally:
                s.close()

    # ---- the run ----

    def window(self):
        """How long the daemon lives before the next kill: mostly short, now and then long enough for
        jobs to finish an epoch or two."""
        k = self.krnd
        r = k.random()
        if r < 0.15:
            return k.uniform(0, 0.05)           # right after it became healthy: recovery paths
        if r < 0.75:
            return k.uniform(0.05, 0.8)
        if r < 0.95 or self.args.quick:
            return k.uniform(0.8, 2.5)
        return k.uniform(2.5, 5.0)

    def drain(self, timeout):
        """Wait until no acknowledged job is queued or running; returns the last statuses seen."""
        deadline = time.time() + timeout
        while True:
            sts = {}
            for jid in dict.fromkeys(j["id"] for j in self.rec["jobs"]):
                st, j = self.req("GET", f"{JOBS}/{jid}")
                sts[jid] = j["status"] if st == 200 else None
            if all(s not in ("queued", "running") for s in sts.values()) or time.time() > deadline:
                return sts
            time.sleep(0.2)

    def all_events(self, jid):
        out, after = [], None
        while True:
            st, page = self.req("GET", f"{JOBS}/{jid}/events?limit=100" + (f"&after={after}" if after else ""))
            if st != 200:
                return out
            out += page["data"]
            if not page["has_more"]:
                return out
            after = page["data"][-1]["id"]

    def run(self):
        a = self.args
        t0 = time.time()
        self.start()
        client = threading.Thread(target=self.client, daemon=True)
        client.start()
        capped = False
        while self.rec["kills"] < a.kills:
            if time.time() - t0 > a.max_seconds:
                capped = True
                break
            time.sleep(self.window())
            self.kill()
            if self.rec["kills"] % 100 == 0:
                print(f"soak: {self.rec['kills']} kills, {len(self.status)} jobs, {time.time() - t0:.0f} s",
                      flush=True)
            self.start()
        self.acting = False
        client.join(timeout=30)
        t_kill = time.time() - t0

        # The final clean restart: the daemon started after the last kill; let the queue drain.
        sts = self.drain(a.drain_seconds)
        stuck = [j for j, s in sts.items() if s == "running"]
        undrained = [j for j, s in sts.items() if s == "queued"]
        self.clean_stop()
        # One more clean start: everything below is what the database committed.
        self.start()
        final = {"jobs": {}, "files": {}, "history": {}, "stuck": stuck, "undrained": undrained}
        for jid in dict.fromkeys(j["id"] for j in self.rec["jobs"]):
            st, j = self.req("GET", f"{JOBS}/{jid}")
            final["jobs"][jid] = j["status"] if st == 200 else None
            final["history"][jid] = self.all_events(jid) if st == 200 else []
        for fid in dict.fromkeys(self.rec["files"]):
            final["files"][fid] = self.req("GET", f"/v1/files/{fid}")[0] == 200
        # The followers catch up: every chain reaches its job's last committed event (or its end).
        deadline = time.time() + 20
        while time.time() < deadline:
            behind = [c for c in self.rec["chains"] if not any(s["end"] for s in c["sessions"]) and
                      final["history"].get(c["job"]) and
                      not any(e["id"] == final["history"][c["job"]][-1]["id"] for s in c["sessions"] for e in s["events"])]
            if not behind:
                break
            time.sleep(0.2)
        self.following = False
        self.clean_stop()
        for t in self.followers.values():
            t.join(timeout=15)
        self.rec["final"] = final
        self.rec["integrity"] = integrity_check(self.dir)

        fig, findings = check.check(self.rec)
        path = os.path.join(self.dir, "soak-record.json")
        with open(path, "w") as f:
            json.dump(self.rec, f)
        extra = {"seconds": f"{time.time() - t0:.0f} (kill phase {t_kill:.0f})",
                 "cap": f"stopped at the {a.max_seconds:.0f} s cap before {a.kills} kills" if capped else "none",
                 "undrained": len(undrained), "uploads": len(set(self.rec["files"])),
                 "sse sessions": sum(len(c["sessions"]) for c in self.rec["chains"]),
                 "listings": len(self.rec["listings"]),
                 "final statuses": json.dumps(_tally(final["jobs"].values())),
                 "client": json.dumps(dict(sorted(self.actions.items())))}
        check.report(fig, findings, extra)
        if check.failed(fig):
            print(f"soak: kept {self.dir} (the daemon's log, the database, soak-record.json)")
            return 1
        shutil.rmtree(self.dir, ignore_errors=True)
        return 0


def _tally(values):
    out = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default="bin")
    p.add_argument("--kills", type=int, default=int(os.environ.get("SOAK_KILLS", "1000")))
    p.add_argument("--seed", type=int, default=None, help="the client's random choices (default: random)")
    p.add_argument("--quick", action="store_true", help="no windows over 2.5 s (make test)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop killing after this long (default 3 s a kill)")
    p.add_argument("--drain-seconds", type=float, default=120)
    a = p.parse_args()
    if a.seed is None:
        a.seed = random.randrange(1 << 30)
    if a.max_seconds is None:
        a.max_seconds = 3.0 * a.kills
    harness.BIN = a.bin
    print(f"soak: {a.kills} kills, seed {a.seed}", flush=True)
    s = Soak(a)
    try:
        return s.run()
    finally:
        s.acting = s.following = False
        if s.d.proc is not None:
            s.d.proc.kill()
            s.d.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
