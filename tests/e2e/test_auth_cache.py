"""The request path's caches against the real daemon (issue #15): the token cache (core/auth.c) and the memo
of rendered jobs (api/render.c) never answer from a stale entry. A token revoked with `coretuned token
revoke`, a user deleted or made admin (or not) in the database by another connection (as an operator's
sqlite3 shell does: the daemon has no command for those) counts on the very next request after a request
that was answered from the cache; a job's change (pause, resume, cancel, its queue place, a row changed
from outside) shows on the next GET of the job and of the list."""
import os
import sqlite3
import unittest

from harness import Daemon, add_user, admin_cli, stop_checked, tiny_job

JOBS = "/v1/fine_tuning/jobs"


class CacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--workers", "0").start()

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.d)

    def sql(self, statement, *args):
        """One statement from a second connection, committed at once."""
        con = sqlite3.connect(os.path.join(self.d.data_dir, "coretuned.db"), timeout=10)
        try:
            con.execute(statement, args)
            con.commit()
        finally:
            con.close()

    def status(self, path, token):
        return self.d.request("GET", path, token=token)[0]

    def warm(self, path, token, want):
        """Twice: the second answer comes from the cache."""
        for _ in range(2):
            self.assertEqual(self.status(path, token), want)

    def test_revoked_token_refused_at_once(self):
        tok = add_user(self.d, "rita")
        tok2 = admin_cli(self.d, "token", "create", "rita").strip()
        self.warm("/v1/me", tok, 200)
        self.warm("/v1/me", tok2, 200)
        admin_cli(self.d, "token", "revoke", tok[:11])
        self.assertEqual(self.status("/v1/me", tok), 401)
        self.assertEqual(self.status("/v1/me", tok2), 200)      # the user's other token still works
        fake = tok2[:11] + ("A" if tok2[11] != "A" else "B") + tok2[12:]  # the same public prefix
        self.assertEqual(self.status("/v1/me", fake), 401)

    def test_deleted_user_refused_at_once(self):
        tok = add_user(self.d, "dora")
        self.warm("/v1/me", tok, 200)
        self.sql("DELETE FROM tokens WHERE user_id = (SELECT id FROM users WHERE name = 'dora')")
        self.sql("DELETE FROM users WHERE name = 'dora'")
        self.assertEqual(self.status("/v1/me", tok), 401)

    def test_role_change_counts_at_once(self):
        tok = add_user(self.d, "cleo")
        self.warm("/v1/users", tok, 403)
        self.sql("UPDATE users SET admin = 1 WHERE name = 'cleo'")
        self.assertEqual(self.status("/v1/users", tok), 200)
        self.warm("/v1/users", tok, 200)
        _s, me, _h = self.d.request("GET", "/v1/me", token=tok)
        self.assertTrue(me["admin"])
        self.sql("UPDATE users SET admin = 0 WHERE name = 'cleo'")
        self.assertEqual(self.status("/v1/users", tok), 403)

    def job(self, job_id, token):
        status, job, _ = self.d.request("GET", f"{JOBS}/{job_id}", token=token)
        self.assertEqual(status, 200, job)
        return job

    def listed(self, job_id, token):
        status, page, _ = self.d.request("GET", f"{JOBS}?limit=100", token=token)
        self.assertEqual(status, 200, page)
        return next(j for j in page["data"] if j["id"] == job_id)

    def test_job_change_shows_on_next_get(self):
        tok = add_user(self.d, "jade")
        ids = []
        for _ in range(2):
            status, job, _ = self.d.request("POST", JOBS, tiny_job(), token=tok)
            self.assertEqual(status, 200, job)
            ids.append(job["id"])
        first, second = ids
        for _ in range(2):  # the second answers come from the memo
            self.assertEqual(self.job(second, tok)["queue_position"], self.job(first, tok)["queue_position"] + 1)
            self.assertEqual(self.listed(second, tok)["status"], "queued")
        pos = self.job(second, tok)["queue_position"]
        self.assertEqual(self.d.request("POST", f"{JOBS}/{first}/pause", token=tok)[0], 200)
        self.assertEqual(self.job(first, tok)["status"], "paused")
        self.assertEqual(self.listed(first, tok)["status"], "paused")
        self.assertEqual(self.job(second, tok)["queue_position"], pos - 1)   # one fewer ahead of it
        self.assertEqual(self.listed(second, tok)["queue_position"], pos - 1)
        self.assertEqual(self.d.request("POST", f"{JOBS}/{first}/resume", token=tok)[0], 200)
        self.assertEqual(self.job(first, tok)["status"], "queued")
        self.assertEqual(self.d.request("POST", f"{JOBS}/{first}/cancel", token=tok)[0], 200)
        self.assertEqual(self.job(first, tok)["status"], "cancelled")
        self.assertEqual(self.listed(first, tok)["status"], "cancelled")
        # a row changed by another connection: the next GET shows it
        self.assertIsNone(self.job(second, tok)["metadata"])
        self.sql("UPDATE jobs SET metadata = ?, priority = 2 WHERE id = ?", '{"note":"edited"}', second)
        job = self.job(second, tok)
        self.assertEqual(job["metadata"], {"note": "edited"})
        self.assertEqual(job["priority"], 2)
        self.assertEqual(self.listed(second, tok)["metadata"], {"note": "edited"})


if __name__ == "__main__":
    unittest.main()
