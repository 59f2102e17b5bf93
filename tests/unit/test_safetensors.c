/* tests/unit/test_safetensors.c — trainer/safetensors.c: round trips of every dtype, the atomic
 * writer, conversions to float, a header laid out as Python's json.dumps writes it, and hostile
 * files (each must fail with a message naming the file and the problem, never crash; truncations
 * and byte flips of a valid file are swept under the sanitizers). Files live in a mkdtemp dir.
 * Single-threaded cmocka binary; failures are cmocka assertions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/safetensors.h"

static char tmpdir[256];

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/test_st.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(tmpdir);
    return 0;
}

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A file from a header string and ndata bytes of data (0, 1, 2, ...). */
static void write_st(const char *path, const char *header, size_t ndata)
{
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + ndata + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < ndata; i++) b[8 + hl + i] = (unsigned char)i;
    write_bytes(path, b, 8 + hl + ndata);
    free(b);
}

static int count_files(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    char path[512], err[256];
    path_in(path, sizeof path, "rt.safetensors");
    float w[3] = { 1.5f, -2.25f, 3e-8f };
    uint8_t u[5] = { 0, 1, 127, 128, 255 };
    uint16_t h[4] = { 0x3C00, 0xC000, 0x7BFF, 0x0001 };   /* 1, -2, 65504, 2^-24 */
    uint16_t bf[2] = { 0x3F80, 0xC0A0 };                  /* 1, -5 */
    double dd[2] = { 0.1, -1e10 };
    int64_t i64[2] = { -7, 1LL << 40 };
    int32_t i32[3] = { -1, 0, 123456 };
    float scalar = 42.0f;
    st_tensor t[] = {
        { "conv.weight", ST_F32, 3, { 1, 3, 1 }, w, sizeof w },
        { "bytes", ST_U8, 1, { 5 }, u, sizeof u },
        { "half", ST_F16, 2, { 2, 2 }, h, sizeof h },
        { "bf", ST_BF16, 1, { 2 }, bf, sizeof bf },
        { "f64", ST_F64, 1, { 2 }, dd, sizeof dd },
        { "i64", ST_I64, 1, { 2 }, i64, sizeof i64 },
        { "i32", ST_I32, 1, { 3 }, i32, sizeof i32 },
        { "scalar", ST_F32, 0, { 0 }, &scalar, 4 },
        { "empty", ST_F32, 2, { 0, 4 }, NULL, 0 },
        { "we\"ird\\na\tme \xc3\xa9", ST_U8, 1, { 1 }, u, 1 },
    };
    int n = (int)(sizeof t / sizeof t[0]);
    const char *meta[] = { "format", "pt", "note", "quote \" and \n newline" };
    assert_int_equal(st_save(path, t, n, meta, 2, err, sizeof err), 0);
    assert_int_equal(count_files(), 1); /* no temp file left behind */

    /* The data section starts 8-byte aligned (header padded with spaces). */
    FILE *fp = fopen(path, "rb");
    unsigned char lb[8];
    assert_int_equal(fread(lb, 1, 8, fp), 8);
    fclose(fp);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | lb[i];
    assert_int_equal((8 + hl) % 8, 0);

    st_file *f = NULL;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_count(f), n);
    for (int i = 0; i < n; i++) {
        const st_tensor *g = st_get(f, i);
        assert_string_equal(g->name, t[i].name);
        assert_int_equal(g->dtype, t[i].dtype);
        assert_int_equal(g->ndim, t[i].ndim);
        for (int d = 0; d < g->ndim; d++) assert_int_equal(g->shape[d], t[i].shape[d]);
        assert_int_equal(g->nbytes, t[i].nbytes);
        if (g->nbytes) assert_memory_equal(g->data, t[i].data, g->nbytes);
        assert_ptr_equal(st_find(f, t[i].name), g);
    }
    assert_null(st_get(f, n));
    assert_null(st_get(f, -1));
    assert_null(st_find(f, "nope"));
    assert_string_equal(st_metadata(f, "format"), "pt");
    assert_string_equal(st_metadata(f, "note"), "quote \" and \n newline");
    assert_null(st_metadata(f, "absent"));
    assert_int_equal(st_numel(st_find(f, "scalar")), 1);
    assert_int_equal(st_numel(st_find(f, "empty")), 0);
    /* The data section is placed 64-byte aligned in memory, so the first tensor is too. */
    assert_int_equal((uintptr_t)st_find(f, "conv.weight")->data % 64, 0);

    float out[5];
    st_to_f32(out, st_find(f, "half"));
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 65504.0f && out[3] == ldexpf(1.0f, -24));
    st_to_f32(out, st_find(f, "bf"));
    assert_true(out[0] == 1.0f && out[1] == -5.0f);
    st_to_f32(out, st_find(f, "f64"));
    assert_true(out[0] == 0.1f && out[1] == -1e10f);
    st_to_f32(out, st_find(f, "i64"));
    assert_true(out[0] == -7.0f && out[1] == ldexpf(1.0f, 40));
    st_to_f32(out, st_find(f, "i32"));
    assert_true(out[0] == -1.0f && out[1] == 0.0f && out[2] == 123456.0f);
    st_to_f32(out, st_find(f, "bytes"));
    assert_true(out[0] == 0.0f && out[3] == 128.0f && out[4] == 255.0f);
    st_to_f32(out, st_find(f, "conv.weight"));
    assert_memory_equal(out, w, sizeof w);
    st_close(f);

    /* Overwrite in place (atomic rename over an existing file). */
    assert_int_equal(st_save(path, t, 1, NULL, 0, err, sizeof err), 0);
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_count(f), 1);
    assert_null(st_metadata(f, "format"));
    st_close(f);
    st_close(NULL);
    unlink(path);
}

/* Half-precision subnormals, infinities and NaN. */
static void test_half_special(void **state)
{
    (void)state;
    char path[512], err[256];
    path_in(path, sizeof path, "half.safetensors");
    uint16_t h[6] = { 0x8000, 0x0200, 0x7C00, 0xFC00, 0x7E00, 0x03FF };
    st_tensor t = { "h", ST_F16, 1, { 6 }, h, sizeof h };
    assert_int_equal(st_save(path, &t, 1, NULL, 0, err, sizeof err), 0);
    st_file *f;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    float o[6];
    st_to_f32(o, st_get(f, 0));
    assert_true(o[0] == 0.0f && signbit(o[0]));
    assert_true(o[1] == ldexpf(1.0f, -15));
    assert_true(isinf(o[2]) && o[2] > 0 && isinf(o[3]) && o[3] < 0);
    assert_true(isnan(o[4]));
    assert_true(o[5] == ldexpf(1023.0f, -24));
    st_close(f);
    unlink(path);
}

/* A header as Python's json.dumps writes it (spaces after separators, metadata last, unaligned). */
static void test_python_layout(void **state)
{
    (void)state;
    char path[512], err[256];
    path_in(path, sizeof path, "py.safetensors");
    const char *hdr = "{\"b\": {\"dtype\": \"U8\", \"shape\": [3], \"data_offsets\": [16, 19]}, "
                      "\"a\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}, "
                      "\"__metadata__\": {\"format\": \"pt\", \"caf\\u00e9\": \"\\ud83d\\ude00\"}}";
    write_st(path, hdr, 19);
    st_file *f;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_count(f), 2);
    assert_string_equal(st_get(f, 0)->name, "b");
    assert_int_equal(((const unsigned char *)st_find(f, "b")->data)[0], 16);
    assert_int_equal(((const unsigned char *)st_find(f, "a")->data)[5], 5);
    assert_string_equal(st_metadata(f, "caf\xc3\xa9"), "\xf0\x9f\x98\x80");
    st_close(f);
    unlink(path);
}

typedef struct hostile { const char *header; size_t ndata; const char *expect; } hostile;

static void test_hostile_headers(void **state)
{
    (void)state;
    static const hostile cases[] = {
        { "{\"a\":", 0, "invalid JSON header: truncated" },
        { "{\"a\":{\"dtype\":\"U8\",", 0, "invalid JSON" },
        { "[1,2]", 0, "not an object" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "trailing" },
        { "{\"a\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unsupported dtype" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflow" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "beyond" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "needs 8" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "reversed" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "not described" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "duplicate key" },
        { "{\"__metadata__\":{\"k\":1}}", 0, "not a string" },
        { "{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate key" },
        { "{\"__metadata__\":[]}", 0, "not an object" },
        { "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key" },
        { "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "NUL" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, "negative" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, "integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "dimensions" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "missing data_offsets" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1, "unknown field" },
        { "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "duplicate key" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, "[begin, end]" },
        { "{\"\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "UTF-8" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1, "invalid JSON header" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,1]}}", 1, "too large" },
        { "{\"a\":3}", 0, "not an object" },
        { "{\"\\ud800\":{}}", 0, "invalid JSON header" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}", 1, "expected" },
        /* The header is valid JSON of the wrong kind. */
        { "null", 0, "not an object" },
        { "\"{}\"", 0, "not an object" },
        { "  [] ", 0, "not an object" },
        { "{\"a\":\"x\"}", 0, "tensor 'a': entry is not an object" },
        { "{\"a\":[]}", 0, "tensor 'a': entry is not an object" },
        { "{\"a\":null}", 0, "tensor 'a': entry is not an object" },
        /* Tensor fields of the wrong type or size. */
        { "{\"a\":{\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "dtype is not a string" },
        { "{\"a\":{\"dtype\":\"u8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unsupported dtype" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1, "shape is not an array" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":{\"0\":1},\"data_offsets\":[0,1]}}", 1, "shape is not an array" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1, "shape dimension must be a non-negative integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[true],\"data_offsets\":[0,1]}}", 1, "non-negative integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[null],\"data_offsets\":[0,1]}}", 1, "non-negative integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[[1]],\"data_offsets\":[0,1]}}", 1, "non-negative integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1e0],\"data_offsets\":[0,1]}}", 1, "must be an integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904],\"data_offsets\":[0,1]}}", 1, "too large" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,1]}}", 1, "number too large" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{\"0\":0,\"1\":1}}}", 1, "[begin, end]" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, "[begin, end]" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[]}}", 1, "[begin, end]" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":\"0,1\"}}", 1, "[begin, end]" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,\"1\"]}}", 1, "data offset must be a non-negative integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1, "data offset must not be negative" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", 1, "data offset must be an integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,4611686018427387904]}}", 1, "too large" },
        { "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "missing dtype" },
        { "{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, "missing shape" },
        { "{\"a\":{}}", 0, "missing dtype" },
        /* Duplicate keys, which jansson rejects at every level (a silent last-one-wins would hide them). */
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
          "\"\\u0061\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "duplicate key" },
        { "{\"a_name_longer_than_twenty_bytes\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
          "\"a_name_longer_than_twenty_bytes\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "duplicate key" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "duplicate key" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"data_offsets\":[0,1]}}", 1, "duplicate key" },
        /* Metadata of the wrong type. */
        { "{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object" },
        { "{\"__metadata__\":{\"k\":null}}", 0, "not a string" },
        { "{\"__metadata__\":{\"k\":[\"v\"]}}", 0, "not a string" },
        { "{\"__metadata__\":{\"k\":{}}}", 0, "not a string" },
        { "{\"__metadata__\":{\"k\":\"v\\u0000w\"}}", 0, "NUL" },
        /* Not JSON at all, or not strict JSON. */
        { "{\"a\x01\":{}}", 0, "invalid JSON header" },
        { "{\"\\udc00\":{}}", 0, "invalid JSON header" },
        { "{\"\xc0\xaf\":{}}", 0, "invalid UTF-8" },
        { "{\"\xed\xa0\x80\":{}}", 0, "invalid UTF-8" },
        { "\xef\xbb\xbf{}", 0, "invalid JSON header" },
        { "{\"__metadata__\":{},}", 0, "invalid JSON header" },
        { "/**/{}", 0, "invalid JSON header" },
        { "{'a':{}}", 0, "invalid JSON header" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}{}", 1, "trailing" },
    };
    char path[512], err[256];
    path_in(path, sizeof path, "bad.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(path, cases[i].header, cases[i].ndata);
        st_file *f = (st_file *)0x1;
        int rc = st_open(&f, path, err, sizeof err);
        if (rc == 0 || !strstr(err, cases[i].expect) || !strstr(err, path))
            fail_msg("case %zu (%s): rc %d, err \"%s\", wanted \"%s\"", i, cases[i].header, rc, err, cases[i].expect);
        assert_true(rc < 0);
        assert_null(f);
    }
    unlink(path);
}

/* Headers a string literal cannot carry: NUL padding, nesting deeper than jansson's limit. */
static void test_hostile_raw(void **state)
{
    (void)state;
    char path[512], err[256];
    st_file *f;
    path_in(path, sizeof path, "raw.safetensors");

    unsigned char nul[8 + 8] = { 8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, 0, 0, 0, 0, 0 };
    write_bytes(path, nul, sizeof nul);
    assert_int_equal(st_open(&f, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "trailing"));

    unsigned char nulkey[8 + 8] = { 8, 0, 0, 0, 0, 0, 0, 0, '{', '"', 0, '"', ':', '{', '}', '}' };
    write_bytes(path, nulkey, sizeof nulkey);
    assert_int_equal(st_open(&f, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, path));

    enum { DEPTH = 100000 };
    char *deep = malloc(2 * DEPTH + 64);
    assert_non_null(deep);
    char *p = deep + sprintf(deep, "{\"a\":{\"dtype\":\"U8\",\"shape\":");
    memset(p, '[', DEPTH);
    memset(p + DEPTH, ']', DEPTH);
    strcpy(p + 2 * DEPTH, "}}");
    write_st(path, deep, 0);
    free(deep);
    assert_int_equal(st_open(&f, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "nested too deep"));
    assert_non_null(strstr(err, path));
    unlink(path);
}

/* Valid headers jansson must read as the hand parser did: tensors in header order (not hash or
 * offset order), escapes decoded, any JSON whitespace, an empty __metadata__. */
static void test_header_order(void **state)
{
    (void)state;
    enum { N = 300 };
    char path[512], err[256];
    path_in(path, sizeof path, "order.safetensors");
    char *hdr = malloc(N * 96 + 256);
    assert_non_null(hdr);
    size_t len = (size_t)sprintf(hdr, "{ \"__metadata__\" : {} ,\n\t\"\\u0061\\/b\" :{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[%d,%d]}",
                                 N, N + 1);
    for (int i = 0; i < N; i++) /* names t299 ... t000, each on byte N-1-i: names and offsets both run backwards */
        len += (size_t)sprintf(hdr + len, ",\r\n\"t%03d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                               N - 1 - i, i, i + 1);
    strcpy(hdr + len, "}   ");
    write_st(path, hdr, N + 1);
    free(hdr);
    st_file *f;
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_count(f), N + 1);
    assert_string_equal(st_get(f, 0)->name, "a/b");
    assert_int_equal(st_get(f, 0)->ndim, 0);
    assert_int_equal(((const unsigned char *)st_get(f, 0)->data)[0], N % 256);
    for (int i = 0; i < N; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%03d", N - 1 - i);
        const st_tensor *t = st_get(f, 1 + i);
        assert_string_equal(t->name, name);
        assert_ptr_equal(st_find(f, name), t);
        assert_int_equal(((const unsigned char *)t->data)[0], i % 256);
    }
    assert_null(st_metadata(f, "format"));
    st_close(f);
    unlink(path);
}

static void test_hostile_lengths(void **state)
{
    (void)state;
    char path[512], err[256];
    st_file *f;
    path_in(path, sizeof path, "len.safetensors");

    write_bytes(path, "\x05\0\0", 3);
    assert_int_equal(st_open(&f, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "too short"));
    assert_non_null(strstr(err, path));

    unsigned char b[16] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}' };
    write_bytes(path, b, 10);
    assert_int_equal(st_open(&f, path, err, sizeof err), -EFBIG);
    assert_non_null(strstr(err, "100 MB"));

    unsigned char c[10] = { 100, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
    write_bytes(path, c, 10);
    assert_int_equal(st_open(&f, path, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "beyond the end"));

    path_in(path, sizeof path, "missing.safetensors");
    assert_true(st_open(&f, path, err, sizeof err) == -ENOENT);
    assert_non_null(strstr(err, path));

    assert_true(st_open(&f, tmpdir, err, sizeof err) < 0); /* a directory */
    assert_non_null(strstr(err, "not a regular file"));

    /* Empty header object, no tensors: valid. */
    path_in(path, sizeof path, "len.safetensors");
    write_st(path, "{}      ", 0);
    assert_int_equal(st_open(&f, path, err, sizeof err), 0);
    assert_int_equal(st_count(f), 0);
    st_close(f);
    unlink(path);
}

/* Every truncation and many single-byte corruptions of a valid file: errors or a valid load,
 * never a crash or an out-of-bounds read (the sanitizer build checks the latter). */
static void test_truncate_and_flip(void **state)
{
    (void)state;
    char path[512], bad[512], err[256];
    path_in(path, sizeof path, "good.safetensors");
    path_in(bad, sizeof bad, "mut.safetensors");
    float w[6] = { 1, 2, 3, 4, 5, 6 };
    uint8_t u[3] = { 7, 8, 9 };
    st_tensor t[] = { { "w", ST_F32, 2, { 2, 3 }, w, sizeof w }, { "u", ST_U8, 1, { 3 }, u, 3 } };
    const char *meta[] = { "k", "v" };
    assert_int_equal(st_save(path, t, 2, meta, 1, err, sizeof err), 0);
    FILE *fp = fopen(path, "rb");
    unsigned char buf[1024];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 40 && n < sizeof buf);
    for (size_t len = 0; len < n; len++) {
        write_bytes(bad, buf, len);
        st_file *f;
        int rc = st_open(&f, bad, err, sizeof err);
        assert_true(rc < 0); /* every strict prefix is invalid: the data must be fully described */
        assert_non_null(strstr(err, bad));
    }
    unsigned char mut[1024];
    int ok = 0;
    for (size_t pos = 0; pos < n; pos++) {
        static const unsigned char vals[] = { 0x00, '"', '{', '}', ',', '9', 0xff, '-', ' ', '[' };
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(mut, buf, n);
            mut[pos] = vals[v];
            write_bytes(bad, mut, n);
            st_file *f;
            int rc = st_open(&f, bad, err, sizeof err);
            if (rc == 0) {
                ok++;
                for (int i = 0; i < st_count(f); i++) { /* whatever loaded must be self-consistent */
                    const st_tensor *g = st_get(f, i);
                    float tmp[8];
                    if (st_numel(g) <= 8) st_to_f32(tmp, g);
                }
                st_close(f);
            } else {
                assert_non_null(strstr(err, bad));
            }
        }
    }
    assert_true(ok > 0); /* flips inside the data still load */
    unlink(bad);
    unlink(path);
}

static void test_save_errors(void **state)
{
    (void)state;
    char path[512], err[256];
    path_in(path, sizeof path, "s.safetensors");
    float w[2] = { 1, 2 };
    st_tensor bad_size = { "w", ST_F32, 1, { 3 }, w, sizeof w };
    assert_int_equal(st_save(path, &bad_size, 1, NULL, 0, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "nbytes"));
    st_tensor dup[2] = { { "w", ST_F32, 1, { 2 }, w, sizeof w }, { "w", ST_F32, 1, { 2 }, w, sizeof w } };
    assert_int_equal(st_save(path, dup, 2, NULL, 0, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "duplicate"));
    st_tensor reserved = { "__metadata__", ST_F32, 1, { 2 }, w, sizeof w };
    assert_int_equal(st_save(path, &reserved, 1, NULL, 0, err, sizeof err), -EINVAL);
    const char *meta[] = { "k", "a", "k", "b" };
    assert_int_equal(st_save(path, dup, 1, meta, 2, err, sizeof err), -EINVAL);
    assert_int_equal(count_files(), 0);

    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir.safetensors", tmpdir);
    assert_true(st_save(nodir, dup, 1, NULL, 0, err, sizeof err) < 0);
    assert_non_null(strstr(err, nodir));
    assert_int_equal(count_files(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_half_special),
        cmocka_unit_test(test_python_layout),
        cmocka_unit_test(test_hostile_headers),
        cmocka_unit_test(test_hostile_raw),
        cmocka_unit_test(test_header_order),
        cmocka_unit_test(test_hostile_lengths),
        cmocka_unit_test(test_truncate_and_flip),
        cmocka_unit_test(test_save_errors),
    };
    return cmocka_run_group_tests_name("safetensors", tests, setup_dir, teardown_dir);
}
