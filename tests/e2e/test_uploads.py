"""Dataset uploads over POST /v1/files (core/dataset_upload.c, core/unpack.c): an image folder uploaded
as an archive (tar.gz, zip with a top folder) reports its classes, counts and image sizes, and a job on it
reaches exactly the validation accuracy of the same folder named by path in a dataset root; a table of
hostile archives (traversal, absolute path, links, devices, bombs, too many entries, not an archive,
no images, images that do not decode) is refused with its status and message and leaves nothing on
disk; the check runs off the loop (other requests are answered meanwhile; a shutdown mid-check answers
503 and stores nothing); an IDX images + labels pair (one gzipped, one not) as two file parts;
`coretune upload DIR`.
The images are Fashion-MNIST test images written as PNGs here (3 classes x 24, deterministic)."""
import gzip
import http.client
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
import unittest
import uuid
import zipfile
import zlib

from harness import BIN, Daemon, DaemonTest, tiny_job, wait_for

FMNIST = "/usr/share/datasets/fashion-mnist"
CLASSES = {0: "tshirt", 1: "trouser", 7: "sneaker"}
PER_CLASS = 24


def multipart(fields, files):
    """files: [(filename, bytes)], each a part named "file"."""
    boundary = uuid.uuid4().hex
    out = b""
    for k, v in fields.items():
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
    for name, payload in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + payload + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png(w, h, gray):
    """A grayscale 8-bit PNG (zlib + CRCs by hand: no imaging library needed)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    raw = b"".join(b"\x00" + gray[y * w:(y + 1) * w] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def fashion(n_images):
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        f.read(16)
        pix = f.read(784 * n_images)
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        labels = f.read(n_images)
    return pix, labels


def make_folder(root):
    """CLASSES x PER_CLASS PNGs of 28x28 from the first Fashion-MNIST test images; returns their bytes."""
    pix, labels = fashion(1000)
    count = {c: 0 for c in CLASSES}
    total = 0
    for i, lab in enumerate(labels):
        if lab in CLASSES and count[lab] < PER_CLASS:
            d = os.path.join(root, CLASSES[lab])
            os.makedirs(d, exist_ok=True)
            data = png(28, 28, pix[i * 784:(i + 1) * 784])
            with open(os.path.join(d, f"{count[lab]:03d}.png"), "wb") as f:
                f.write(data)
            count[lab] += 1
            total += len(data)
    assert all(v == PER_CLASS for v in count.values()), count
    return total


def tar_bytes(members, mode="w:gz"):
    """members: [(TarInfo fields dict, bytes or None)]."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            ti = tarfile.TarInfo(info.pop("name"))
            for k, v in info.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def good_png():
    return png(4, 4, bytes(range(16)))


def on_disk(data_dir):
    """Everything under files/ (names relative to it) besides the empty tmp folder."""
    out = []
    for dirpath, dirs, names in os.walk(os.path.join(data_dir, "files")):
        rel = os.path.relpath(dirpath, os.path.join(data_dir, "files"))
        out += [os.path.normpath(os.path.join(rel, n)) for n in dirs + names]
    out.remove("tmp")
    return sorted(out)


@unittest.skipUnless(os.path.isdir(FMNIST), "needs Debian's dataset-fashion-mnist")
class ImageFolderUploadTest(DaemonTest):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="coretuned-ds-")
        self.folder = os.path.join(self.root, "train")
        self.png_bytes = make_folder(self.folder)
        self.args = ("--workers", "1", "--threads-per-job", "1", "--dataset-root", self.root)
        super().setUp()

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.root, ignore_errors=True)

    def upload(self, name, payload, want=200):
        body, headers = multipart({"purpose": "fine-tune"}, [(name, payload)])
        status, f, _ = self.d.request("POST", "/v1/files", body, headers=headers, timeout=60)
        self.assertEqual(status, want, f)
        return f

    def check_report(self, f):
        self.assertEqual((f["format"], f["images"], f["bytes"]), ("imagefolder", 3 * PER_CLASS, self.png_bytes), f)
        self.assertEqual(f["classes"], [{"name": n, "images": PER_CLASS} for n in sorted(CLASSES.values())])
        self.assertEqual(f["image_size"], {"min_width": 28, "min_height": 28, "max_width": 28, "max_height": 28})

    def test_archive_trains_like_the_folder_by_path(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:  # entries relative to the folder, plus a README
            for cls in sorted(os.listdir(self.folder)):
                t.add(os.path.join(self.folder, cls), arcname=cls)
            info = tarfile.TarInfo("README.txt")
            info.size = 5
            t.addfile(info, io.BytesIO(b"hello"))
        f = self.upload("train.tar.gz", buf.getvalue())
        self.check_report(f)
        got = self.d.request("GET", f"/v1/files/{f['id']}")[1]
        self.assertEqual(got, f)
        self.assertEqual(self.d.request("GET", "/v1/files")[1]["data"], [f])
        ds = [x for x in self.d.request("GET", "/v1/datasets")[1]["data"] if x["id"] == f["id"]]
        self.assertEqual([(x["source"], x["format"], x["images"], x["classes"], x["bytes"]) for x in ds],
                         [("upload", "imagefolder", 3 * PER_CLASS, 3, self.png_bytes)])
        self.assertEqual(on_disk(self.d.data_dir)[0], f["id"])
        self.assertEqual(os.listdir(os.path.join(self.d.data_dir, "files", "tmp")), [])  # the archive is gone
        self.assertFalse(os.path.exists(os.path.join(self.d.data_dir, "files", f["id"], "README.txt")))

        zbuf = io.BytesIO()  # the same folder as a zip with its top folder ("train/<class>/..."): stripped
        with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
            for cls in sorted(os.listdir(self.folder)):
                for n in sorted(os.listdir(os.path.join(self.folder, cls))):
                    z.write(os.path.join(self.folder, cls, n), f"train/{cls}/{n}")
        self.check_report(self.upload("train.zip", zbuf.getvalue()))

        results = []
        for training_file in (f["id"], self.folder):
            job = tiny_job(epochs=1, training_file=training_file)
            job["data"] = {"valid_fraction": 0.25, "augment": False}
            job["method"]["core_tuning"]["hyperparameters"]["batch_size"] = 9
            status, j, _ = self.d.request("POST", "/v1/fine_tuning/jobs", job)
            self.assertEqual(status, 200, j)
            j = wait_for(self.d, j["id"], ("succeeded", "failed", "cancelled"))
            self.assertEqual(j["status"], "succeeded", j)
            results.append((j["final_valid_accuracy"], j["best_valid_accuracy"]))
        self.assertEqual(results[0], results[1])
        self.assertIsNotNone(results[0][0])


class HostileUploadTest(DaemonTest):
    args = ("--workers", "0", "--max-upload-mb", "8", "--max-extract-mb", "3", "--max-extract-entries", "40")

    def test_hostile_archives_are_refused_and_leave_nothing(self):
        ok = good_png()
        zeros = b"\x00" * (6 << 20)
        zbomb = io.BytesIO()
        with zipfile.ZipFile(zbomb, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("a/ok.png", ok)
            z.writestr("a/bomb.png", zeros)
        zlink = io.BytesIO()
        with zipfile.ZipFile(zlink, "w") as z:
            z.writestr("a/ok.png", ok)
            info = zipfile.ZipInfo("a/l.png")
            info.create_system, info.external_attr = 3, (0o120777 << 16)  # a Unix symlink
            z.writestr(info, "/etc/passwd")
        many = [({"name": f"a/{i}.png"}, ok) for i in range(41)]
        cases = [
            ("traversal", tar_bytes([({"name": "a/ok.png"}, ok), ({"name": "../x.png"}, ok)]), 400, '"..\" is refused'),
            ("inner traversal", tar_bytes([({"name": "a/../../x.png"}, ok)]), 400, '".." is refused'),
            ("absolute path", tar_bytes([({"name": "/tmp/x.png"}, ok)]), 400, "absolute paths are refused"),
            ("symlink", tar_bytes([({"name": "a/ok.png"}, ok),
                                   ({"name": "a/l.png", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None)]),
             400, "symbolic links are refused"),
            ("zip symlink", zlink.getvalue(), 400, "symbolic links are refused"),
            ("hard link", tar_bytes([({"name": "a/ok.png"}, ok),
                                     ({"name": "a/h.png", "type": tarfile.LNKTYPE, "linkname": "a/ok.png"}, None)]),
             400, "hard links are refused"),
            ("device", tar_bytes([({"name": "a/d.png", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)]),
             400, "device files, fifos and sockets are refused"),
            ("fifo", tar_bytes([({"name": "a/f.png", "type": tarfile.FIFOTYPE}, None)]),
             400, "device files, fifos and sockets are refused"),
            ("gzip bomb (ratio)", tar_bytes([({"name": "a/ok.png"}, ok), ({"name": "a/z.png"}, zeros[:2 << 20])]),
             413, "expands more than 100 times"),
            ("zip bomb (ratio)", zbomb.getvalue(), 413, "expands"),
            ("over max-extract-mb", tar_bytes([({"name": "a/r.png"}, os.urandom(4 << 20))], mode="w"),
             413, "expands past 3145728 bytes"),
            ("too many entries", tar_bytes(many), 413, "more than 40 entries"),
            ("not an archive", b"PK\x03\x04 this is not really a zip" + os.urandom(3000), 400, "not a data set"),
            ("no images", tar_bytes([({"name": "README.txt"}, b"hello"), ({"name": "a/notes.txt"}, b"x")]),
             400, "no PNG or JPEG images"),
            ("an image that does not decode", tar_bytes([({"name": "a/ok.png"}, ok), ({"name": "b/bad.png"}, b"GIF89a")]),
             400, "b/bad.png: neither a PNG nor a JPEG"),
            ("truncated PNG", tar_bytes([({"name": "a/ok.png"}, ok), ({"name": "b/cut.png"}, ok[:-20])]),
             400, "b/cut.png: bad PNG"),
            ("unsupported image type", tar_bytes([({"name": "a/x.bmp"}, b"BM")]), 400, "PNG and JPEG only"),
            ("duplicate entry", tar_bytes([({"name": "a/ok.png"}, ok), ({"name": "a/./ok.png"}, ok)]),
             400, "appears twice"),
        ]
        before = on_disk(self.d.data_dir)
        for name, payload, want, message in cases:
            with self.subTest(name):
                body, headers = multipart({"purpose": "fine-tune"}, [("x.tar.gz", payload)])
                status, err, _ = self.d.request("POST", "/v1/files", body, headers=headers, timeout=60)
                self.assertEqual(status, want, (name, err))
                self.assertIn(message, err["error"]["message"], name)
                self.assertEqual(err["error"]["param"], "file", name)
                self.assertNotIn(self.d.data_dir, err["error"]["message"], name)  # no server path leaks
                self.assertEqual(on_disk(self.d.data_dir), before, name)
                self.assertEqual(os.listdir(os.path.join(self.d.data_dir, "files", "tmp")), [], name)
        self.assertEqual(self.d.request("GET", "/v1/files")[1]["data"], [])


def big_archive(n):
    """n Fashion-MNIST PNGs in 10 class folders: an upload whose check takes a while (~0.3 s per 1000)."""
    pix, labels = fashion(n)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for i in range(n):
            data = png(28, 28, pix[i * 784:(i + 1) * 784])
            ti = tarfile.TarInfo(f"c{labels[i]}/{i:05d}.png")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def send_upload(d, payload):
    """POST the upload and return the connection once the whole body is sent (the reply still to come)."""
    import http.client
    body, headers = multipart({"purpose": "fine-tune"}, [("big.tar.gz", payload)])
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
    conn.request("POST", "/v1/files", body, headers=dict(headers, Authorization=f"Bearer {d.token}"))
    return conn


@unittest.skipUnless(os.path.isdir(FMNIST), "needs Debian's dataset-fashion-mnist")
class CheckOffTheLoopTest(DaemonTest):
    args = ("--workers", "0")

    def test_other_requests_are_served_during_a_check(self):
        import threading
        conn = send_upload(self.d, big_archive(6000))
        reply = {}

        def wait():
            r = conn.getresponse()
            reply["status"], reply["body"] = r.status, json.loads(r.read())

        t = threading.Thread(target=wait)
        t.start()
        served_meanwhile = 0
        while t.is_alive():  # the loop answers while the check runs (on the loop, none would come back before it)
            if self.d.request("GET", "/healthz", token=None)[0] == 200 and t.is_alive():
                served_meanwhile += 1
        t.join()
        self.assertEqual(reply["status"], 200, reply)
        self.assertEqual(reply["body"]["images"], 6000)
        self.assertGreater(served_meanwhile, 0)

    def test_shutdown_during_a_check_stores_nothing(self):
        conn = send_upload(self.d, big_archive(6000))
        time.sleep(0.3)  # the body is in; the check is under way
        rc, _ = self.d.stop()
        self.assertEqual(rc, 0, self.d.read_log())
        r = conn.getresponse()  # resumed and answered before the listener closed
        self.assertEqual(r.status, 503)
        self.assertEqual(json.loads(r.read())["error"]["code"], "shutting_down")
        self.assertEqual(on_disk(self.d.data_dir), [])
        self.assertEqual(os.listdir(os.path.join(self.d.data_dir, "files", "tmp")), [])
        self.d.start()  # for tearDown's clean stop and integrity check
        self.assertEqual(self.d.request("GET", "/v1/files")[1]["data"], [])


class ExpandedQuotaTest(DaemonTest):
    args = ("--workers", "0", "--quota", "upload_mb=1", "--max-extract-ratio", "1000")

    def test_the_quota_counts_what_an_archive_expands_to(self):
        img = png(64, 64, os.urandom(64 * 64))  # ~4 KiB that gzip finds again in every copy
        payload = tar_bytes([({"name": f"a/{i}.png"}, img) for i in range(300)])
        self.assertLess(len(payload), 1 << 20)
        body, headers = multipart({}, [("x.tar.gz", payload)])
        status, err, _ = self.d.request("POST", "/v1/files", body, headers=headers)
        self.assertEqual(status, 429, err)
        self.assertIn("upload_bytes", err["error"]["message"])
        self.assertEqual(on_disk(self.d.data_dir), [])
        self.assertEqual(os.listdir(os.path.join(self.d.data_dir, "files", "tmp")), [])


@unittest.skipUnless(os.path.isdir(FMNIST), "needs Debian's dataset-fashion-mnist")
class IdxPairUploadTest(DaemonTest):
    args = ("--workers", "1", "--threads-per-job", "1")

    def test_idx_pair_gzipped_and_plain(self):
        n = 300
        pix, labels = fashion(n)
        images = gzip.compress(struct.pack(">IIII", 0x803, n, 28, 28) + pix)
        lab = struct.pack(">II", 0x801, n) + labels
        # labels first: the parts are told apart by their headers, not their order or names
        body, headers = multipart({"purpose": "fine-tune"}, [("l.bin", lab), ("imgs.gz", images)])
        status, f, _ = self.d.request("POST", "/v1/files", body, headers=headers)
        self.assertEqual(status, 200, f)
        self.assertEqual((f["format"], f["images"], f["filename"], f["bytes"]), ("idx", n, "imgs.gz", len(images) + len(lab)))
        self.assertEqual(f["classes"], [{"name": str(c), "images": labels.count(bytes([c]))} for c in range(10)])
        self.assertEqual(f["image_size"], {"min_width": 28, "min_height": 28, "max_width": 28, "max_height": 28})
        job = tiny_job(epochs=1, training_file=f["id"], data={"train_limit": 200, "valid_limit": 100, "augment": False})
        status, j, _ = self.d.request("POST", "/v1/fine_tuning/jobs", job)
        self.assertEqual(status, 200, j)
        self.assertEqual(wait_for(self.d, j["id"], ("succeeded", "failed"))["status"], "succeeded")

        before = on_disk(self.d.data_dir)
        bomb = gzip.compress(struct.pack(">IIII", 0x803, 200000, 28, 28) + bytes(784 * 200000))
        bad = [
            ([("a", images), ("b", images)], 400, "not two images files"),
            ([("a", images), ("b", b"hello world")], 400, "neither IDX images"),
            ([("a", images), ("b", struct.pack(">II", 0x801, n - 1) + labels[:-1])], 400, "labels for"),
            ([("a", bomb), ("b", struct.pack(">II", 0x801, 200000) + bytes(200000))], 413, "expand more than 100 times"),
            ([("a", images), ("b", lab), ("c", lab)], 400, "at most 2 'file' parts"),
        ]
        for parts, want, message in bad:
            body, headers = multipart({}, parts)
            status, err, _ = self.d.request("POST", "/v1/files", body, headers=headers)
            self.assertEqual(status, want, err)
            self.assertIn(message, err["error"]["message"])
            self.assertEqual(on_disk(self.d.data_dir), before)
            self.assertEqual(os.listdir(os.path.join(self.d.data_dir, "files", "tmp")), [])


@unittest.skipUnless(os.path.isdir(FMNIST), "needs Debian's dataset-fashion-mnist")
class CLIUploadDirTest(DaemonTest):
    args = ("--workers", "0",)

    def test_coretune_upload_dir(self):
        tmp = tempfile.mkdtemp(prefix="coretune-up-")
        try:
            folder = os.path.join(tmp, "my data")
            png_bytes = make_folder(folder)
            os.symlink("/etc/passwd", os.path.join(folder, "tshirt", "link.png"))  # skipped by the client
            env = {k: v for k, v in os.environ.items() if not k.startswith("CORETUNE_")}
            env.update(XDG_CONFIG_HOME=os.path.join(tmp, "xdg"), CORETUNE_URL=f"http://127.0.0.1:{self.d.port}",
                       CORETUNE_TOKEN=self.d.token)
            p = subprocess.run([os.path.join(BIN, "coretune"), "upload", folder + "/", "--json"], capture_output=True,
                               text=True, env=env, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("link.png: skipped", p.stderr)
            f = json.loads(p.stdout)
            self.assertEqual((f["format"], f["images"], f["bytes"], f["filename"]),
                             ("imagefolder", 3 * PER_CLASS, png_bytes, "my data.tar.gz"))
            self.assertEqual([c["images"] for c in f["classes"]], [PER_CLASS] * 3)
            p = subprocess.run([os.path.join(BIN, "coretune"), "upload", folder], capture_output=True, text=True,
                               env=env, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("imagefolder", p.stdout)
            self.assertIn(f"  sneaker{' ' * 24}{PER_CLASS}", p.stdout)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
