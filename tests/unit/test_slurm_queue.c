/* tests/unit/test_slurm_queue.c — reading squeue (core/slurm_queue.h): rows as Slurm 22.05 prints them
 * (seen on the test cluster), Slurm's states, the start-time column, and malformed or hostile rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "core/slurm_queue.h"
#include <stdio.h>
#include <string.h>
#include <time.h>

static void test_rows(void **state)
{
    (void)state;
    sq_row r;
    char pending[] = "12|ct-ftjob-abc-x1Y2z3|PENDING|Resources||2026-12-02T06:09:52";
    assert_int_equal(sq_parse_row(pending, &r), 0);
    assert_string_equal(r.id, "12");
    assert_string_equal(r.name, "ct-ftjob-abc-x1Y2z3");
    assert_string_equal(r.state, "PENDING");
    assert_string_equal(r.reason, "Resources");
    assert_string_equal(r.node, "");
    assert_string_equal(r.start, "2026-12-02T06:09:52");
    char running[] = "1|ct-smoke|RUNNING|None|vm|2026-12-02T06:03:03";
    assert_int_equal(sq_parse_row(running, &r), 0);
    assert_string_equal(r.node, "vm");
    char bars[] = "3|n|RUNNING|None|vm|N/A|extra|fields"; /* the last field keeps the rest */
    assert_int_equal(sq_parse_row(bars, &r), 0);
    assert_string_equal(r.start, "N/A|extra|fields");
    char short_row[] = "3|n|RUNNING|None|vm";
    assert_int_equal(sq_parse_row(short_row, &r), -1);
    char empty[] = "";
    assert_int_equal(sq_parse_row(empty, &r), -1);
    char bad_utf8[] = "4|n\xff\xfe|RUNNING|R\xc3|node\x80|N/A"; /* made valid, never passed on raw */
    assert_int_equal(sq_parse_row(bad_utf8, &r), 0);
    assert_null(strchr(r.name, '\xff'));
    assert_non_null(strstr(r.name, "\\x"));
    char long_row[2000];
    memset(long_row, 'a', sizeof long_row - 1);
    long_row[sizeof long_row - 1] = 0;
    memcpy(long_row, "5|", 2);
    memcpy(long_row + 100, "|X|Y|Z|", 7);
    assert_int_equal(sq_parse_row(long_row, &r), 0); /* fields cut to their buffers */
    assert_true(strlen(r.name) < sizeof r.name);
}

static void test_states(void **state)
{
    (void)state;
    const char *waiting[] = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "PREEMPTED"};
    const char *running[] = {"CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"};
    const char *ended[] = {"COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                           "CANCELLED", "", "running"};
    for (size_t i = 0; i < 4; i++) assert_true(sq_waiting(waiting[i]) && !sq_running(waiting[i]));
    for (size_t i = 0; i < 4; i++) assert_true(sq_running(running[i]) && !sq_waiting(running[i]));
    for (size_t i = 0; i < sizeof ended / sizeof ended[0]; i++) assert_false(sq_running(ended[i]) || sq_waiting(ended[i]));
}

static void test_times(void **state)
{
    (void)state;
    struct tm tm = {.tm_year = 126, .tm_mon = 11, .tm_mday = 2, .tm_hour = 6, .tm_min = 9, .tm_sec = 52, .tm_isdst = -1};
    assert_int_equal(sq_time("2026-12-02T06:09:52"), (long long)mktime(&tm));
    assert_int_equal(sq_time("N/A"), 0);
    assert_int_equal(sq_time("Unknown"), 0);
    assert_int_equal(sq_time("2026-12-02T06:09:52junk"), 0);
    assert_int_equal(sq_time(""), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_rows), cmocka_unit_test(test_states),
                                       cmocka_unit_test(test_times)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
