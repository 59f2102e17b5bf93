"""The private one-node Slurm cluster of tests/e2e/slurm.py, which the Slurm executor's tests run jobs on:
it starts (munged, slurmctld, slurmd as root, on free ports, all in one temporary directory) and runs
real batch jobs: one with the options the executor submits with (--parsable, --job-name, --output,
--requeue, --signal=B:USR1@60, --comment) completes and is seen through `squeue -t all`; `scancel
--signal=USR1 --batch` reaches the batch script's trap; `scontrol requeue` of a running job runs it again
(SLURM_RESTART_COUNT=1, Restarts=1); a running job survives a 10 s controller outage, during which
squeue fails within MessageTimeout, and completes after. One cluster serves the whole file; stopping it
leaves no daemon and no job process. Skips (saying why) only when not root; a cluster that does not
start fails the tests with the daemons' log tails."""
import os
import time
import unittest

import slurm

CLUSTER = None
FMT = "%i|%j|%T|%r|%N|%S"


def setUpModule():
    global CLUSTER
    why = slurm.problem()
    if why:
        raise unittest.SkipTest(why)
    CLUSTER = slurm.Cluster().start()


def tearDownModule():
    if CLUSTER is not None:
        CLUSTER.stop()
        leftovers = CLUSTER.job_pids()
        assert not leftovers, f"job processes left after stop: {leftovers}"


class ClusterTest(unittest.TestCase):
    def setUp(self):
        self.c = CLUSTER
        self.dir = self.c.path("jobs", self.id().rsplit(".", 1)[-1])
        os.makedirs(self.dir)

    def script(self, name, body):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("#!/bin/bash\n" + body)
        return path

    def wait_file(self, path, timeout=30):
        deadline = time.time() + timeout
        while not os.path.exists(path):
            if time.time() > deadline:
                self.fail(f"{path} not written after {timeout} s\n{self.c.log_tail()}")
            time.sleep(0.05)

    def test_batch_job_completes(self):
        out = os.path.join(self.dir, "out")
        s = self.script("smoke.sh", f'date +%s.%N > {self.dir}/first\necho "hello from $SLURM_JOB_ID on '
                                    f'$SLURMD_NODENAME"\n')
        t0 = time.time()
        job = self.c.sbatch("--job-name=ct-smoke", f"--output={out}", "--requeue", "--signal=B:USR1@60",
                            "--comment=owner=alice", s)
        self.assertRegex(job, r"^[0-9]+$")
        rows, deadline = [], time.time() + 60
        while not rows or rows[-1].split("|")[2] != "COMPLETED":
            self.assertLess(time.time(), deadline, f"{rows}\n{self.c.log_tail()}")
            row = self.c.squeue("-h", "-t", "all", "-j", job, "-o", FMT).strip()
            if not rows or rows[-1] != row:
                rows.append(row)
            time.sleep(0.05)
        self.assertLess(time.time() - t0, 30, rows)
        jid, name, state, reason, node, start = rows[-1].split("|")
        self.assertEqual((jid, name, reason, node), (job, "ct-smoke", "None", self.c.host), rows)
        self.assertRegex(start, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
        self.assertLessEqual({r.split("|")[2] for r in rows}, {"PENDING", "RUNNING", "COMPLETING", "COMPLETED"}, rows)
        with open(out) as f:
            self.assertEqual(f.read(), f"hello from {job} on {self.c.host}\n")
        info = self.c.scontrol_job(job)
        self.assertEqual((info["JobState"], info["ExitCode"], info["Comment"], info["Requeue"], info["UserId"]),
                         ("COMPLETED", "0:0", "owner=alice", "1", "root(0)"), info)
        # the completed job stays listed (MinJobAge=300) and the one-letter state is CD
        self.assertEqual(self.c.squeue("-h", "-t", "all", "-j", job, "-o", "%t|%k").strip(), f"CD|owner=alice")

    def test_signal_reaches_batch_trap(self):
        marker = os.path.join(self.dir, "marker")
        s = self.script("trap.sh", f"trap 'echo USR1 > {marker}; exit 0' USR1\n"
                                   f"touch {self.dir}/started\nsleep 600 &\nwait\n")
        job = self.c.sbatch(f"--output={self.dir}/out", s)
        self.c.wait_state(job, "RUNNING")
        self.wait_file(os.path.join(self.dir, "started"))
        self.c.run("scancel", "--signal=USR1", "--batch", job)
        state, seen = self.c.wait_state(job, ("COMPLETED", "FAILED", "CANCELLED"), timeout=30)
        self.assertEqual(state, "COMPLETED", seen)
        with open(marker) as f:
            self.assertEqual(f.read(), "USR1\n")
        self.assertEqual(self.c.scontrol_job(job)["ExitCode"], "0:0")

    def test_requeue_runs_again(self):
        starts = os.path.join(self.dir, "starts")
        s = self.script("requeue.sh", f'echo "run restart=${{SLURM_RESTART_COUNT:-unset}}" >> {starts}\n'
                                      'if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then sleep 1; exit 0; fi\nsleep 600\n')
        job = self.c.sbatch("--requeue", f"--output={self.dir}/out", s)
        self.c.wait_state(job, "RUNNING")
        self.wait_file(starts)
        t0 = time.time()
        self.c.run("scontrol", "requeue", job)
        state, seen = self.c.wait_state(job, ("COMPLETED", "FAILED", "CANCELLED"), timeout=60)
        self.assertEqual(state, "COMPLETED", seen)
        states = [st for _, st in seen]
        # back to PENDING (Reason=BeginTime for cred_expire+1 s), then RUNNING once more
        self.assertIn("PENDING", states, seen)
        self.assertIn("RUNNING", states[states.index("PENDING"):], seen)
        self.assertLess(time.time() - t0, 30, seen)
        with open(starts) as f:
            self.assertEqual(f.read(), "run restart=unset\nrun restart=1\n")
        info = self.c.scontrol_job(job)
        self.assertEqual(info["Restarts"], "1", info)

    def test_survives_controller_restart(self):
        s = self.script("long.sh", f"touch {self.dir}/started\nsleep 14\ntouch {self.dir}/done\n")
        job = self.c.sbatch(f"--output={self.dir}/out", s)
        self.c.wait_state(job, "RUNNING")
        self.wait_file(os.path.join(self.dir, "started"))
        t0 = time.time()
        self.assertEqual(self.c.stop_controller(), 0, self.c.log_tail())
        try:
            t1 = time.time()
            p = self.c.run_proc("squeue", "-h", "-o", FMT)
            took = time.time() - t1
            self.assertNotEqual(p.returncode, 0, p.stdout)
            self.assertIn("Unable to contact slurm controller", p.stderr)
            self.assertLess(took, 10, "squeue took this long to fail with the controller down (MessageTimeout=5)")
            time.sleep(max(0.0, 10 - (time.time() - t0)))
            self.assertFalse(os.path.exists(os.path.join(self.dir, "done")))
        finally:
            self.c.start_controller()
        self.assertIn(self.c.job_state(job), ("RUNNING", "COMPLETING", "COMPLETED"))
        state, seen = self.c.wait_state(job, ("COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL"), timeout=40)
        self.assertEqual(state, "COMPLETED", seen)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "done")))


if __name__ == "__main__":
    unittest.main()
