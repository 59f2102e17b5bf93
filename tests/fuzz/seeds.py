#!/usr/bin/python3
# tests/fuzz/seeds.py — writes the committed seed corpora (tests/fuzz/corpus/<target>/), a few small valid
# inputs per target for libFuzzer to mutate from. Python standard library only; the two JPEGs were
# encoded once with libjpeg (8x8 gray baseline, 12x10 RGB progressive, quality 30). Rerun after
# changing a seed: python3 tests/fuzz/seeds.py
import json, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
JPEG_GRAY = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb0043001b12141714111b1716171e1c1b2028422b28252528513a3d3042605565645f555d5b6a7899816a7190735b5d85b586909ea3abadab6780bcc9baa6c799a8aba4ffc0000b080008000801011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00ce82cfdabfffd9")
JPEG_RGB = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb0043001b12141714111b1716171e1c1b2028422b28252528513a3d3042605565645f555d5b6a7899816a7190735b5d85b586909ea3abadab6780bcc9baa6c799a8aba4ffdb0043011c1e1e2823284e2b2b4ea46e5d6ea4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4a4ffc2001108000a000c03012200021101031101ffc400160001010100000000000000000000000000040102ffc40014010100000000000000000000000000000000ffda000c030100021003100000019940cfffc400191001000203000000000000000000000000020003123143ffda0008010100010502a8476acb91d7ffc40014110100000000000000000000000000000000ffda0008010301013f017fffc40014110100000000000000000000000000000000ffda0008010201013f017fffc4001a100001050100000000000000000000000000010210212271ffda0008010100063f0230b43b91ffc4001a1000020203000000000000000000000000000111311021b1ffda0008010100013f2109250aeaace9c3ffda000c03010002000300000010c3ffc4001511010100000000000000000000000000000041ffda0008010301013f108fffc400161101010100000000000000000000000000011100ffda0008010201013f1062c77fffc4001a1001000300030000000000000000000000010021311161c1ffda0008010100013f10caa3b24481ecc294a7c213854fffd9")


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def png(w, h, color_type, depth=8, rows=None, interlace=0, palette=None):
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    if rows is None:
        rows = [bytes((x * 31 + y * 17) % 256 for x in range(w * chans * depth // 8)) for y in range(h)]
    raw = b"".join(b"\0" + r for r in rows)
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xFFFFFFFF)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def idx_images(n, h, w):
    return struct.pack(">BBBBIII", 0, 0, 8, 3, n, h, w) + bytes((i * 37) % 256 for i in range(n * h * w))


def idx_labels(labels):
    return struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + bytes(labels)


def data_input(fmt, opt, a, b=b""):
    return bytes([fmt, opt]) + struct.pack("<H", len(a)) + a + b


# fuzz_jobspec: job bodies
put("jobspec", "minimal.json", '{"model":"resnet20","training_file":"fashion-mnist-train"}')
put("jobspec", "core.json", json.dumps({
    "model": "resnet20", "training_file": "fashion-mnist-train", "validation_file": "fashion-mnist-test",
    "seed": 7, "suffix": "fz", "metadata": {"k": "v"},
    "method": {"type": "core_tuning", "core_tuning": {"hyperparameters": {
        "n_epochs": 2, "batch_size": 16, "learning_rate": 0.05, "eta": 0.5, "mixup_alpha": 0.2,
        "temperature": 0.5, "lr_schedule": "cosine", "variant": "reference", "warmup_steps": "auto"}}},
    "architecture": {"in_channels": 1, "image_size": 28, "small_stem": True},
    "data": {"train_limit": 64, "valid_fraction": 0.1, "augment": False}}))
put("jobspec", "simclr.json", json.dumps({
    "model": "resnet18", "training_file": "/data/x", "method": {"type": "simclr", "simclr": {
        "hyperparameters": {"temperature": 0.2, "contrast_dim": 64, "nesterov": True}}},
    "data": {"train_per_class": 5, "valid_every": 1}}))
put("jobspec", "ce_bad.json", '{"model":"ft:resnet20:x:ftjob-1","training_file":"a","method":{"type":"ce_tuning",'
    '"ce_tuning":{"hyperparameters":{"eta":1,"n_epochs":-1}}},"extra":[1,2,{"x":null}]}')

# fuzz_safetensors: small valid files
def safetensors(tensors, meta=None):
    hdr, blob = {}, b""
    for name, dtype, shape, data in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if meta:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + blob

put("safetensors", "f32.safetensors", safetensors([("w", "F32", [2, 2], struct.pack("<4f", 1, -2, 0.5, 3))],
                                                  {"format": "pt", "arch": "resnet20"}))
put("safetensors", "mixed.safetensors", safetensors([
    ("a", "F16", [3], struct.pack("<3H", 0x3C00, 0x0001, 0x7C00)), ("b", "BF16", [1, 1], struct.pack("<H", 0x3F80)),
    ("c", "F64", [], struct.pack("<d", 1e300)), ("d", "I64", [2], struct.pack("<2q", -1, 2 ** 40)),
    ("e", "I32", [1], struct.pack("<i", -7)), ("f", "U8", [2, 0], b""), ("g", "U8", [3], b"\x01\x02\xff")]))
put("safetensors", "empty.safetensors", safetensors([]))

# fuzz_data: byte 0 format (0 idx, 1 idx.gz, 2 cifar10, 3 cifar100, 4 cifar by size, 5 png, 6 jpeg,
# 7 two classes), byte 1 options, bytes 2-3 split
put("data", "idx", data_input(0, 0x00, idx_images(3, 4, 5), idx_labels([0, 2, 1])))
put("data", "idx_resize_file", data_input(0, 0x80 | 0x02 | 0x04 | 0x20, idx_images(2, 3, 3), idx_labels([1, 0])))
put("data", "idx_gz", data_input(1, 0x15, idx_images(2, 2, 2), idx_labels([0, 1])))
put("data", "cifar10", data_input(2, 0x80, bytes([3]) + bytes(range(256)) * 12))
put("data", "cifar100", data_input(3, 0x80 | 0x40 | 0x01, bytes([4, 55]) + bytes(range(256)) * 12))
put("data", "cifar_by_size", data_input(4, 0x00, bytes([9]) + bytes(3072)))
put("data", "png_rgb", data_input(5, 0x00, png(3, 2, 2)))
put("data", "png_palette_interlaced", data_input(5, 0x05, png(5, 4, 3, rows=[bytes([0, 1, 2, 0, 1])] * 4,
                                                               interlace=1, palette=bytes(range(9)))))
put("data", "png_gray16_alpha", data_input(5, 0x0A, png(2, 2, 4, depth=16)))
put("data", "png_gray1", data_input(5, 0x01, png(9, 3, 0, depth=1)))
put("data", "jpeg_gray", data_input(6, 0x00, JPEG_GRAY))
put("data", "jpeg_rgb_progressive", data_input(6, 0x39, JPEG_RGB))
put("data", "two_classes", data_input(7, 0x16, png(4, 4, 6), JPEG_GRAY))

# fuzz_http: raw requests
def req(method, path, headers=(), body=b""):
    if isinstance(body, str):
        body = body.encode()
    h = "".join("%s: %s\r\n" % kv for kv in headers)
    if body:
        h += "Content-Length: %d\r\n" % len(body)
    return ("%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method, path, h)).encode() + body

job = '{"model":"resnet20","training_file":"fashion-mnist-train","method":{"type":"core_tuning"},"data":{"train_limit":8}}'
put("http", "healthz", req("GET", "/healthz"))
put("http", "job_create", req("POST", "/v1/fine_tuning/jobs", [("Content-Type", "application/json"),
                                                                ("Idempotency-Key", "k1")], job))
put("http", "job_create_root_path", req("POST", "/v1/fine_tuning/jobs", [("Content-Type", "application/json")],
                                        '{"model":"resnet20","training_file":"$ROOT/train-images-idx3-ubyte","suffix":"s"}'))
put("http", "job_list", req("GET", "/v1/fine_tuning/jobs?limit=2&after=ftjob-abc"))
# "$JOB" is replaced by the id of a job the harness queues at start, "$ROOT" by its dataset root
put("http", "job_get_pause_resume", req("GET", "/v1/fine_tuning/jobs/$JOB") + req("POST", "/v1/fine_tuning/jobs/$JOB/pause")
    + req("POST", "/v1/fine_tuning/jobs/$JOB/resume") + req("GET", "/v1/fine_tuning/jobs/$JOB/other"))
put("http", "job_cancel", req("POST", "/v1/fine_tuning/jobs/$JOB/cancel") + req("POST", "/v1/fine_tuning/jobs/ftjob-1/cancel"))
put("http", "job_events", req("GET", "/v1/fine_tuning/jobs/$JOB/events?after=ftevent-0&limit=2"))
put("http", "job_events_stream", req("GET", "/v1/fine_tuning/jobs/$JOB/events?stream=true&after=ftevent-3",
                                     [("Accept", "text/event-stream"), ("Last-Event-ID", "ftevent-2")]))
put("http", "job_metrics", req("GET", "/v1/fine_tuning/jobs/$JOB/metrics?names=loss,acc&max_points=3&after_step=1"))
put("http", "job_checkpoints", req("GET", "/v1/fine_tuning/jobs/$JOB/checkpoints?after=ftckpt-1&limit=1"))
put("http", "models", req("GET", "/v1/models") + req("GET", "/v1/models/resnet20/content?which=best"))
put("http", "admin", req("GET", "/metrics") + req("GET", "/v1/users") + req("GET", "/v1/audit?before=10&limit=1"))
put("http", "me_files", req("GET", "/v1/me/") + req("GET", "/v1/files") + req("GET", "/v1/datasets") + req("HEAD", "/readyz"))
put("http", "static", req("GET", "/web/../Makefile") + req("GET", "/?token=abc") + req("GET", "/web/app.js"))
put("http", "chunked", b"POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
put("http", "wrong_method", req("DELETE", "/v1/files/file-x") + req("OPTIONS", "/v1/models"))

# fuzz_multipart: bodies of POST /v1/files with boundary "fuzzb"
def form(parts):
    out = b""
    for name, filename, data in parts:
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % filename if filename else "")
        out += b"--fuzzb\r\nContent-Disposition: " + disp.encode() + b"\r\n"
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + b"--fuzzb--\r\n"

put("multipart", "cifar10", form([("purpose", None, b"fine-tune"), ("file", "data_batch_1.bin", bytes([2]) + bytes(3072))]))
put("multipart", "cifar_by_size", form([("file", "x.bin", bytes([1, 3]) + bytes(3072))]))
put("multipart", "idx_images", form([("file", "train-images-idx3-ubyte", idx_images(1, 2, 2))]))
def tar_of(members):
    import io, tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 0
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def zip_of(members):
    import io, zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


FOLDER = [("cat/1.png", png(2, 2, 0)), ("dog/1.png", png(3, 2, 2)), ("dog/notes.txt", b"x")]
put("multipart", "tar_folder", form([("file", "f.tar", tar_of(FOLDER))]))
put("multipart", "zip_folder", form([("file", "f.zip", zip_of([("top/" + n, d) for n, d in FOLDER]))]))
put("multipart", "idx_pair", form([("file", "l", idx_labels([0, 1])), ("file", "i", idx_images(2, 2, 2))]))
put("multipart", "junk_then_file", form([("other", None, b"1"), ("file", "a b/../c.bin", b"not a dataset")]))

# progline: one of each line coretune train writes (spec/progline.h)
for name, line in (
        ("start", '{"type":"start","resumed":false,"step":0}'),
        ("step", '{"type":"step","step":1,"total_steps":12,"epoch":1,"epochs":2,"train_loss":3.0628353585357466,'
                 '"ce_loss":2.6975274501475774,"contrastive_loss":3.6530790294465731,"lr":0.050000000000000003,'
                 '"images_per_second":262.54351915230563,"eta_seconds":null}'),
        ("epoch", '{"type":"epoch","step":6,"total_steps":12,"epoch":1,"epochs":2,"valid_loss":2.1971340439360114,'
                  '"valid_accuracy":0.171875}'),
        ("checkpoint", '{"type":"checkpoint","step":6,"total_steps":12,"epoch":1,"epochs":2,'
                       '"path":"/tmp/o1/state.safetensors"}'),
        ("summary", '{"type":"summary","status":"succeeded","steps":12,"epochs":2,"best_valid_accuracy":0.234375,'
                    '"final_valid_accuracy":0.234375,"final_valid_loss":1.8830554292827868,"best_epoch":2,'
                    '"peak_bytes":81308588}'),
        ("error", '{"type":"error","code":-28,"message":"No space left on device"}')):
    put("progline", name, line + "\n")
