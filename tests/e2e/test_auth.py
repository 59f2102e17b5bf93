"""Identity and authorization (issue #6) against the real daemon: the authorization matrix — every route
x {owner, other user, admin, anonymous} — with the statuses the contract names (401 invalid_api_key, 404
for another user's objects, 403 for admin-only routes); lists show only the caller's own objects; per-user
Idempotency-Keys; revoked and malformed tokens; the audit trail (login failures, authorization failures,
admin actions) with no token anywhere in it or in the log; a fine-tuned model visible and usable only by
its owner; dataset paths confined to the configured roots (no '..', no symlink escape)."""
import json
import os
import shutil
import tempfile
import unittest

from harness import Daemon, add_user, admin_cli, stop_checked, tiny_job, wait_for
from test_files import cifar10_batch, multipart

JOBS = "/v1/fine_tuning/jobs"


class AuthMatrixTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon("--workers", "0").start()
        cls.alice = add_user(cls.d, "alice")
        cls.bob = add_user(cls.d, "bob")

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.d)

    def req(self, who, method, path, body=None, headers=None):
        token = {"owner": self.alice, "other": self.bob, "admin": "admin", "anonymous": None}[who]
        return self.d.request(method, path, body, headers=headers, token=token)

    def new_job(self):
        status, job, _ = self.req("owner", "POST", JOBS, tiny_job())
        self.assertEqual(status, 200, job)
        self.assertEqual(job["owner"], "alice")
        return job["id"]

    def test_matrix(self):
        body, mh = multipart({"purpose": "fine-tune"}, "data_batch_1.bin", cifar10_batch(2))
        status, f, _ = self.req("owner", "POST", "/v1/files", body, headers=mh)
        self.assertEqual(status, 200, f)
        fid = f["id"]
        ok = (200,)
        state = (200, 409)   # allowed; the job's status may forbid the action itself
        # (method, path, body, {who: statuses}); a fresh job per row so actions do not interfere
        rows = [
            ("GET", "/healthz", None, dict(owner=ok, other=ok, admin=ok, anonymous=ok)),
            ("GET", "/readyz", None, dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
            ("GET", "/v1/me", None, dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
            ("GET", "/v1/users", None, dict(owner=(403,), other=(403,), admin=ok, anonymous=(401,))),
            ("GET", "/v1/audit", None, dict(owner=(403,), other=(403,), admin=ok, anonymous=(401,))),
            ("GET", "/metrics", None, dict(owner=(403,), other=(403,), admin=ok, anonymous=(401,))),
            ("GET", JOBS, None, dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
            ("POST", JOBS, tiny_job(), dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
            ("GET", JOBS + "/{job}", None, dict(owner=ok, other=(404,), admin=ok, anonymous=(401,))),
            ("POST", JOBS + "/{job}/pause", None, dict(owner=state, other=(404,), admin=state, anonymous=(401,))),
            ("POST", JOBS + "/{job}/resume", None, dict(owner=state, other=(404,), admin=state, anonymous=(401,))),
            ("POST", JOBS + "/{job}/cancel", None, dict(owner=state, other=(404,), admin=state, anonymous=(401,))),
            ("GET", JOBS + "/{job}/events", None, dict(owner=ok, other=(404,), admin=ok, anonymous=(401,))),
            ("GET", JOBS + "/{job}/events?stream=true&after=999999999", None,
             dict(other=(404,), anonymous=(401,))),
            ("GET", JOBS + "/{job}/checkpoints", None, dict(owner=ok, other=(404,), admin=ok, anonymous=(401,))),
            ("GET", JOBS + "/{job}/metrics", None, dict(owner=ok, other=(404,), admin=ok, anonymous=(401,))),
            ("GET", "/v1/models", None, dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
            ("GET", "/v1/models/resnet20", None, dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
            ("GET", "/v1/models/resnet20/content", None, dict(owner=(404,), other=(404,), admin=(404,), anonymous=(401,))),
            ("GET", "/v1/datasets", None, dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
            ("GET", "/v1/files", None, dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
            ("GET", "/v1/files/{file}", None, dict(owner=ok, other=(404,), admin=ok, anonymous=(401,))),
            ("POST", "/v1/files", "upload", dict(owner=ok, other=ok, admin=ok, anonymous=(401,))),
        ]
        for method, path, body, want in rows:
            for who, statuses in want.items():
                jid = self.new_job()
                url = path.replace("{job}", jid).replace("{file}", fid)
                b, h = body, None
                if body == "upload":
                    b, h = multipart({"purpose": "fine-tune"}, "data_batch_1.bin", cifar10_batch(1))
                with self.subTest(method=method, path=path, who=who):
                    status, out, hdrs = self.req(who, method, url, b, headers=h)
                    self.assertIn(status, statuses, out)
                    if status >= 400:
                        self.assertEqual(set(out["error"]), {"message", "type", "param", "code"}, out)
                    if status == 401:
                        self.assertEqual(out["error"]["code"], "invalid_api_key")
                        self.assertIn("Bearer", hdrs["WWW-Authenticate"])
                    if status == 403:
                        self.assertEqual(out["error"]["code"], "permission_denied")
                    if status == 404 and who == "other":
                        self.assertIn(out["error"]["code"], ("job_not_found", "file_not_found", "model_not_found"))

    def test_lists_show_own_objects_only(self):
        jid = self.new_job()
        _, bjob, _ = self.req("other", "POST", JOBS, tiny_job())
        ids = lambda who: [j["id"] for j in self.req(who, "GET", JOBS + "?limit=100")[1]["data"]]
        self.assertIn(jid, ids("owner"))
        self.assertNotIn(bjob["id"], ids("owner"))
        self.assertNotIn(jid, ids("other"))
        self.assertIn(jid, ids("admin"))
        self.assertIn(bjob["id"], ids("admin"))
        body, mh = multipart({}, "data_batch_1.bin", cifar10_batch(1))
        _, f, _ = self.req("owner", "POST", "/v1/files", body, headers=mh)
        self.assertNotIn(f["id"], [x["id"] for x in self.req("other", "GET", "/v1/files")[1]["data"]])
        self.assertNotIn(f["id"], [x["id"] for x in self.req("other", "GET", "/v1/datasets")[1]["data"]])
        self.assertIn(f["id"], [x["id"] for x in self.req("owner", "GET", "/v1/datasets")[1]["data"]])
        # another user's upload cannot be trained on: it does not exist for them
        status, err, _ = self.req("other", "POST", JOBS, tiny_job(training_file=f["id"]))
        self.assertEqual((status, err["error"]["code"]), (400, "file_not_found"), err)
        _, me, _ = self.req("owner", "GET", "/v1/me")
        self.assertEqual((me["name"], me["admin"]), ("alice", False))
        self.assertGreaterEqual(me["usage"]["queued_jobs"], 1)

    def test_idempotency_keys_are_per_user(self):
        h = {"Idempotency-Key": "shared-key-1"}
        s1, j1, _ = self.req("owner", "POST", JOBS, tiny_job(), headers=h)
        s2, j2, _ = self.req("other", "POST", JOBS, tiny_job(), headers=h)
        self.assertEqual((s1, s2), (200, 200))
        self.assertNotEqual(j1["id"], j2["id"])
        self.assertEqual(j2["owner"], "bob")

    def test_bad_tokens_and_revocation(self):
        for hdr in ("Bearer ct_" + "x" * 40, "Bearer nonsense", "Basic YWxpY2U6cHc=", "Bearer " + self.alice[:-1] + "Z"):
            status, err, _ = self.d.request("GET", JOBS, headers={"Authorization": hdr}, token=None)
            self.assertEqual((status, err["error"]["code"]), (401, "invalid_api_key"), hdr)
        tok = add_user(self.d, "carol")
        self.assertEqual(self.d.request("GET", "/v1/me", token=tok)[0], 200)
        listing = admin_cli(self.d, "token", "list", "carol")
        tid = listing.split()[0]
        self.assertTrue(tid.startswith("tok-"), listing)
        self.assertNotIn(tok, listing)
        admin_cli(self.d, "token", "revoke", tid)
        self.assertEqual(self.d.request("GET", "/v1/me", token=tok)[0], 401)
        # a second token of the same user still works; revoking by prefix works too
        tok2 = admin_cli(self.d, "token", "create", "carol").strip()
        self.assertTrue(tok2.startswith("ct_") and len(tok2) >= 35)
        self.assertEqual(self.d.request("GET", "/v1/me", token=tok2)[0], 200)
        admin_cli(self.d, "token", "revoke", tok2[:11])
        self.assertEqual(self.d.request("GET", "/v1/me", token=tok2)[0], 401)
        p = admin_cli(self.d, "user", "add", "carol", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("already exists", p.stderr)
        p = admin_cli(self.d, "user", "add", "Bad Name!", check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_audit_trail_and_no_tokens_in_logs(self):
        jid = self.new_job()
        self.d.request("GET", JOBS, token=None)                        # login failure (no credentials)
        self.d.request("GET", JOBS, token="ct_" + "A" * 40)             # login failure (bad token)
        self.req("other", "GET", f"{JOBS}/{jid}")                      # authorization failure
        self.req("other", "GET", "/v1/users")                          # authorization failure (admin only)
        self.req("admin", "POST", f"{JOBS}/{jid}/pause")               # admin action on alice's job
        status, audit, _ = self.req("admin", "GET", "/v1/audit?limit=1000")
        self.assertEqual(status, 200, audit)
        recs = audit["data"]
        actions = {(r["action"], r["user"]) for r in recs}
        self.assertIn(("login_failed", ""), actions)
        self.assertIn(("authz_denied", "bob"), actions)
        self.assertIn(("job_pause", "admin"), actions)
        self.assertIn(("user_add", ""), actions)        # from the offline admin command
        self.assertTrue(any(r["action"] == "token_create" for r in recs))
        self.assertTrue(any(r["target"] == jid and r["action"] == "authz_denied" for r in recs))
        text = json.dumps(recs) + self.d.read_log()
        for tok in (self.alice, self.bob, self.d.token):
            self.assertNotIn(tok, text.replace(f"?token={self.d.token}", ""))   # the sign-in line is the one exception
        self.assertEqual(self.d.read_log().count(self.d.token), 1)


class OwnedModelsTest(unittest.TestCase):
    def test_fine_tuned_model_is_its_owners(self):
        d = Daemon("--workers", "1", "--threads-per-job", "1").start()
        try:
            alice, bob = add_user(d, "alice"), add_user(d, "bob")
            status, job, _ = d.request("POST", JOBS, tiny_job(epochs=1), token=alice)
            self.assertEqual(status, 200, job)
            job = wait_for(d, job["id"], ("succeeded", "failed"), timeout=300)
            self.assertEqual(job["status"], "succeeded", job)
            model = job["fine_tuned_model"]
            ids = lambda tok: [m["id"] for m in d.request("GET", "/v1/models", token=tok)[1]["data"]]
            self.assertIn(model, ids(alice))
            self.assertIn(model, ids("admin"))
            self.assertNotIn(model, ids(bob))
            self.assertEqual(d.request("GET", f"/v1/models/{model}", token=bob)[0], 404)
            self.assertEqual(d.request("GET", f"/v1/models/{model}/content", token=bob)[0], 404)
            self.assertEqual(d.request("GET", f"/v1/models/{model}/content", token=alice)[0], 200)
            status, err, _ = d.request("POST", JOBS, tiny_job(model=model), token=bob)
            self.assertEqual((status, err["error"]["code"]), (400, "model_not_found"), err)
            self.assertEqual(d.request("POST", JOBS, tiny_job(model=model), token=alice)[0], 200)
        finally:
            rc, _ = d.stop(timeout=60)
            d.cleanup()
        self.assertEqual(rc, 0)


class DatasetRootsTest(unittest.TestCase):
    def test_paths_only_inside_roots(self):
        tmp = tempfile.mkdtemp(prefix="coretuned-roots-")
        try:
            root, outside = os.path.join(tmp, "shared"), os.path.join(tmp, "private")
            os.makedirs(os.path.join(root, "cifar"))
            os.makedirs(outside)
            for p in (os.path.join(root, "cifar", "data_batch_1.bin"), os.path.join(outside, "data_batch_1.bin")):
                with open(p, "wb") as f:
                    f.write(cifar10_batch(2))
            os.symlink(outside, os.path.join(root, "escape"))
            d = Daemon("--workers", "0", "--dataset-root", root).start()
            try:
                good = os.path.join(root, "cifar", "data_batch_1.bin")
                self.assertEqual(d.request("POST", JOBS, tiny_job(training_file=good))[0], 200)
                for bad in (os.path.join(root, "..", "private", "data_batch_1.bin"),
                            os.path.join(root, "escape", "data_batch_1.bin"),
                            os.path.join(outside, "data_batch_1.bin"), "/etc/passwd",
                            os.path.join(root, "cifar", ".."), "cifar/data_batch_1.bin"):
                    status, err, _ = d.request("POST", JOBS, tiny_job(training_file=bad))
                    self.assertEqual((status, err["error"]["code"]), (400, "file_not_found"), bad)
            finally:
                rc, _ = d.stop()
                d.cleanup()
            self.assertEqual(rc, 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
