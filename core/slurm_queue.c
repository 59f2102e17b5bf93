/* core/slurm_queue.c — squeue's rows and Slurm's job states (core/slurm_queue.h). The state lists are
 * Slurm 22.05's (squeue(1), "JOB STATE CODES"). */
#define _GNU_SOURCE
#include "core/slurm_queue.h"
#include "common/util.h"
#include <stdio.h>
#include <string.h>
#include <time.h>

static int one_of(const char *s, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(s, list[i])) return 1;
    return 0;
}

int sq_waiting(const char *state)
{
    static const char *const w[] = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                                    "PREEMPTED", "SPECIAL_EXIT", NULL};
    return one_of(state, w);
}

int sq_running(const char *state)
{
    static const char *const r[] = {"CONFIGURING", "RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING",
                                    "SUSPENDED", "STOPPED", "UPDATE_DB", "POWER_UP_NODE", NULL};
    return one_of(state, r);
}

long long sq_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || *end) return 0;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    return t > 0 ? (long long)t : 0;
}

int sq_parse_row(char *line, sq_row *q)
{
    char *f[6];
    int n = 0;
    for (char *p = line; n < 6; n++) { /* the sixth field keeps any further '|' */
        f[n] = p;
        char *bar = n < 5 ? strchr(p, '|') : NULL;
        if (!bar) { n++; break; }
        *bar = 0;
        p = bar + 1;
    }
    if (n != 6) return -1;
    util_utf8_clean(q->id, sizeof q->id, f[0]);
    util_utf8_clean(q->name, sizeof q->name, f[1]);
    util_utf8_clean(q->state, sizeof q->state, f[2]);
    util_utf8_clean(q->reason, sizeof q->reason, f[3]);
    util_utf8_clean(q->node, sizeof q->node, f[4]);
    util_utf8_clean(q->start, sizeof q->start, f[5]);
    return 0;
}
