/* storage/job_status.h — the statuses a job can have, as an enum with one name table
 * (storage/job_status.c). The names are what the jobs table stores and the API shows; migration 3
 * (storage/db_schema.c) limits jobs.status to them with a CHECK constraint, and test_storage.c asserts
 * that the CHECK list and this table agree. The transitions between them are the service's business
 * (docs/design.md, "Job state machine"), not storage's. Pure functions, any thread, no allocation. */
#ifndef CT_JOB_STATUS_H
#define CT_JOB_STATUS_H

enum job_status {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_PAUSED,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_STATUS_COUNT               /* not a status: the number of them */
};

/* The stored name ("queued", ...), static; NULL for a value outside the enum. */
const char *job_status_name(enum job_status s);
/* OUT *out = the status named name (exact, case-sensitive). 0, or -EINVAL for NULL or an unknown
 * name (then *out is untouched). */
int job_status_parse(const char *name, enum job_status *out);

#endif
