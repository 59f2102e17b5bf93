"""Datasets and uploads: GET /v1/datasets lists the built-in Fashion-MNIST; POST /v1/files takes a
multipart CIFAR-10 batch, probes it, lists it as a dataset, and a real job trains on it; uploads over
the size limit (413), of an unknown format (400), or not multipart (415) store nothing."""
import os
import random
import unittest
import uuid

from harness import Daemon, DaemonTest, tiny_job, wait_for

JOBS = "/v1/fine_tuning/jobs"


def multipart(fields, filename, payload):
    boundary = uuid.uuid4().hex
    out = b""
    for k, v in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").encode()
    out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + payload + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def cifar10_batch(per_class):
    rnd = random.Random(5)
    recs = []
    for i in range(10 * per_class):
        label = i % 10
        recs.append(bytes([label]) + bytes(rnd.randrange(256) for _ in range(3072)))
    return b"".join(recs)


class FilesTest(DaemonTest):
    args = ("--workers", "1", "--threads-per-job", "1", "--max-upload-mb", "1")

    def uploads_on_disk(self):
        root = os.path.join(self.d.data_dir, "files")
        return sorted(n for n in os.listdir(root) if n.startswith("file-")) + \
            sorted(os.listdir(os.path.join(root, "tmp")))

    def test_builtin_datasets(self):
        status, ds, _ = self.d.request("GET", "/v1/datasets")
        self.assertEqual(status, 200)
        ids = [x["id"] for x in ds["data"]]
        if os.path.isdir("/usr/share/datasets/fashion-mnist"):
            self.assertIn("fashion-mnist-train", ids)
            self.assertIn("fashion-mnist-test", ids)

    def test_upload_cifar_and_train_on_it(self):
        body, headers = multipart({"purpose": "fine-tune"}, "data_batch_1.bin", cifar10_batch(4))
        status, f, _ = self.d.request("POST", "/v1/files", body, headers=headers)
        self.assertEqual(status, 200, f)
        self.assertTrue(f["id"].startswith("file-"))
        self.assertEqual((f["object"], f["bytes"], f["purpose"], f["format"]), ("file", 40 * 3073, "fine-tune", "cifar10"))
        self.assertEqual(f["images"], 40)
        self.assertEqual(f["classes"][:2], [{"name": "airplane", "images": 4}, {"name": "automobile", "images": 4}])
        self.assertEqual(len(f["classes"]), 10)
        self.assertEqual(f["image_size"], {"min_width": 32, "min_height": 32, "max_width": 32, "max_height": 32})
        self.assertEqual(self.d.request("GET", f"/v1/files/{f['id']}")[1]["id"], f["id"])
        status, ds, _ = self.d.request("GET", "/v1/datasets")
        self.assertIn(f["id"], [x["id"] for x in ds["data"]])
        self.assertEqual(self.d.request("GET", "/v1/files/file-nope")[0], 404)

        job = tiny_job(epochs=1, training_file=f["id"])
        job["architecture"] = {"in_channels": 3, "image_size": 32}
        job["data"] = {"valid_fraction": 0.25}
        job["method"]["core_tuning"]["hyperparameters"]["batch_size"] = 10
        status, j, _ = self.d.request("POST", JOBS, job)
        self.assertEqual(status, 200, j)
        j = wait_for(self.d, j["id"], ("succeeded", "failed", "cancelled"))
        self.assertEqual(j["status"], "succeeded", j)

    def test_bad_uploads_store_nothing(self):
        before = self.uploads_on_disk()
        body, headers = multipart({"purpose": "fine-tune"}, "data_batch_1.bin", b"\x01" * (3073 * 400))  # 1.2 MB
        status, err, _ = self.d.request("POST", "/v1/files", body, headers=headers)
        self.assertEqual(status, 413, err)
        self.assertEqual(err["error"]["param"], "file")
        body, headers = multipart({"purpose": "fine-tune"}, "notes.txt", b"hello world" * 10)
        status, err, _ = self.d.request("POST", "/v1/files", body, headers=headers)
        self.assertEqual(status, 400, err)
        self.assertEqual(err["error"]["code"], "invalid_file_format")
        status, err, _ = self.d.request("POST", "/v1/files", {"file": "x"})
        self.assertEqual(status, 415, err)
        body, headers = multipart({"purpose": "fine-tune"}, "x", b"")
        status, err, _ = self.d.request("POST", "/v1/files", body.replace(b'name="file"', b'name="other"'),
                                        headers=headers)
        self.assertEqual(status, 400, err)
        self.assertEqual(self.uploads_on_disk(), before)
        self.assertEqual(self.d.request("GET", "/v1/files")[1]["data"], [])


if __name__ == "__main__":
    unittest.main()


class ConfigTest(unittest.TestCase):
    def test_config_file_datasets_and_bad_options(self):
        import subprocess
        import tempfile
        from harness import BIN
        tmp = tempfile.mkdtemp(prefix="coretuned-cfg-")
        try:
            with open(os.path.join(tmp, "data_batch_1.bin"), "wb") as f:
                f.write(cifar10_batch(2))
            cfg = os.path.join(tmp, "coretuned.conf")
            with open(cfg, "w") as f:
                f.write(f"# test config\nworkers 0\ndataset my-cifar={tmp}/data_batch_1.bin\n"
                        "sse-heartbeat 5\n")
            d = Daemon("--config", cfg).start()
            try:
                status, ds, _ = d.request("GET", "/v1/datasets")
                mine = [x for x in ds["data"] if x["id"] == "my-cifar"]
                self.assertEqual(len(mine), 1, ds)
                self.assertEqual((mine[0]["source"], mine[0]["format"], mine[0]["images"]), ("config", "cifar10", 20))
                status, job, _ = d.request("POST", "/v1/fine_tuning/jobs", tiny_job(training_file="my-cifar"))
                self.assertEqual(status, 200, job)
            finally:
                rc, _ = d.stop()
                d.cleanup()
            self.assertEqual(rc, 0)
            with open(cfg, "w") as f:
                f.write("workers lots\n")
            for args in (["--config", cfg], ["--workers", "1", "--threads-per-job", "1000"], ["--bogus"]):
                p = subprocess.run([os.path.join(BIN, "coretuned"), "--data-dir", tmp, *args],
                                   capture_output=True, timeout=10)
                self.assertEqual(p.returncode, 2, (args, p.stderr))
                self.assertTrue(p.stderr)
        finally:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
