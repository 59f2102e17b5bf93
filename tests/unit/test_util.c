/* tests/unit/test_util.c — common/util: name checks, random ids (alphabet, length, uniqueness, no
 * character likelier than another), UTF-8 cleaning, the growable array, the clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static void test_valid_name(void **state)
{
    (void)state;
    const char *good[] = {"a", "resnet50-mocov2", "A.b_c-9", "x..y"};
    const char *bad[] = {"", ".", "..", ".hidden", "a/b", "a b", "a\\b", "naïve", "a\nb", "%2e"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) assert_true(util_valid_name(good[i], 200));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) assert_false(util_valid_name(bad[i], 200));
    char longname[202];
    memset(longname, 'a', 201);
    longname[201] = 0;
    assert_false(util_valid_name(longname, 200));
    longname[200] = 0;
    assert_true(util_valid_name(longname, 200));
}

static void test_random_ids(void **state)
{
    (void)state;
    enum { N = 2000 };
    static char ids[N][32];
    for (int i = 0; i < N; i++) {
        assert_int_equal(util_random_id(ids[i], sizeof ids[i], "ftjob-"), 0);
        assert_int_equal(strlen(ids[i]), 6 + 20);
        assert_memory_equal(ids[i], "ftjob-", 6);
        assert_int_equal(strspn(ids[i] + 6, alphabet), 20);
        for (int k = 0; k < i; k++) assert_string_not_equal(ids[i], ids[k]);
    }
    char small[10];
    assert_int_equal(util_random_id(small, sizeof small, "ftjob-"), -ENAMETOOLONG);
}

/* 62 000 characters: every one of 62 is seen about 1000 times. A modulo bias of 256 % 62 would give
 * the first 8 characters ~1.25x the others; chi-square with 61 degrees of freedom stays below 140
 * except with probability < 1e-7 for a uniform source, and is in the hundreds with that bias. */
static void test_base62_uniform(void **state)
{
    (void)state;
    enum { N = 62000 };
    char *s = malloc(N + 1);
    assert_non_null(s);
    assert_int_equal(util_random_base62(s, N), 0);
    assert_int_equal(s[N], 0);
    long count[62] = {0};
    for (int i = 0; i < N; i++) {
        const char *p = strchr(alphabet, s[i]);
        assert_non_null(p);
        count[p - alphabet]++;
    }
    double chi2 = 0, expect = N / 62.0;
    for (int i = 0; i < 62; i++) chi2 += (count[i] - expect) * (count[i] - expect) / expect;
    assert_true(chi2 < 140);
    unsigned int x;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(util_random_u31(&x), 0);
        assert_true(x <= 0x7fffffffu);
    }
    free(s);
}

static void test_grow(void **state)
{
    (void)state;
    int *v = NULL, cap = 0;
    for (int n = 0; n < 1000; n++) {
        assert_int_equal(util_grow(&v, &cap, n + 1, sizeof *v), 0);
        assert_true(cap >= n + 1);
        v[n] = n;
    }
    for (int n = 0; n < 1000; n++) assert_int_equal(v[n], n);
    int before = cap;
    assert_int_equal(util_grow(&v, &cap, 10, sizeof *v), 0); /* enough room: unchanged */
    assert_int_equal(cap, before);
    free(v);
}

static void test_utf8_clean(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(util_utf8_clean(out, sizeof out, "plain"), 5);
    assert_string_equal(out, "plain");
    util_utf8_clean(out, sizeof out, "\xff\xfe");
    assert_string_equal(out, "\\xFF\\xFE");
    util_utf8_clean(out, sizeof out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");    /* kept as they are */
    assert_string_equal(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    util_utf8_clean(out, sizeof out, "\xc3");                                 /* a cut sequence */
    assert_string_equal(out, "\\xC3");
    util_utf8_clean(out, sizeof out, "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80"); /* overlong, surrogate, > U+10FFFF */
    assert_null(strpbrk(out, "\x80\xa0\xaf\xc0\xed\xf4"));
    char small[5], mid[6];                        /* a 2-byte character that does not fit is left out whole */
    util_utf8_clean(small, sizeof small, "abc\xc3\xa9" "d");
    assert_string_equal(small, "abc");
    util_utf8_clean(mid, sizeof mid, "ab\xc3\xa9" "d");
    assert_string_equal(mid, "ab\xc3\xa9" "d");
    util_utf8_clean(small, sizeof small, "abc\xff");                             /* no room for \xFF */
    assert_string_equal(small, "abc");
    util_utf8_clean(out, sizeof out, NULL);
    assert_string_equal(out, "");
}

/* rm -r: files, folders, a link (removed, its target kept), a missing path (0). */
static void test_rmtree(void **state)
{
    (void)state;
    char root[] = "/tmp/ct-rmtree-XXXXXX", p[256], keep[256];
    assert_non_null(mkdtemp(root));
    snprintf(keep, sizeof keep, "%s-keep", root);
    int fd = open(keep, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof p, "%s/a", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/a/b", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/a/b/f", root);
    fd = open(p, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof p, "%s/a/link", root);
    assert_int_equal(symlink(keep, p), 0);
    assert_int_equal(util_rmtree(root), 0);
    struct stat st;
    assert_int_equal(lstat(root, &st), -1);
    assert_int_equal(stat(keep, &st), 0);
    assert_int_equal(util_rmtree(root), 0);
    assert_int_equal(util_rmtree(keep), 0); /* a plain file too */
    assert_int_equal(lstat(keep, &st), -1);
}

static void test_clocks(void **state)
{
    (void)state;
    double a = util_mono(), b = util_mono();
    assert_true(b >= a);
    assert_true(util_now() > 1700000000LL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_name),
        cmocka_unit_test(test_random_ids),
        cmocka_unit_test(test_base62_uniform),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_rmtree),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
