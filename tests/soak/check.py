"""tests/soak/check.py — the reliability battery's checker: given the record the driver (soak.py) wrote
of one soak (what the client was told while the daemon was being killed, and what the daemon holds after
a final clean restart), count what went wrong. Pure: it reads a record (a dict) and returns figures and
one line per finding; it never talks to the daemon. `python3 tests/soak/check.py RECORD.json` prints the
figures of a saved record and exits 1 if any failure count is non-zero.

The record (every list in the order things happened):
  kills, integrity ("ok" or SQLite's complaint), exits (return codes of the clean stops),
  jobs       [{"id", "key"}]                       every 200 answer to POST /v1/fine_tuning/jobs
  keys       {key: [job id of each 200 answer]}    POSTs carrying an Idempotency-Key (first + resubmits)
  cancels    [job id]                              every 200 answer to POST .../cancel
  files      [file id]                             every 200 answer to POST /v1/files
  chains     [{"job", "sessions": [{"lei", "status", "events": [event], "end"}]}]
             one per job the client followed over SSE; a session is one connection, "lei" the
             Last-Event-ID it sent (null: none), "end" whether the server ended it with an `end` event
  listings   [{"job", "events": [event]}]          GET .../events read page by page (one listing)
  final      {"jobs": {id: status or null (not found)}, "files": {id: bool found},
              "history": {job id: [event]}, "stuck": [id], "undrained": [id]}
             after the kill phase: a clean restart, a wait for queued/running jobs to finish ("stuck": still
             running after it), a clean stop and another start; "history" is then every committed event.
"""
import json
import sys

FINAL = ("succeeded", "failed", "cancelled")
# Status changes as the events tell them (None: before the first event). A queued job that can no longer
# start (its uploaded file is gone, ...) fails without running (api.md: error code invalid_spec).
LEGAL = {(None, "queued"), ("queued", "running"), ("running", "succeeded"), ("running", "failed"),
         ("queued", "failed"), ("running", "queued"), ("queued", "paused"), ("running", "paused"),
         ("paused", "queued")} | {(s, "cancelled") for s in ("queued", "running", "paused")}
# A pause (or a pause then a resume) that arrives during a job's last step: the trainer finishes instead
# of checkpointing and the job succeeds from paused/queued; its status event says finished_before_stop.
LEGAL_FINISHED = {("paused", "succeeded"), ("queued", "succeeded")}

FAILURES = ("lost", "stuck", "illegal transitions", "reused ids", "out of order", "bad resumes", "gaps",
            "idempotency mismatches", "unclean exits")


def num(eid):
    return int(eid.rsplit("-", 1)[-1])


def content(job, ev):
    """What an event id stands for: its job and the whole event object, canonically."""
    return job + " " + json.dumps(ev, sort_keys=True, separators=(",", ":"))


def check(rec):
    """Returns (figures, findings): figures maps each name in FAILURES (and a few counts) to a number,
    findings is one human line per problem, for the report."""
    fig = {k: 0 for k in FAILURES}
    out = []
    final = rec["final"]
    hist = final["history"]

    # Acknowledged means durable: every acknowledged job and upload exists, every acknowledged cancel holds.
    acked = []
    for j in rec["jobs"]:
        if j["id"] not in acked:
            acked.append(j["id"])
    for jid in acked:
        if final["jobs"].get(jid) is None:
            fig["lost"] += 1
            out.append(f"lost job: {jid} was acknowledged (200 to POST) but is not found after the restart")
    for fid in dict.fromkeys(rec["files"]):
        if not final["files"].get(fid):
            fig["lost"] += 1
            out.append(f"lost upload: {fid} was acknowledged but is not found")
    for jid in dict.fromkeys(rec["cancels"]):
        st = final["jobs"].get(jid)
        if st is not None and st != "cancelled":
            fig["lost"] += 1
            out.append(f"lost cancel: {jid} was cancelled (200) but ends {st}")

    for jid in final["stuck"]:
        fig["stuck"] += 1
        out.append(f"stuck: {jid} still running after the final clean restart and the wait")

    for key, ids in rec["keys"].items():
        if len(set(ids)) > 1:
            fig["idempotency mismatches"] += 1
            out.append(f"idempotency: key {key} answered with different jobs {sorted(set(ids))}")

    for rc in rec["exits"]:
        if rc != 0:
            fig["unclean exits"] += 1
            out.append(f"a clean stop (SIGTERM) exited with {rc}")

    # Transitions, from the committed status events. Pausing a job whose trainer runs makes it `paused` at
    # once, but the daemon tells it by a `message` event ("Pausing: writing a checkpoint", data.status
    # "paused") and the `status` event only once the checkpoint is written, which a resume can overtake:
    # the message counts as the change, and the status event after it as the same state.
    kinds = {}
    for jid, evs in hist.items():
        prev, pausing = None, False
        for ev in evs:
            st = (ev.get("data") or {}).get("status")
            if ev.get("type") == "message" and st == "paused":
                ok = (prev, st) in LEGAL
            elif ev.get("type") == "status":
                ok = (pausing and prev == st == "paused") or (prev, st) in LEGAL or \
                    ((prev, st) in LEGAL_FINISHED and (ev.get("data") or {}).get("finished_before_stop") is True)
            else:
                continue
            if not ok:
                fig["illegal transitions"] += 1
                kinds[f"{prev}->{st}"] = kinds.get(f"{prev}->{st}", 0) + 1
                out.append(f"illegal transition: {jid} {prev} -> {st} at {ev['id']} ({ev.get('message')!r})")
            prev, pausing = st, ev.get("type") == "message"
    fig["illegal kinds"] = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"

    # One id, one event: everything served (SSE sessions, pages) and the committed history.
    seen = {}  # id -> {content: where first seen}

    def saw(job, ev, where):
        seen.setdefault(ev["id"], {}).setdefault(content(job, ev), where)

    for ci, ch in enumerate(rec["chains"]):
        for si, s in enumerate(ch["sessions"]):
            for ev in s["events"]:
                saw(ch["job"], ev, f"SSE {ch['job']} session {si}")
    for li, ls in enumerate(rec["listings"]):
        for ev in ls["events"]:
            saw(ls["job"], ev, f"GET events {ls['job']} listing {li}")
    for jid, evs in hist.items():
        for ev in evs:
            saw(jid, ev, f"committed history of {jid}")
    for eid, versions in sorted(seen.items(), key=lambda kv: num(kv[0])):
        if len(versions) > 1:
            fig["reused ids"] += 1
            if fig["reused ids"] <= 10:
                desc = "; ".join(f"{where}: {c[:160]}" for c, where in list(versions.items())[:2])
                out.append(f"reused id: {eid} served as {len(versions)} different events: {desc}")

    # Strictly increasing per job as served.
    def increasing(job, evs, after, where):
        last = after
        for ev in evs:
            if num(ev["id"]) <= last:
                fig["out of order"] += 1
                out.append(f"out of order: {where} served {ev['id']} after ftevent-{last}")
                return False
            last = num(ev["id"])
        return True

    for ls in rec["listings"]:
        increasing(ls["job"], ls["events"], 0, f"GET events of {ls['job']}")

    # Resuming exactly: a chain of sessions following one job, each reconnect sending Last-Event-ID, must
    # deliver every committed event of the job once, the same as committed.
    fig["resumes"] = 0
    fig["vanished"] = 0    # served, then lost with the kill (never committed): the batch is not durable
    committed = {}
    for jid, evs in hist.items():
        for ev in evs:
            committed[ev["id"]] = content(jid, ev)
    for ch in rec["chains"]:
        job = ch["job"]
        got = {}           # content -> index of the session that delivered it
        bad = set()
        for si, s in enumerate(ch["sessions"]):
            lei = num(s["lei"]) if s["lei"] else 0
            if s["lei"]:
                fig["resumes"] += 1
            if not increasing(job, s["events"], lei, f"SSE {job} session {si} (Last-Event-ID {s['lei']})"):
                bad.add(si)
            for ev in s["events"]:
                c = content(job, ev)
                if c in got:
                    bad.add(si)
                    out.append(f"delivered twice: {job} {ev['id']} in sessions {got[c]} and {si}")
                got.setdefault(c, si)
                if ev["id"] not in committed:
                    fig["vanished"] += 1
        covered = max((num(ev["id"]) for s in ch["sessions"] for ev in s["events"]), default=0)
        ended = any(s["end"] for s in ch["sessions"])
        for ev in hist.get(job, []):
            c, n = content(job, ev), num(ev["id"])
            if c in got:
                continue
            # Never delivered: blame the first reconnect that claimed to have seen past it, else the
            # session whose span it falls in.
            who = next((si for si, s in enumerate(ch["sessions"]) if s["lei"] and num(s["lei"]) >= n), None)
            if who is not None:
                bad.add(who)
                out.append(f"bad resume: {job} session {who} resumed after {ch['sessions'][who]['lei']} and never "
                           f"got committed {ev['id']} {ev.get('type')} {ev.get('message')!r}")
            elif ended or n < covered:
                span = [si for si, s in enumerate(ch["sessions"]) if s["events"] and num(s["events"][-1]["id"]) >= n]
                si = span[0] if span else len(ch["sessions"]) - 1
                if ch["sessions"][si]["lei"]:
                    bad.add(si)
                else:
                    fig["gaps"] += 1
                out.append(f"gap: {job} session {si} never delivered committed {ev['id']} {ev.get('type')}")
            else:
                fig["gaps"] += 1
                out.append(f"gap: the client's stream of {job} stopped before committed {ev['id']}")
        fig["bad resumes"] += sum(1 for si in bad if ch["sessions"][si]["lei"])

    fig["kills"] = rec["kills"]
    fig["acknowledged jobs"] = len(acked)
    fig["integrity"] = rec["integrity"]
    if rec["integrity"] != "ok":
        out.append(f"PRAGMA integrity_check: {rec['integrity']}")
    return fig, out


def failed(fig):
    return any(fig[k] for k in FAILURES) or fig["integrity"] != "ok"


def report(fig, findings, extra=None, file=sys.stdout):
    for line in findings[:60]:
        print("  " + line, file=file)
    if len(findings) > 60:
        print(f"  ... and {len(findings) - 60} more", file=file)
    order = ["kills", "acknowledged jobs", "lost", "stuck", "illegal transitions", "illegal kinds", "reused ids", "bad resumes",
             "integrity", "out of order", "gaps", "idempotency mismatches", "unclean exits", "resumes", "vanished"]
    for k in order:
        print(f"soak {k}: {fig[k]}", file=file)
    for k, v in (extra or {}).items():
        print(f"soak {k}: {v}", file=file)
    print("soak: " + ("FAILED" if failed(fig) else "ok"), file=file)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: check.py RECORD.json")
    with open(sys.argv[1]) as f:
        rec = json.load(f)
    fig, findings = check(rec)
    report(fig, findings)
    sys.exit(1 if failed(fig) else 0)
