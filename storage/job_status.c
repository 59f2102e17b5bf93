/* storage/job_status.c — the one table of job status names (see job_status.h). Pure, any thread. */
#include "storage/job_status.h"
#include <errno.h>
#include <string.h>

static const char *const names[JOB_STATUS_COUNT] = {
    [JOB_QUEUED] = "queued",
    [JOB_RUNNING] = "running",
    [JOB_PAUSED] = "paused",
    [JOB_SUCCEEDED] = "succeeded",
    [JOB_FAILED] = "failed",
    [JOB_CANCELLED] = "cancelled",
};

const char *job_status_name(enum job_status s)
{
    return (unsigned)s < JOB_STATUS_COUNT ? names[s] : NULL;
}

int job_status_parse(const char *name, enum job_status *out)
{
    if (!name) return -EINVAL;
    for (int i = 0; i < JOB_STATUS_COUNT; i++)
        if (!strcmp(names[i], name)) { *out = (enum job_status)i; return 0; }
    return -EINVAL;
}
