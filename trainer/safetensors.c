/* trainer/safetensors.c — safetensors reader and atomic writer (see safetensors.h).
 * The whole file is read into one buffer, placed so the data section starts 64-byte aligned;
 * the JSON header is parsed by a small strict parser (trainer/ does not depend on jansson) that
 * accepts exactly the safetensors schema. Every check failure returns a negative errno-style code
 * (-EINVAL bad format, -EFBIG too large, -ENOMEM, or the system's errno on I/O) and writes
 * "<path>: <problem>" into err. Any thread; no global state.
 */
#define _GNU_SOURCE /* mkostemp */
#include "safetensors.h"
#include "common/err.h"
#include <errno.h>
#include <fcntl.h>
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

struct st_file {
    char *path;
    unsigned char *alloc; /* the file's bytes live at alloc + shift */
    int n;
    st_tensor *t;
    int nmeta;
    char **meta;          /* nmeta key, value pairs */
    char *strings;        /* decoded names and metadata, one arena */
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
 * Strict JSON parser for the header: an object whose values are tensor entries
 * {"dtype": str, "shape": [uint...], "data_offsets": [uint, uint]} or the "__metadata__" object
 * of string values. Strings are decoded (escapes, surrogate pairs) into an arena that is never
 * longer than the header, so it is allocated once up front. */

typedef struct jp {
    const char *p, *end;
    char *arena;      /* decoded strings are appended here */
    size_t used;
    char *msg;        /* the first error, without the path */
    size_t msglen;
    bool failed;
} jp;

static void jp_err(jp *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jp_err(jp *j, const char *fmt, ...)
{
    if (j->failed) return;
    j->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg, j->msglen, fmt, ap);
    va_end(ap);
}

static void jp_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static bool jp_lit(jp *j, char c)
{
    jp_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool jp_hex4(jp *j, unsigned *out)
{
    if (j->end - j->p < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->p[i]);
        if (h < 0) return false;
        v = v * 16 + (unsigned)h;
    }
    j->p += 4;
    *out = v;
    return true;
}

static void put_utf8(jp *j, unsigned cp)
{
    char *o = j->arena + j->used;
    if (cp < 0x80) {
        o[0] = (char)cp;
        j->used += 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        j->used += 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        j->used += 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        j->used += 4;
    }
}

/* Length of a valid UTF-8 sequence starting at s (at most n bytes), 0 if invalid. */
static int utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    int len;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return len;
}

/* Parse a string into the arena; returns its start, NULL on error. Rejects NUL, control
 * characters and invalid UTF-8 so names are always printable C strings. Decoded strings never
 * grow: an escape is at least as long as its UTF-8 encoding. */
static char *jp_string(jp *j)
{
    jp_ws(j);
    if (j->p >= j->end || *j->p != '"') {
        jp_err(j, "invalid JSON header: expected a string");
        return NULL;
    }
    j->p++;
    char *start = j->arena + j->used;
    for (;;) {
        if (j->p >= j->end) {
            jp_err(j, "invalid JSON header: unterminated string");
            return NULL;
        }
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            break;
        }
        if (c < 0x20) {
            jp_err(j, "invalid JSON header: control character in a string");
            return NULL;
        }
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end) {
                jp_err(j, "invalid JSON header: unterminated escape");
                return NULL;
            }
            char e = *j->p++;
            unsigned cp;
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (!jp_hex4(j, &cp)) {
                    jp_err(j, "invalid JSON header: bad \\u escape");
                    return NULL;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') {
                        jp_err(j, "invalid JSON header: unpaired surrogate");
                        return NULL;
                    }
                    j->p += 2;
                    if (!jp_hex4(j, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        jp_err(j, "invalid JSON header: unpaired surrogate");
                        return NULL;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    jp_err(j, "invalid JSON header: unpaired surrogate");
                    return NULL;
                }
                if (cp == 0) {
                    jp_err(j, "invalid JSON header: NUL character in a string");
                    return NULL;
                }
                break;
            default:
                jp_err(j, "invalid JSON header: bad escape '\\%c'", e);
                return NULL;
            }
            put_utf8(j, cp);
            continue;
        }
        int len = utf8_len((const unsigned char *)j->p, (size_t)(j->end - j->p));
        if (!len) {
            jp_err(j, "invalid JSON header: invalid UTF-8 in a string");
            return NULL;
        }
        memcpy(j->arena + j->used, j->p, (size_t)len);
        j->used += (size_t)len;
        j->p += len;
    }
    j->arena[j->used++] = '\0';
    return start;
}

/* A non-negative JSON integer (no sign, no fraction, no exponent, no leading zeros), < 2^62. */
static bool jp_uint(jp *j, uint64_t *out, const char *what)
{
    jp_ws(j);
    if (j->p < j->end && *j->p == '-') {
        jp_err(j, "%s must not be negative", what);
        return false;
    }
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
        jp_err(j, "%s must be a non-negative integer", what);
        return false;
    }
    if (*j->p == '0' && j->end - j->p > 1 && j->p[1] >= '0' && j->p[1] <= '9') {
        jp_err(j, "invalid JSON header: number with a leading zero in %s", what);
        return false;
    }
    uint64_t v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        v = v * 10 + (uint64_t)(*j->p - '0');
        if (v >= (1ull << 62)) {
            jp_err(j, "%s is too large", what);
            return false;
        }
        j->p++;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) {
        jp_err(j, "%s must be an integer", what);
        return false;
    }
    *out = v;
    return true;
}

typedef struct entry {
    st_tensor t;
    uint64_t begin, end;
} entry;

static bool parse_tensor(jp *j, entry *e, const char *name)
{
    bool have_dtype = false, have_shape = false, have_off = false;
    if (!jp_lit(j, '{')) {
        jp_err(j, "tensor '%s': entry is not an object", name);
        return false;
    }
    if (!jp_lit(j, '}')) {
        do {
            char *key = jp_string(j);
            if (!key) return false;
            j->used -= strlen(key) + 1; /* keys are not kept */
            if (!jp_lit(j, ':')) {
                jp_err(j, "invalid JSON header: expected ':' in tensor '%s'", name);
                return false;
            }
            if (!strcmp(key, "dtype")) {
                if (have_dtype) { jp_err(j, "tensor '%s': duplicate \"dtype\"", name); return false; }
                have_dtype = true;
                char *d = jp_string(j);
                if (!d) return false;
                int k;
                for (k = 0; k < ST_NDTYPES; k++) if (!strcmp(d, dtype_names[k])) break;
                if (k == ST_NDTYPES) {
                    jp_err(j, "tensor '%s': unsupported dtype \"%.32s\"", name, d);
                    return false;
                }
                j->used -= strlen(d) + 1;
                e->t.dtype = (enum st_dtype)k;
            } else if (!strcmp(key, "shape")) {
                if (have_shape) { jp_err(j, "tensor '%s': duplicate \"shape\"", name); return false; }
                have_shape = true;
                if (!jp_lit(j, '[')) { jp_err(j, "tensor '%s': shape is not an array", name); return false; }
                e->t.ndim = 0;
                if (!jp_lit(j, ']')) {
                    do {
                        uint64_t d;
                        if (e->t.ndim == ST_MAX_DIMS) {
                            jp_err(j, "tensor '%s': more than %d dimensions", name, ST_MAX_DIMS);
                            return false;
                        }
                        if (!jp_uint(j, &d, "a shape dimension")) return false;
                        e->t.shape[e->t.ndim++] = (int64_t)d;
                    } while (jp_lit(j, ','));
                    if (!jp_lit(j, ']')) { jp_err(j, "invalid JSON header: expected ']' after shape of '%s'", name); return false; }
                }
            } else if (!strcmp(key, "data_offsets")) {
                if (have_off) { jp_err(j, "tensor '%s': duplicate \"data_offsets\"", name); return false; }
                have_off = true;
                if (!jp_lit(j, '[') || !jp_uint(j, &e->begin, "a data offset") || !jp_lit(j, ',') ||
                    !jp_uint(j, &e->end, "a data offset") || !jp_lit(j, ']')) {
                    jp_err(j, "tensor '%s': data_offsets must be [begin, end]", name);
                    return false;
                }
            } else {
                jp_err(j, "tensor '%s': unknown field \"%.32s\"", name, key);
                return false;
            }
        } while (jp_lit(j, ','));
        if (!jp_lit(j, '}')) { jp_err(j, "invalid JSON header: expected '}' after tensor '%s'", name); return false; }
    }
    if (!have_dtype || !have_shape || !have_off) {
        jp_err(j, "tensor '%s': missing %s", name, !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
        return false;
    }
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
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
    free(f->strings);
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
    const char **names = NULL;
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
    f->strings = malloc((size_t)hlen + 1);
    if (!f->alloc || !f->strings) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory for %llu bytes", (unsigned long long)size); goto done; }
    unsigned char *buf = f->alloc + shift;
    if ((rc = read_full(fd, buf, (size_t)size, 0)) < 0) { rc = err_set_path(err, errlen, rc, path, "cannot read: %s", strerror(-rc)); goto done; }
    const unsigned char *data = buf + 8 + hlen;
    uint64_t dsize = size - 8 - hlen;

    /* Upper bounds for the arrays: a tensor entry takes > 8 header bytes, a metadata pair >= 5. */
    size_t maxent = (size_t)hlen / 8 + 1, maxmeta = (size_t)hlen / 4 + 1;
    char msg[256] = "";
    jp j = { .p = (const char *)buf + 8, .end = (const char *)buf + 8 + hlen, .arena = f->strings,
             .msg = msg, .msglen = sizeof msg };
    ents = calloc(maxent, sizeof *ents);
    f->meta = calloc(2 * maxmeta, sizeof *f->meta);
    if (!ents || !f->meta) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory"); goto done; }
    int n = 0;
    bool have_meta = false;
    if (!jp_lit(&j, '{')) jp_err(&j, "invalid JSON header: not an object");
    if (!j.failed && !jp_lit(&j, '}')) {
        do {
            char *key = jp_string(&j);
            if (!key) break;
            if (!jp_lit(&j, ':')) { jp_err(&j, "invalid JSON header: expected ':' after \"%.64s\"", key); break; }
            if (!strcmp(key, "__metadata__")) {
                if (have_meta) { jp_err(&j, "duplicate \"__metadata__\""); break; }
                have_meta = true;
                if (!jp_lit(&j, '{')) { jp_err(&j, "__metadata__ is not an object"); break; }
                if (jp_lit(&j, '}')) continue;
                do {
                    char *mk = jp_string(&j);
                    if (!mk) break;
                    if (!jp_lit(&j, ':')) { jp_err(&j, "invalid JSON header: expected ':' in __metadata__"); break; }
                    jp_ws(&j);
                    if (j.p >= j.end || *j.p != '"') { jp_err(&j, "__metadata__ value of \"%.64s\" is not a string", mk); break; }
                    char *mv = jp_string(&j);
                    if (!mv) break;
                    if ((size_t)f->nmeta >= maxmeta) { jp_err(&j, "too many metadata entries"); break; }
                    f->meta[2 * f->nmeta] = mk;
                    f->meta[2 * f->nmeta + 1] = mv;
                    f->nmeta++;
                } while (jp_lit(&j, ','));
                if (!j.failed && !jp_lit(&j, '}')) jp_err(&j, "invalid JSON header: expected '}' after __metadata__");
            } else {
                if ((size_t)n >= maxent) { jp_err(&j, "too many tensors for the header size"); break; }
                entry *e = &ents[n++];
                e->t.name = key;
                if (!parse_tensor(&j, e, key)) break;
            }
        } while (!j.failed && jp_lit(&j, ','));
        if (!j.failed && !jp_lit(&j, '}')) jp_err(&j, "invalid JSON header: expected ',' or '}' at byte %zu of the header", (size_t)(j.p - (const char *)buf - 8));
    }
    if (!j.failed) {
        jp_ws(&j);
        if (j.p != j.end) jp_err(&j, "invalid JSON header: trailing bytes after the object");
    }
    if (j.failed) { rc = err_set_path(err, errlen, -EINVAL, path, "%s", msg); goto done; }

    /* Duplicate names (tensors, then metadata keys). */
    names = malloc(((size_t)n + (size_t)f->nmeta + 1) * sizeof *names);
    order = malloc(((size_t)n + 1) * sizeof *order);
    if (!names || !order) { rc = err_set_path(err, errlen, -ENOMEM, path, "out of memory"); goto done; }
    for (int i = 0; i < n; i++) names[i] = ents[i].t.name;
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i])) { rc = err_set_path(err, errlen, -EINVAL, path, "duplicate tensor name '%s'", names[i]); goto done; }
    for (int i = 0; i < f->nmeta; i++) names[i] = f->meta[2 * i];
    qsort(names, (size_t)f->nmeta, sizeof *names, cmp_str);
    for (int i = 1; i < f->nmeta; i++)
        if (!strcmp(names[i - 1], names[i])) { rc = err_set_path(err, errlen, -EINVAL, path, "duplicate metadata key '%s'", names[i]); goto done; }

    /* Shapes and offsets: size = numel * dtype size without overflow, inside the data section. */
    for (int i = 0; i < n; i++) {
        entry *e = &ents[i];
        uint64_t numel = 1;
        for (int d = 0; d < e->t.ndim; d++)
            if (__builtin_mul_overflow(numel, (uint64_t)e->t.shape[d], &numel) || numel > ((uint64_t)1 << 62)) {
                rc = err_set_path(err, errlen, -EINVAL, path, "tensor '%s': shape product overflows", e->t.name);
                goto done;
            }
        uint64_t nbytes;
        if (__builtin_mul_overflow(numel, (uint64_t)dtype_sizes[e->t.dtype], &nbytes) || nbytes > ((uint64_t)1 << 62)) {
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
    free(names);
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
    if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) { rc = -errno; goto io; }
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
