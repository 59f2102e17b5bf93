/* core/executor.h — where a job's training runs. The core hands an executor a validated spec and a job
 * directory; the executor runs it somewhere (worker threads here: executor_local.c; a batch system
 * later) and delivers the run's records back to the loop thread through the sink, in order: any number
 * of progress records, then exactly one done record. Every call and every sink callback happens on the
 * loop thread. Errors: negative errno-style codes with the reason in err. */
#ifndef CT_EXECUTOR_H
#define CT_EXECUTOR_H
#include "trainer/trainer.h"
#include <stddef.h>
#include <uv.h>

typedef struct exec_done {         /* how a run ended */
    int rc;                        /* tr_run's return: 0 = trained to the end or stopped cleanly */
    tr_result res;
    char err[512];
} exec_done;

typedef struct exec_sink {
    /* p->checkpoint_path, when set, is valid only during the call */
    void (*progress)(void *ud, const char *job_id, const tr_progress *p);
    /* the run is gone (its thread joined, its process reaped) when this is called */
    void (*done)(void *ud, const char *job_id, const exec_done *d);
    /* after a burst of records: time to commit and to schedule */
    void (*drained)(void *ud);
    void *ud;
} exec_sink;

typedef struct executor executor;
typedef struct exec_ops {
    const char *name;
    /* Start job_id from spec (copied) in job_dir (exists); resume = continue from job_dir's state. */
    int  (*start)(executor *x, const char *job_id, const tr_spec *spec, const char *job_dir, int resume,
                  char *err, size_t errlen);
    /* Ask a run to stop at its next step boundary: TR_STOP_CHECKPOINT (pause, preemption, shutdown) or
     * TR_STOP_CANCEL. A request only ever moves up (a pause never downgrades a cancel). Unknown ids are
     * ignored. Its done record follows. */
    void (*stop)(executor *x, const char *job_id, enum tr_stop mode);
    /* After a restart: is job_id (left `running` by the previous daemon) still running under this
     * executor? 0 = yes, re-attached (its records follow); -ENOENT = no, the core requeues it. */
    int  (*reattach)(executor *x, const char *job_id, const char *job_dir);
    /* Close the loop handles (no run may be left); closed(ud) runs once they are closed. */
    void (*close)(executor *x, void (*closed)(void *ud), void *ud);
    void (*free)(executor *x);     /* after closed; NULL-safe through exec_free */
} exec_ops;

struct executor { const exec_ops *ops; };

/* Today's executor: one worker thread per run (at most as many as the scheduler starts). */
int exec_local_new(executor **out, uv_loop_t *loop, const exec_sink *sink, char *err, size_t errlen);

static inline void exec_free(executor *x) { if (x) x->ops->free(x); }

#endif
