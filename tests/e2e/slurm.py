"""tests/e2e/slurm.py — a real, private, one-node Slurm cluster for the end-to-end tests (stdlib only).

    with Cluster() as c:                      # or c = Cluster().start(); ...; c.stop()
        job = c.sbatch(f"--output={c.path('out')}", "--wrap", "true")     # sbatch --parsable: "1"
        state, seen = c.wait_state(job, "COMPLETED")
        print(c.squeue("-h", "-t", "all", "-o", "%i|%T"))                   # "1|COMPLETED"
        subprocess.Popen([...coretuned...], env=c.env())   # finds the cluster through SLURM_CONF

Everything lives in one temporary directory (tempfile.mkdtemp, /tmp/ct-slurm-*): a fresh munge key, a
munged with its own socket, slurm.conf, the controller's state, slurmd's spool, pid and log files. The
daemons (munged -F, slurmctld -D, slurmd -D) are children of this process (under `setpriv --pdeathsig
KILL`, so they die with it even when it is killed), running as root with SlurmUser=SlurmdUser=root, no
systemd, no accounting, on two TCP ports picked free at start (two clusters, or a leftover, never collide).
The one node is this host (`hostname -s`, NodeAddr=127.0.0.1), with os.cpu_count() CPUs or `cpus`
(SlurmdParameters=config_overrides: the configured count is used even when it differs from the
hardware), in one partition `debug`.

stop() (also on __exit__ and, for clusters still running, at exit) cancels every job, stops slurmd, kills
what is left of the jobs (slurmstepd and its children: they outlive slurmd by design), stops slurmctld
and munged and removes the directory unless CT_KEEP_SLURM=1. A start that fails raises ClusterError with
the log tails; callers must let it fail the test, never skip it (only a non-root caller cannot run one:
see problem()). A SIGKILLed test process takes the daemons along (PR_SET_PDEATHSIG); the next start()
kills the jobs such a dead cluster left (reap_orphans()).

What Slurm 22.05.8 (Debian 12) does here, measured on 2 cores (see tests/e2e/test_slurm_cluster.py):
- start() takes ~0.4 s; sbatch -> RUNNING ~0.5 s (the first job after start ~0.8 s): the scheduler runs
  on a 1 s tick, not at submit. The script's first write comes at the same moment as RUNNING.
- `squeue -h -t all -o '%i|%j|%T|%r|%N|%S'`: pending `1|ct-smoke|PENDING|None||N/A` (or Reason
  Resources/Priority/BeginTime/JobHeldUser), running `1|ct-smoke|RUNNING|None|vm|2026-12-02T06:03:03`,
  then COMPLETING, then COMPLETED (exit 0), FAILED (exit != 0: ExitCode=3:0 Reason=NonZeroExitCode; killed
  by a signal: ExitCode=0:10) or CANCELLED (scancel: COMPLETING, then CANCELLED, ExitCode=0:15). Finished
  jobs stay listed MinJobAge (300 s) plus up to a purge cycle, then Slurm forgets them (no accounting):
  `squeue -j ID` of one unknown id exits 1 "slurm_load_jobs error: Invalid job id specified"; with a list
  of ids it exits 0 and prints nothing for the unknown ones.
- `scontrol requeue ID` of a running job: COMPLETING, PENDING Reason=BeginTime for cred_expire+1 s, then
  RUNNING with SLURM_RESTART_COUNT=1 (unset on the first run) and Restarts=1 (REQUEUED was never seen in
  50 ms polls). Of a COMPLETED job it also runs it again; of a pending one it exits 1 "Job is pending
  execution for job ID".
- `scancel --signal=USR1 --batch ID` reaches the batch shell only (a trap there), not its children
  (--full signals them too; without either only steps); on a PENDING job it retries forever ("Job is in
  transitional state, retrying"): give it a timeout. `scancel ID` of an unknown id exits 0 silently.
- Without time limits backfill counts a year: RUNNING jobs show %l 365-00:00:00, and `squeue --start`
  estimates a job queued behind them a year ahead (`... PD 2027-12-02T06:15:39 1 (null) (Resources)`).
- With slurmctld down, squeue/sbatch/scancel/sinfo fail after MessageTimeout-1 s (4 s here, 9 s with the
  default 10), `scontrol show job` after twice that, exit 1 (scancel 8), "Unable to contact slurm
  controller (connect failure)"; `scontrol ping` fails at once (exit 1, "... is DOWN"). A restarted
  controller keeps its jobs; the node reads 'unknown' ~4 s until slurmd registers again; a job that ended
  during the outage still reads RUNNING up to ~13 s after the restart (slurmstepd's retry).
- `scontrol show job ID -o`: one line `JobId=1 JobName=ct-smoke UserId=root(0) ... JobState=COMPLETED
  Reason=None ... Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 ... Comment=owner=alice
  StdErr=... StdOut=... Power=` (scontrol_job() parses it)."""
import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
NEEDED = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
# variables a caller's environment might carry that change what the Slurm commands do or print
FOREIGN_ENV = ("SLURM_", "SBATCH_", "SQUEUE_", "SINFO_", "SCANCEL_", "SALLOC_", "SRUN_", "SCONTROL_")
_live = set()


class ClusterError(RuntimeError):
    pass


def which(name):
    for d in os.environ.get("PATH", "").split(os.pathsep) + list(SBIN):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def problem():
    """Why this machine cannot run a cluster at all (a reason to skip), or None. Only a non-root user
    is such a reason: missing packages are a failure (scripts/deps.sh installs them)."""
    if os.geteuid() != 0:
        return "the Slurm daemons run as root (SlurmUser=root; CI runs the tests as root)"
    return None


def free_ports(n):
    """n distinct TCP ports free on all addresses right now (the daemons bind INADDR_ANY)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
        return ports
    finally:
        for s in socks:
            s.close()


def _tail(path, n):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError as e:
        return [f"({e.strerror})"]
    return lines[-n:]


def _mem_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024


def _ancestors():
    me, pid = {os.getpid()}, os.getppid()
    while pid > 1 and pid not in me:
        me.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return me


def _job_pids(daemons=()):
    """{cluster directory: pids of its jobs} for every cluster directory (TMPDIR/ct-slurm-*): processes
    that run a script of its spool (the batch shell runs DIR/spool/jobNNNNN/slurm_script), have its
    slurmd log open (slurmstepd), or have a SLURM_JOB_ID and SLURM_CONF=DIR/slurm.conf (a job's process
    that left the tree); plus all their descendants. Never this process, its ancestors or its children
    (the daemon under test may well name the cluster's files), nor the sessions of `daemons` (slurmctld
    and its slurmscriptd, munged, slurmd each lead one; slurmstepd and the jobs have their own)."""
    base = re.escape(os.path.join(os.path.realpath(tempfile.gettempdir()), "ct-slurm-")) + r"[^/\0\s]+"
    in_spool = re.compile(f"({base})/spool/")
    stepd_log = re.compile(f"({base})/slurmd\\.log")
    job_conf = re.compile(f"SLURM_CONF=({base})/slurm\\.conf")
    me = _ancestors()
    daemons = set(daemons)
    children, roots = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            ppid, sid = int(stat[1]), int(stat[3])
            children.setdefault(ppid, []).append(pid)
            if pid in me or ppid == os.getpid() or sid in daemons:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                m = in_spool.search(f.read().decode(errors="replace"))
            if not m:
                fds = f"/proc/{pid}/fd"
                for fd in os.listdir(fds):
                    try:
                        m = stepd_log.fullmatch(os.readlink(os.path.join(fds, fd)))
                    except OSError:
                        continue
                    if m:
                        break
            if not m:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().decode(errors="replace").split("\0")
                if any(v.startswith("SLURM_JOB_ID=") for v in env):
                    m = next(filter(None, map(job_conf.fullmatch, env)), None)
            if m:
                roots[pid] = m.group(1)
        except (OSError, ValueError, IndexError):
            pass
    out, done = {}, set(me) | daemons
    for root, d in roots.items():
        todo = [root]
        while todo:
            pid = todo.pop()
            if pid in done:
                continue
            done.add(pid)
            out.setdefault(d, set()).add(pid)
            todo += [c for c in children.get(pid, []) if c not in done]
    return out


def _alive(d):
    """Whether the cluster in directory d still has a slurmd or slurmctld running."""
    for name in ("slurmd", "slurmctld"):
        try:
            with open(os.path.join(d, f"{name}.pid")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if os.path.join(d, "slurm.conf").encode() in f.read():
                    return True
        except (OSError, ValueError):
            pass
    return False


def reap_orphans():
    """Kill the jobs of clusters whose daemons are gone (a test process killed with SIGKILL takes its
    daemons along, through PR_SET_PDEATHSIG, but slurmstepd and the jobs outlive slurmd by design).
    Returns {directory: pids killed}."""
    dead = {d: pids for d, pids in _job_pids().items() if not _alive(d)}
    for pids in dead.values():
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return dead


class Cluster:
    def __init__(self, cpus=None, name="ct", conf=None, cred_expire=5):
        """cpus: the node's CPU count (default: this machine's); conf: {KEY: VALUE} replacing or adding
        slurm.conf lines (e.g. {"MinJobAge": "2"}); cred_expire: AuthInfo's cred_expire, which is also
        how long a requeued job waits (PENDING, Reason=BeginTime) before it may start again: Slurm's
        default is 120 s, ours 5."""
        missing = [n for n in NEEDED if not which(n)]
        if missing:
            raise ClusterError(f"missing {' '.join(missing)}: run scripts/deps.sh (Debian packages slurmctld "
                               "slurmd slurm-client munge)")
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.name = name
        self.overrides = dict(conf or {})
        self.cred_expire = cred_expire
        self.dir = os.path.realpath(tempfile.mkdtemp(prefix="ct-slurm-"))   # as /proc shows open files
        # munged wants every directory above its socket searchable by all (and none writable by others)
        os.chmod(self.dir, 0o711)
        self.munge_dir = self.path("munge")
        os.mkdir(self.munge_dir, 0o755)
        self.munge_socket = self.path("munge", "munge.socket")
        if len(self.munge_socket) > 100:   # sun_path holds 108 bytes
            shutil.rmtree(self.dir, ignore_errors=True)
            raise ClusterError(f"TMPDIR is too long for munged's socket: {self.munge_socket}")
        self.key = self.path("munge.key")
        self.conf = self.path("slurm.conf")
        self.state = self.path("state")
        self.spool = self.path("spool")
        for d in (self.state, self.spool):
            os.mkdir(d, 0o700)
        self.logs = {"slurmctld": self.path("slurmctld.log"), "slurmd": self.path("slurmd.log"),
                     "munged": self.path("munged.log")}
        self.procs = {}
        self.ctld_port = self.slurmd_port = None
        self.started = False
        self.stopped = False
        try:
            self._make_key()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    # ---- configuration ----

    def _make_key(self):
        p = subprocess.run([which("mungekey"), "-c", "-k", self.key], capture_output=True, text=True)
        if p.returncode != 0:
            with open(self.key, "wb") as f:
                f.write(os.urandom(1024))
        os.chmod(self.key, 0o400)

    def node_line(self):
        """The NodeName line: this host's topology as `slurmd -C` reports it when cpus is the machine's
        count, otherwise one socket of `cpus` cores (config_overrides makes slurmd accept it)."""
        mem = max(_mem_mib() - 512, 256)
        topo = f"Sockets=1 CoresPerSocket={self.cpus} ThreadsPerCore=1"
        p = subprocess.run([which("slurmd"), "-C"], capture_output=True, text=True)
        fields = dict(w.split("=", 1) for w in p.stdout.split() if "=" in w)
        if fields.get("CPUs") == str(self.cpus) and "CoresPerSocket" in fields:
            topo = " ".join(f"{k}={fields[k]}" for k in ("Boards", "SocketsPerBoard", "CoresPerSocket",
                                                          "ThreadsPerCore") if k in fields)
            mem = min(mem, int(fields.get("RealMemory", mem)))
        return (f"NodeName={self.host} NodeAddr=127.0.0.1 NodeHostname={self.host} CPUs={self.cpus} {topo} "
                f"RealMemory={mem} State=UNKNOWN")

    def _write_conf(self):
        self.ctld_port, self.slurmd_port = free_ports(2)
        auth = f"socket={self.munge_socket},cred_expire={self.cred_expire}"
        text = f"""# written by tests/e2e/slurm.py for one test run
ClusterName={self.name}
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo={auth}
CredType=cred/munge
StateSaveLocation={self.state}
SlurmdSpoolDir={self.spool}
SlurmctldPidFile={self.path("slurmctld.pid")}
SlurmdPidFile={self.path("slurmd.pid")}
SlurmctldLogFile={self.logs["slurmctld"]}
SlurmdLogFile={self.logs["slurmd"]}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
PreemptType=preempt/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
MinJobAge=300
KillWait=5
MessageTimeout=5
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
Waittime=0
MpiDefault=none
MailProg=/bin/true
{self.node_line()}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        lines, seen = [], set()
        for line in text.splitlines():
            key = line.split("=", 1)[0]
            if key in self.overrides:
                line = f"{key}={self.overrides[key]}"
                seen.add(key)
            lines.append(line)
        lines += [f"{k}={v}" for k, v in self.overrides.items() if k not in seen]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def env(self):
        """The environment for a process that uses this cluster: ours with SLURM_CONF, without variables
        of another Slurm (SLURM_*, SBATCH_*, SQUEUE_*... that a caller inside a job might carry)."""
        e = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
        e["SLURM_CONF"] = self.conf
        path = e.get("PATH", "")
        for d in SBIN:
            if d not in path.split(os.pathsep):
                path = path + os.pathsep + d if path else d
        e["PATH"] = path
        return e

    # ---- daemons ----

    def _spawn(self, name, argv, out):
        with open(out, "ab") as log:
            pre = [which("setpriv"), "--pdeathsig", "KILL", "--"] if which("setpriv") else []
            self.procs[name] = subprocess.Popen(pre + argv, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, env=self.env(), cwd=self.dir,
                                                start_new_session=True)

    def start(self, timeout=60.0):
        """Start munged, slurmctld and slurmd; return once the node is idle. Raises ClusterError with the
        log tails when something does not come up within timeout."""
        if self.started:
            return self
        self.started = True
        _live.add(self)
        _catch_sigterm()
        reap_orphans()
        try:
            self._write_conf()
            self._spawn("munged", [which("munged"), "-F", f"--socket={self.munge_socket}",
                                   f"--key-file={self.key}", f"--pid-file={self.path('munged.pid')}",
                                   f"--log-file={self.logs['munged']}", f"--seed-file={self.path('munged.seed')}",
                                   "--num-threads=4"], self.logs["munged"])
            self._wait(lambda: os.path.exists(self.munge_socket), 10, "munged did not create its socket")
            self._start_controller(timeout)
            self._spawn("slurmd", [which("slurmd"), "-D", "-f", self.conf], self.path("slurmd.out"))
            self._wait(lambda: self.node_state() == "idle", timeout, "the node did not become idle")
        except BaseException as e:
            try:
                tails = self.log_tail()
            finally:
                self.stop()
            keep = "" if os.environ.get("CT_KEEP_SLURM") == "1" else " (CT_KEEP_SLURM=1 keeps the directory)"
            raise ClusterError(f"the Slurm cluster in {self.dir} did not start: {e}{keep}\n{tails}") from None
        return self

    def start_controller(self, timeout=60.0, wait_node=True):
        """Start slurmctld (again): the state directory is kept, so jobs survive a stop_controller().
        Returns once it answers `scontrol ping` and (wait_node) once slurmd has registered again: a
        restarted controller shows the node 'unknown' for about 4 s, during which nothing starts.
        Raises ClusterError with the log tails when that does not happen within timeout."""
        try:
            self._start_controller(timeout)
            if wait_node and "slurmd" in self.procs:
                self._wait(lambda: (self.node_state() or "unknown").rstrip("*") not in ("unknown", "down"),
                           timeout, "slurmd did not register with the restarted slurmctld")
        except ClusterError as e:
            raise ClusterError(f"{e}\n{self.log_tail()}") from None

    def _start_controller(self, timeout):
        p = self.procs.get("slurmctld")
        if p is not None and p.poll() is None:
            return
        self._spawn("slurmctld", [which("slurmctld"), "-D", "-f", self.conf], self.path("slurmctld.out"))
        self._wait(self.controller_up, timeout, "slurmctld does not answer")

    def stop_controller(self, timeout=30.0):
        """SIGTERM slurmctld and wait for it to exit (it saves its state first); returns its exit code."""
        return self._terminate("slurmctld", timeout)

    def controller_up(self):
        p = self.run_proc("scontrol", "ping", timeout=15)
        return p.returncode == 0 and "UP" in p.stdout

    def node_state(self):
        """sinfo's state of the node ('idle', 'mixed', 'allocated', 'down*'...), None when unknown."""
        p = self.run_proc("sinfo", "-h", "-N", "-o", "%T", timeout=15)
        return p.stdout.strip() or None if p.returncode == 0 else None

    def _wait(self, pred, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise ClusterError(f"{name} exited with {p.returncode} ({what})")
            if pred():
                return
            time.sleep(0.1)
        raise ClusterError(f"{what} after {timeout:.0f} s")

    def _terminate(self, name, timeout=30.0, sig=signal.SIGTERM):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            # the daemon itself (setpriv execs it): it stops its own helpers (slurmctld's slurmscriptd)
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)   # whatever of its session is left
        except OSError:
            pass
        return p.wait()

    # ---- job processes (slurmstepd and the jobs outlive slurmd by design) ----

    def job_pids(self):
        """Processes of this cluster's jobs: slurmstepd (it has our slurmd log open), the batch shells
        (their script is in our spool) and all their descendants, and anything that left that tree but
        carries SLURM_CONF=our conf and a SLURM_JOB_ID."""
        return _job_pids({p.pid for p in self.procs.values()}).get(self.dir, set())

    def _kill_jobs(self):
        for _ in range(5):
            pids = self.job_pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)

    # ---- stop ----

    def stop(self):
        """Cancel every job, stop slurmd, the jobs' leftovers, slurmctld and munged; remove the directory
        (unless CT_KEEP_SLURM=1). Safe to call twice, and on a cluster that never started."""
        if self.stopped:
            return
        self.stopped = True
        _live.discard(self)
        try:
            ctld = self.procs.get("slurmctld")
            if ctld is not None and ctld.poll() is None and "slurmd" in self.procs:
                p = self.run_proc("squeue", "-h", "-o", "%A", timeout=15)
                ids = p.stdout.split() if p.returncode == 0 else []
                if ids:
                    self.run_proc("scancel", *ids, timeout=15)
                    deadline = time.time() + 10
                    while time.time() < deadline:   # squeue's default states: pending, running, completing
                        p = self.run_proc("squeue", "-h", "-o", "%A", timeout=15)
                        if p.returncode != 0 or not p.stdout.strip():
                            break
                        time.sleep(0.2)
        except Exception:
            pass
        finally:
            self._terminate("slurmd", 15)
            self._kill_jobs()
            self._terminate("slurmctld", 15)
            self._terminate("munged", 10)
            for name in list(self.procs):
                self._terminate(name, 5, signal.SIGKILL)
            self._kill_jobs()
            if os.environ.get("CT_KEEP_SLURM") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- helpers ----

    def log_tail(self, n=40):
        """The last n lines of the slurmctld, slurmd and munged logs, for a failure message. (A daemon
        that died before it opened its log file said why on its stdout, NAME.out: that is shown then.)"""
        parts = []
        for name in ("slurmctld", "slurmd", "munged"):
            path = self.logs[name]
            out = self.path(f"{name}.out")
            if not (os.path.exists(path) and os.path.getsize(path)) and os.path.exists(out):
                path = out
            parts.append(f"---- {name} ({path}), last {n} lines ----")
            parts += _tail(path, n)
        return "\n".join(parts)

    def run_proc(self, *cmd, timeout=30, input=None, cwd=None):
        """subprocess.run of a command with env(), in cwd (default: the cluster's directory, where a job
        without --output writes its slurm-ID.out): the CompletedProcess (text). A command that runs past
        timeout gives returncode 124."""
        try:
            return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env(), timeout=timeout,
                                  input=input, stdin=None if input is not None else subprocess.DEVNULL,
                                  cwd=cwd or self.dir)
        except subprocess.TimeoutExpired as e:
            text = [x.decode(errors="replace") if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr)]
            return subprocess.CompletedProcess(list(cmd), 124, text[0], text[1] + f"\n(timed out after {timeout} s)")

    def run(self, *cmd, timeout=30, input=None, cwd=None):
        """Run a command with env() and return its stdout; raises ClusterError (with stderr) on failure."""
        p = self.run_proc(*cmd, timeout=timeout, input=input, cwd=cwd)
        if p.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} -> {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def squeue(self, *args):
        """squeue ARGS with env(): its stdout (ClusterError when it fails)."""
        return self.run("squeue", *args)

    def sbatch(self, *args):
        """sbatch --parsable ARGS: the job id (a string, as Slurm prints it)."""
        return self.run("sbatch", "--parsable", *args).strip().split(";")[0]

    def job_state(self, job_id):
        """The job's state as `squeue -h -j ID -t all -o %T` prints it (PENDING, RUNNING, COMPLETING,
        COMPLETED, CANCELLED, FAILED...), or None once Slurm no longer knows the job."""
        p = self.run_proc("squeue", "-h", "-j", str(job_id), "-t", "all", "-o", "%T", timeout=30)
        if p.returncode != 0:
            if "Invalid job id" in p.stderr:
                return None
            raise ClusterError(f"squeue -j {job_id} -> {p.returncode}: {p.stderr.strip()}")
        return p.stdout.strip() or None

    def wait_state(self, job_id, states, timeout=60.0, poll=0.05):
        """Poll the job until its state is one of states; return (state, [(seconds, state), ...] every
        state seen in order). Raises ClusterError with the states seen and the log tails on timeout."""
        if isinstance(states, str):
            states = (states,)
        t0 = time.time()
        seen = []
        while True:
            st = self.job_state(job_id)
            if not seen or seen[-1][1] != st:
                seen.append((round(time.time() - t0, 3), st))
            if st in states:
                return st, seen
            if time.time() - t0 > timeout:
                raise ClusterError(f"job {job_id} not in {states} after {timeout:.0f} s; seen {seen}\n"
                                   f"{self.scontrol_text(job_id)}\n{self.log_tail()}")
            time.sleep(poll)

    def scontrol_text(self, job_id):
        p = self.run_proc("scontrol", "show", "job", str(job_id), "-o", timeout=30)
        return p.stdout.strip() or p.stderr.strip()

    def scontrol_job(self, job_id):
        """`scontrol show job ID -o` (one line of KEY=VALUE separated by spaces) as a dict. Keys hold
        letters, digits, '_', ':' and '/' (AllocNode:Sid, CPUs/Task, ReqB:S:C:T); a value holding a space
        followed by such a KEY= (a Comment) cannot be told apart and is cut there."""
        out = self.run("scontrol", "show", "job", str(job_id), "-o").strip()
        fields = {}
        for part in re.split(r" +(?=[A-Za-z][A-Za-z0-9_:/]*=)", out):
            key, _, value = part.partition("=")
            fields[key] = value.strip()
        return fields


@atexit.register
def _stop_all():
    for c in list(_live):
        c.stop()


def _on_sigterm(signum, frame):
    """A SIGTERM (a CI timeout) skips atexit: stop the clusters, then die of the signal as before."""
    _stop_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _catch_sigterm():
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
