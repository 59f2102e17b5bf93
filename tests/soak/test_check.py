"""tests/soak/test_check.py — the soak checker on small hand-made records: a clean one passes, and each
kind of failure it is meant to catch (a lost job, a stuck one, an illegal transition, a reused event id,
a resume that skips or repeats events, events out of order, an idempotency key answered with two jobs,
a damaged database) is counted. Runs before every soak (make soak, make soak-quick); no daemon."""
import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402


def ev(n, typ="metrics", msg="m", **data):
    return {"object": "fine_tuning.job.event", "id": f"ftevent-{n}", "created_at": 1, "level": "info",
            "message": msg, "type": typ, "data": data or None}


HIST = [ev(1, "status", "created", status="queued"), ev(2, "status", "started", status="running"),
        ev(3, step=1), ev(4, "status", "restarted", status="queued"), ev(5, "status", "started", status="running"),
        ev(6, step=1), ev(7, "status", "done", status="succeeded")]


def clean():
    return {"kills": 3, "integrity": "ok", "exits": [0, 0],
            "jobs": [{"id": "ftjob-a", "key": "k"}], "keys": {"k": ["ftjob-a", "ftjob-a"]},
            "cancels": [], "files": ["file-x"],
            "chains": [{"job": "ftjob-a", "sessions": [
                {"lei": None, "status": 200, "events": HIST[:3], "end": False},
                {"lei": "ftevent-3", "status": 200, "events": HIST[3:], "end": True}]}],
            "listings": [{"job": "ftjob-a", "events": HIST[:5]}],
            "final": {"jobs": {"ftjob-a": "succeeded"}, "files": {"file-x": True},
                      "history": {"ftjob-a": copy.deepcopy(HIST)}, "stuck": [], "undrained": []}}


class CheckTest(unittest.TestCase):
    def figures(self, rec):
        fig, findings = check.check(rec)
        return fig, "\n".join(findings)

    def test_clean_record_passes(self):
        fig, why = self.figures(clean())
        self.assertFalse(check.failed(fig), why)
        self.assertEqual((fig["acknowledged jobs"], fig["resumes"], fig["vanished"]), (1, 1, 0))

    def test_lost_job_upload_and_cancel(self):
        rec = clean()
        rec["jobs"].append({"id": "ftjob-gone", "key": None})
        rec["final"]["jobs"]["ftjob-gone"] = None
        rec["final"]["files"]["file-x"] = False
        rec["cancels"].append("ftjob-a")  # acknowledged, yet it ends succeeded
        fig, why = self.figures(rec)
        self.assertEqual(fig["lost"], 3, why)

    def test_stuck_and_unclean_exit_and_integrity(self):
        rec = clean()
        rec["final"]["stuck"] = ["ftjob-a"]
        rec["exits"] = [0, -6]
        rec["integrity"] = "*** in database main ***\nPage 5 is never used"
        fig, _ = self.figures(rec)
        self.assertEqual((fig["stuck"], fig["unclean exits"]), (1, 1))
        self.assertTrue(check.failed(fig))

    def test_illegal_transitions(self):
        rec = clean()
        rec["final"]["history"]["ftjob-a"].append(ev(9, "status", "back", status="running"))  # after succeeded
        fig, why = self.figures(rec)
        self.assertEqual(fig["illegal transitions"], 1, why)
        self.assertIn("succeeded -> running", why)

    def test_pausing_message_counts_as_paused(self):
        rec = clean()
        h = [ev(1, "status", "c", status="queued"), ev(2, "status", "s", status="running"),
             ev(3, "message", "Pausing", status="paused"), ev(4, "status", "r", status="queued"),
             ev(5, "status", "s", status="running"), ev(6, "message", "Pausing", status="paused"),
             ev(7, "status", "p", status="paused", step=1), ev(8, "status", "x", status="cancelled")]
        rec["final"]["history"] = {"ftjob-a": h}
        rec["chains"], rec["listings"] = [], []
        rec["final"]["jobs"]["ftjob-a"] = "cancelled"
        fig, why = self.figures(rec)
        self.assertEqual(fig["illegal transitions"], 0, why)
        h[7] = ev(8, "status", "done", status="succeeded")  # a paused job that succeeds anyway
        fig, why = self.figures(rec)
        self.assertEqual(fig["illegal kinds"], "paused->succeeded 1", why)

    def test_pause_during_the_last_step_succeeds_only_when_the_event_says_so(self):
        for flag, illegal in ((True, 0), (None, 1)):
            rec = clean()
            extra = {"finished_before_stop": True} if flag else {}
            h = [ev(1, "status", "c", status="queued"), ev(2, "status", "s", status="running"),
                 ev(3, "message", "Pausing", status="paused"), ev(4, "status", "r", status="queued"),
                 ev(5, "status", "done", status="succeeded", **extra)]
            rec["final"]["history"] = {"ftjob-a": h}
            rec["chains"], rec["listings"] = [], []
            rec["final"]["jobs"]["ftjob-a"] = "succeeded"
            fig, why = self.figures(rec)
            self.assertEqual(fig["illegal transitions"], illegal, why)

    def test_reused_id_and_the_resume_that_missed_it(self):
        # The kill -9 story: the client saw ftevent-4 as a metrics event that was never committed; after the
        # restart the daemon numbered a new event 4 and the reconnect (Last-Event-ID: ftevent-4) skipped it.
        rec = clean()
        ch = rec["chains"][0]
        ch["sessions"][0]["events"] = HIST[:3] + [ev(4, step=2)]
        ch["sessions"][1] = {"lei": "ftevent-4", "status": 200, "events": HIST[4:], "end": True}
        fig, why = self.figures(rec)
        self.assertEqual((fig["reused ids"], fig["bad resumes"]), (1, 1), why)
        self.assertIn("ftevent-4", why)

    def test_resume_repeating_events(self):
        rec = clean()
        rec["chains"][0]["sessions"][1]["events"] = HIST[2:]  # ftevent-3 again after Last-Event-ID 3
        fig, why = self.figures(rec)
        self.assertEqual(fig["bad resumes"], 1, why)
        self.assertEqual(fig["out of order"], 1, why)

    def test_resume_skipping_a_later_event(self):
        rec = clean()
        rec["chains"][0]["sessions"][1]["events"] = [HIST[3], HIST[4], HIST[6]]  # ftevent-6 never came
        fig, why = self.figures(rec)
        self.assertEqual(fig["bad resumes"], 1, why)

    def test_listing_out_of_order(self):
        rec = clean()
        rec["listings"][0]["events"] = [HIST[0], HIST[2], HIST[1]]
        fig, why = self.figures(rec)
        self.assertEqual(fig["out of order"], 1, why)

    def test_idempotency_key_with_two_jobs(self):
        rec = clean()
        rec["keys"]["k"].append("ftjob-b")
        fig, why = self.figures(rec)
        self.assertEqual(fig["idempotency mismatches"], 1, why)


if __name__ == "__main__":
    unittest.main()
