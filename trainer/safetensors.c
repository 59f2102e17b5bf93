/* trainer/safetensors.c — safetensors reader and atomic writer (see safetensors.h).
 * The whole file is read into one buffer, placed so the data section starts 64-byte aligned.
 * The JSON header is parsed by jansson (one JSON parser in the project instead of a hand parser here),
 * rejecting duplicate keys and NUL characters; this file then checks the safetensors schema.
 * Every check failure returns a negative errno-style code (-EINVAL bad format, -EFBIG too large,
 * -ENOMEM, or the system's errno on I/O) and writes "<path>: <problem>" into err. Any thread; no
 * global state.
 */
#define _GNU_SOURCE /* mkostemp */
#include "safetensors.h"
#include "common/err.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_HEADER_MAX (100u * 1024u * 1024u) /* the format's own limit on the JSON header */
#define ST_ALIGN 64                           /* where we place the data section in memory */
#define ST_INT_MAX ((uint64_t)1 << 62)        /* sizes and offsets stay below: their sums cannot wrap */

struct st_file {
    char *path;
    unsigned char *alloc; /* the file's bytes live at alloc + shift */
    int n;
    st_tensor *t;
    int nmeta;
    const char **meta;    /* nmeta key, value pairs, borrowed from hdr */
    json_t *hdr;          /* the parsed header: owns every tensor name and metadata string */
};


static const char *const dtype_names[] = {
    [ST_F32] = "F32", [ST_F16] = "F16", [ST_BF16] = "BF16", [ST_F64] = "F64",
    [ST_I64] = "I64", [ST_I32] = "I32", [ST_U8] = "U8",
};
static const size_t dtype_sizes[] = {
    [ST_F32] = 4, [ST_F16] = 2, [ST_BF16] = 2, [ST_F64] = 8, [ST_I64] = 8, [ST_I32] = 4, [ST_U8] = 1,
};
#define ST_NDTYPES ((int)(sizeof dtype_sizes / sizeof dtype_sizes[0]))

/* ------------------------------------------------------------------------------------------------
 * Header schema: an object whose values are tensor entries
 * {"dtype": str, "shape": [uint...], "data_offsets": [uint, uint]} or the "__metadata__" object
 * of string values. jansson has already checked the JSON itself (syntax, UTF-8, escapes, no NUL,
 * no duplicate keys at any level). */

typedef struct entry {
    st_tensor t;
    uint64_t begin, end;
} entry;

/* jansson's text says what it saw ("... near 'x'"); its code says what kind of problem it is. */
static const char *json_problem(const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_out_of_memory: return "out of memory";
    case json_error_stack_overflow: return "nested too deep";
    case json_error_premature_end_of_input: return "truncated";
    case json_error_end_of_input_expected: return "trailing bytes after the object";
    case json_error_invalid_utf8: return "invalid UTF-8";
    case json_error_null_character:
    case json_error_null_byte_in_key: return "NUL character in a string";
    case json_error_duplicate_key: return "duplicate key";
    case json_error_numeric_overflow: return "number too large";
    default: return "syntax error";
    }
}

/* A non-negative JSON integer below ST_INT_MAX. */
static int get_uint(const json_t *v, uint64_t *out, const char *name, const char *what,
                    const char *path, char *err, size_t errlen)
{
    if (json_is_real(v))
        return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': %s must be an integer", name, what);
    if (!json_is_integer(v))
        return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': %s must be a non-negative integer", name, what);
    json_int_t x = json_integer_value(v);
    if (x < 0) return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': %s must not be negative", name, what);
    if ((uint64_t)x >= ST_INT_MAX) return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': %s is too large", name, what);
    *out = (uint64_t)x;
    return 0;
}

static int parse_tensor(entry *e, const char *name, json_t *obj, const char *path, char *err, size_t errlen)
{
    if (!json_is_object(obj))
        return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': entry is not an object", name);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': unknown field \"%.32s\"", name, key);
    }
    const json_t *dtype = json_object_get(obj, "dtype"), *shape = json_object_get(obj, "shape"),
                 *off = json_object_get(obj, "data_offsets");
    if (!dtype || !shape || !off)
        return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': missing %s", name,
                            !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    if (!json_is_string(dtype)) return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': dtype is not a string", name);
    const char *d = json_string_value(dtype);
    int k;
    for (k = 0; k < ST_NDTYPES; k++) if (!strcmp(d, dtype_names[k])) break;
    if (k == ST_NDTYPES) return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': unsupported dtype \"%.32s\"", name, d);
    e->t.dtype = (enum st_dtype)k;

    if (!json_is_array(shape)) return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': shape is not an array", name);
    if (json_array_size(shape) > ST_MAX_DIMS)
        return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': more than %d dimensions", name, ST_MAX_DIMS);
    e->t.ndim = (int)json_array_size(shape);
    for (int i = 0; i < e->t.ndim; i++) {
        uint64_t dim;
        int rc = get_uint(json_array_get(shape, (size_t)i), &dim, name, "a shape dimension", path, err, errlen);
        if (rc < 0) return rc;
        e->t.shape[i] = (int64_t)dim;
    }

    if (!json_is_array(off) || json_array_size(off) != 2)
        return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': data_offsets must be [begin, end]", name);
    int rc = get_uint(json_array_get(off, 0), &e->begin, name, "a data offset", path, err, errlen);
    if (rc == 0) rc = get_uint(json_array_get(off, 1), &e->end, name, "a data offset", path, err, errlen);
    return rc;
}

static int parse_metadata(st_file *f, json_t *obj, const char *path, char *err, size_t errlen)
{
    if (!json_is_object(obj)) return err_set_path(err, errlen, -EINVAL, path, "__metadata__ is not an object");
    f->meta = calloc(2 * json_object_size(obj) + 1, sizeof *f->meta);
    if (!f->meta) return err_set_path(err, errlen, -ENOMEM, path, "out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!json_is_string(v))
            return err_set_path(err, errlen, -EINVAL, path, "__metadata__ value of \"%.64s\" is not a string", key);
        f->meta[2 * f->nmeta] = key;
        f->meta[2 * f->nmeta + 1] = json_string_value(v);
        f->nmeta++;
    }
    return 0;
}

static int cmp_entry_begin(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

void st_close(st_file *f)
{
    if (!f) return;
    free(f->path);
    free(f->alloc);
    free(f->t);
    free(f->meta);
    json_decref(f->hdr);
    free(f);
}

static int read_full(int fd, void *buf, size_t n, off_t off)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n, off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (k == 0) return -EIO; /* the file shrank under us */
        p += k;
        n -= (size_t)k;
        off += k;
    }
    return 0;
}

int st_open(st_file **out, const char *path, char *err, size_t errlen)
{
    st_file *f = NULL;
    entry *ents = NULL, **order = NULL;
    int rc = 0, fd = -1;
    *out = NULL;
    if (err && errlen) err[0] = '\0';

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set_path(err, errlen, -errno, path, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) { rc = err_set_path(err, errlen, -errno, path, "cannot stat: %s", strerror(errno)); goto done; }
    if (!S_ISREG(sb.st_mode)) { rc = err_set_path(err, errlen, -EINVAL, path, "not a regular file"); goto done; }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) { rc = err_set_path(err, errlen, -EINVAL, path, "file too short (%llu bytes) for a safetensors header", (unsigned long long)size); goto done; }
    if (size > (uint64_t)SIZE_MAX / 2) { rc = err_set_path(err, errlen, -EFBIG, path, "file too large"); goto done; }

    unsigned char lenb[8];
    if ((rc = read_full(fd, lenb, 8, 0)) < 0) { rc = err_set_path(err, errlen, rc, path, "cannot read: %s", strerror(-rc)); goto done; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    if (hlen > ST_HEADER_MAX) { rc = err_set_path(err, errlen, -EFBIG, path, "header length %llu exceeds the 100 MB limit", (unsigned long long)hlen); goto done; }
    if (hlen > size - 8) { rc = err_set_path(err, errlen, -EINVAL, path, "header length %llu goes beyond the end of the file (%llu bytes)", (unsigned long long)hlen, (unsigned long long)size); goto done; }
    if (hlen < 2) { rc = err_set_path(err, errlen, -EINVAL, path, "header too short to be a JSON object"); goto done; }

    f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory"); goto done; }
    /* Place the file so its data section (offset 8 + hlen) lands on an ST_ALIGN boundary. */
    size_t shift = (ST_ALIGN - (size_t)((8 + hlen) % ST_ALIGN)) % ST_ALIGN;
    f->alloc = aligned_alloc(ST_ALIGN, ((size_t)size + shift + ST_ALIGN) / ST_ALIGN * ST_ALIGN);
    if (!f->alloc) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory for %llu bytes", (unsigned long long)size); goto done; }
    unsigned char *buf = f->alloc + shift;
    if ((rc = read_full(fd, buf, (size_t)size, 0)) < 0) { rc = err_set_path(err, errlen, rc, path, "cannot read: %s", strerror(-rc)); goto done; }
    const unsigned char *data = buf + 8 + hlen;
    uint64_t dsize = size - 8 - hlen;

    /* Duplicate keys would otherwise silently keep the last one (two tensors named alike, a dtype
     * given twice); NUL is rejected because jansson's default is to refuse it, so every name is a
     * C string. DECODE_ANY so that a non-object header gets our message below, not a syntax error. */
    json_error_t je;
    f->hdr = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!f->hdr) {
        rc = err_set_path(err, errlen, json_error_code(&je) == json_error_out_of_memory ? -ENOMEM : -EINVAL, path,
                          "invalid JSON header: %s at byte %d (%s)", json_problem(&je), je.position, je.text);
        goto done;
    }
    if (!json_is_object(f->hdr)) { rc = err_set_path(err, errlen, -EINVAL, path, "invalid JSON header: not an object"); goto done; }

    /* Every entry but "__metadata__" is a tensor; the 100 MB header bounds n far below INT_MAX. */
    json_t *meta = json_object_get(f->hdr, "__metadata__");
    int n = (int)json_object_size(f->hdr) - (meta != NULL);
    ents = calloc((size_t)n + 1, sizeof *ents);
    order = malloc(((size_t)n + 1) * sizeof *order);
    if (!ents || !order) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory"); goto done; }
    if (meta && (rc = parse_metadata(f, meta, path, err, errlen)) < 0) goto done;
    const char *key;
    json_t *v;
    int k = 0;
    json_object_foreach(f->hdr, key, v) { /* insertion order, so st_get keeps the header's order */
        if (v == meta) continue;
        ents[k].t.name = key;
        if ((rc = parse_tensor(&ents[k], key, v, path, err, errlen)) < 0) goto done;
        k++;
    }

    /* Shapes and offsets: size = numel * dtype size without overflow, inside the data section. */
    for (int i = 0; i < n; i++) {
        entry *e = &ents[i];
        uint64_t numel = 1;
        for (int d = 0; d < e->t.ndim; d++)
            if (__builtin_mul_overflow(numel, (uint64_t)e->t.shape[d], &numel) || numel > ST_INT_MAX) {
                rc = err_set_path(err, errlen, -EINVAL, path, "tensor '%s': shape product overflows", e->t.name);
                goto done;
            }
        uint64_t nbytes;
        if (__builtin_mul_overflow(numel, (uint64_t)dtype_sizes[e->t.dtype], &nbytes) || nbytes > ST_INT_MAX) {
            rc = err_set_path(err, errlen, -EINVAL, path, "tensor '%s': byte size overflows", e->t.name);
            goto done;
        }
        if (e->begin > e->end) {
            rc = err_set_path(err, errlen, -EINVAL, path, "tensor '%s': data_offsets [%llu, %llu] are reversed", e->t.name,
                      (unsigned long long)e->begin, (unsigned long long)e->end);
            goto done;
        }
        if (e->end > dsize) {
            rc = err_set_path(err, errlen, -EINVAL, path, "tensor '%s': data_offsets [%llu, %llu] go beyond the %llu data bytes",
                      e->t.name, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)dsize);
            goto done;
        }
        if (e->end - e->begin != nbytes) {
            rc = err_set_path(err, errlen, -EINVAL, path, "tensor '%s': data_offsets span %llu bytes but %s x shape needs %llu",
                      e->t.name, (unsigned long long)(e->end - e->begin), dtype_names[e->t.dtype], (unsigned long long)nbytes);
            goto done;
        }
        e->t.nbytes = (size_t)nbytes;
        e->t.data = data + e->begin;
        order[i] = e;
    }
    /* The tensors must tile the data section exactly: no overlap, no gap, nothing left over. */
    qsort(order, (size_t)n, sizeof *order, cmp_entry_begin);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        if (order[i]->begin < pos) {
            rc = err_set_path(err, errlen, -EINVAL, path, "tensors '%s' and '%s' overlap", order[i - 1]->t.name, order[i]->t.name);
            goto done;
        }
        if (order[i]->begin > pos) {
            rc = err_set_path(err, errlen, -EINVAL, path, "gap of %llu unused bytes before tensor '%s'",
                      (unsigned long long)(order[i]->begin - pos), order[i]->t.name);
            goto done;
        }
        pos = order[i]->end;
    }
    if (pos != dsize) {
        rc = err_set_path(err, errlen, -EINVAL, path, "%llu data bytes after the last tensor are not described by the header",
                  (unsigned long long)(dsize - pos));
        goto done;
    }

    f->n = n;
    f->t = malloc(((size_t)n + 1) * sizeof *f->t);
    if (!f->t) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory"); goto done; }
    for (int i = 0; i < n; i++) f->t[i] = ents[i].t; /* header order */
    *out = f;
    f = NULL;
    rc = 0;
done:
    if (fd >= 0) close(fd);
    free(ents);
    free(order);
    st_close(f);
    return rc;
}

int st_count(const st_file *f) { return f ? f->n : 0; }

const st_tensor *st_get(const st_file *f, int i)
{
    return f && i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++) /* linear: a model has a few hundred tensors, looked up once */
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

size_t st_numel(const st_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

static float half_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); /* inf / nan */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Data may be unaligned (other writers' headers have any length), hence memcpy per element. */
void st_to_f32(float *dst, const st_tensor *t)
{
    size_t n = st_numel(t);
    const unsigned char *s = t->data;
    switch (t->dtype) {
    case ST_F32: memcpy(dst, s, n * 4); break;
    case ST_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, s + 2 * i, 2); dst[i] = half_to_f32(h); }
        break;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h; memcpy(&h, s + 2 * i, 2);
            uint32_t b = (uint32_t)h << 16; float v; memcpy(&v, &b, 4); dst[i] = v;
        }
        break;
    case ST_F64:
        for (size_t i = 0; i < n; i++) { double v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; }
        break;
    case ST_I64:
        for (size_t i = 0; i < n; i++) { int64_t v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; }
        break;
    case ST_I32:
        for (size_t i = 0; i < n; i++) { int32_t v; memcpy(&v, s + 4 * i, 4); dst[i] = (float)v; }
        break;
    case ST_U8:
        for (size_t i = 0; i < n; i++) dst[i] = s[i];
        break;
    }
}

/* ------------------------------------------------------------------------------------------------
 * Writer. */

typedef struct sbuf { char *p; size_t len, cap; bool oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, tmp, (size_t)k);
}

static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = { '\\', (char)*p };
            sb_put(b, e, 2);
        } else if (*p < 0x20) {
            sb_fmt(b, "\\u%04x", *p);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int write_full(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int st_save(const char *path, const st_tensor *tensors, int n, const char *const *meta, int nmeta,
            char *err, size_t errlen)
{
    sbuf h = { 0 };
    char *tmp = NULL, *dirbuf = NULL;
    int fd = -1, rc = 0;
    if (err && errlen) err[0] = '\0';
    if (!path || n < 0 || nmeta < 0 || (n > 0 && !tensors) || (nmeta > 0 && !meta))
        return err_set_path(err, errlen, -EINVAL, path, "st_save: invalid arguments");

    /* Validate before touching the disk. */
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &tensors[i];
        if (!t->name || !strcmp(t->name, "__metadata__"))
            return err_set_path(err, errlen, -EINVAL, path, "tensor %d: missing or reserved name", i);
        if ((int)t->dtype < 0 || (int)t->dtype >= ST_NDTYPES)
            return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': bad dtype %d", t->name, (int)t->dtype);
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
            return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': bad ndim %d", t->name, t->ndim);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel))
                return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': bad shape", t->name);
        uint64_t nb;
        if (__builtin_mul_overflow(numel, (uint64_t)dtype_sizes[t->dtype], &nb) || nb != t->nbytes)
            return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': nbytes %zu does not match dtype x shape", t->name, t->nbytes);
        if (t->nbytes && !t->data) return err_set_path(err, errlen, -EINVAL, path, "tensor '%s': no data", t->name);
        for (int k = 0; k < i; k++)
            if (!strcmp(tensors[k].name, t->name)) return err_set_path(err, errlen, -EINVAL, path, "duplicate tensor name '%s'", t->name);
    }
    for (int i = 0; i < nmeta; i++) {
        if (!meta[2 * i] || !meta[2 * i + 1]) return err_set_path(err, errlen, -EINVAL, path, "metadata pair %d is NULL", i);
        for (int k = 0; k < i; k++)
            if (!strcmp(meta[2 * k], meta[2 * i])) return err_set_path(err, errlen, -EINVAL, path, "duplicate metadata key '%s'", meta[2 * i]);
    }

    sb_put(&h, "{", 1);
    if (nmeta > 0) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) sb_put(&h, ",", 1);
            sb_json_string(&h, meta[2 * i]);
            sb_put(&h, ":", 1);
            sb_json_string(&h, meta[2 * i + 1]);
        }
        sb_put(&h, "}", 1);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &tensors[i];
        if (i || nmeta > 0) sb_put(&h, ",", 1);
        sb_json_string(&h, t->name);
        sb_fmt(&h, ":{\"dtype\":\"%s\",\"shape\":[", dtype_names[t->dtype]);
        for (int d = 0; d < t->ndim; d++) sb_fmt(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        sb_fmt(&h, "],\"data_offsets\":[%llu,", (unsigned long long)off);
        off += t->nbytes;
        sb_fmt(&h, "%llu]}", (unsigned long long)off);
    }
    sb_put(&h, "}", 1);
    while ((8 + h.len) % 8) sb_put(&h, " ", 1); /* data section starts 8-byte aligned */
    if (h.oom) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory"); goto done; }
    if (h.len > ST_HEADER_MAX) { rc = err_set_path(err, errlen, -EFBIG, path, "header too large"); goto done; }

    size_t plen = strlen(path);
    tmp = malloc(plen + 16);
    dirbuf = strdup(path);
    if (!tmp || !dirbuf) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory"); goto done; }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) { rc = err_set_path(err, errlen, -errno, path, "cannot create %s: %s", tmp, strerror(errno)); free(tmp); tmp = NULL; goto done; }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    if ((rc = write_full(fd, lenb, 8)) < 0 || (rc = write_full(fd, h.p, h.len)) < 0) goto io;
    for (int i = 0; i < n; i++)
        if (tensors[i].nbytes && (rc = write_full(fd, tensors[i].data, tensors[i].nbytes)) < 0) goto io;
    /* mode: mkostemp's 0600 (weights and optimizer state are the owner's; the daemon keeps its data dir private) */
    if (fsync(fd) < 0) { rc = -errno; goto io; }
    if (close(fd) < 0) { fd = -1; rc = -errno; goto io; }
    fd = -1;
    if (rename(tmp, path) < 0) { rc = -errno; goto io; }
    free(tmp);
    tmp = NULL; /* renamed: nothing to unlink any more */
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        rc = err_set_path(err, errlen, -errno, path, "cannot fsync the directory: %s", strerror(errno));
        if (dfd >= 0) close(dfd);
        goto done;
    }
    close(dfd);
    rc = 0;
    goto done;
io:
    rc = err_set_path(err, errlen, rc, path, "write failed: %s", strerror(-rc));
done:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
    free(dirbuf);
    free(h.p);
    return rc;
}
