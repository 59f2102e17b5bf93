/* core/executor.h — where a job's training runs. The core hands an executor a validated spec and a job
 * directory; the executor runs it somewhere (worker threads of this daemon: executor_local.c; Slurm batch
 * jobs: executor_slurm.c) and delivers the run's records back to the loop thread through the sink, in
 * order: any number of state and progress records, then exactly one done record. Every call and every
 * sink callback happens on the loop thread. Errors: negative errno-style codes with the reason in err.
 *
 * An executor that queues (Slurm) keeps a started job `queued` until it reports it running, and may send
 * it back to waiting (preemption); one whose runs outlive the daemon keeps them going through a shutdown
 * or a crash, and re-attaches from the record the core keeps for it (jobs.executor, committed with the
 * progress it describes, so nothing is delivered twice after a crash). */
#ifndef CT_EXECUTOR_H
#define CT_EXECUTOR_H
#include "spec/jobspec.h"
#include "trainer/trainer.h"
#include <jansson.h>
#include <stddef.h>
#include <uv.h>

typedef struct exec_done {         /* how a run ended */
    int rc;                        /* 0 = trained to the end or stopped cleanly (res.stopped) */
    tr_result res;
    const char *code;              /* rc != 0: the job's error code (static); NULL = from rc */
    char err[512];
} exec_done;

typedef struct exec_state {        /* where a run is, for an executor that queues or outlives the daemon */
    int running;                   /* 0 = waiting in the executor's queue, 1 = training */
    int requeued;                  /* it was running and went back to waiting (preemption, a node failure) */
    const char *reason;            /* why it waits (the executor's words), NULL = none */
    long long estimated_start;     /* unix seconds, 0 = unknown */
    const char *message;           /* an event to tell the job's watchers (e.g. "Submitted ..."), NULL = none */
    json_t *record;                /* borrowed: the executor's record of the run. The core keeps it in the job
                                    * row (its public keys are the job's "executor" field) and hands it back to
                                    * reattach. Keys "type", "job_id", "state", "reason", "node" are public. */
    int durable;                   /* commit before returning (an intent to submit, a batch system's id) */
} exec_state;

typedef struct exec_sink {
    /* p->checkpoint_path, when set, is valid only during the call */
    void (*progress)(void *ud, const char *job_id, const tr_progress *p);
    /* 0, or the commit's error for a durable record (the executor must not go on as if it were kept) */
    int  (*state)(void *ud, const char *job_id, const exec_state *st);
    /* the run is gone (its thread joined, its process reaped, its batch job ended) when this is called */
    void (*done)(void *ud, const char *job_id, const exec_done *d);
    /* after a burst of records: time to commit and to schedule */
    void (*drained)(void *ud);
    void *ud;
} exec_sink;

typedef struct exec_job {          /* what start and reattach are given (all borrowed for the call) */
    const char *id, *owner;
    const tr_spec *spec;           /* threads already set from resources.cpus or the daemon's default */
    const jobspec_resources *res;
    const char *dir;               /* the job directory (exists) */
    int resume;                    /* dir holds a checkpoint to continue from */
    const json_t *record;          /* reattach: the record the executor last reported (NULL = none) */
} exec_job;

typedef struct executor executor;
typedef struct exec_ops {
    const char *name;
    int queues;                    /* started jobs wait in the executor's own queue (order is its business) */
    int outlives_daemon;           /* runs keep going when the daemon stops or crashes */
    /* Refuse what this executor cannot give (400 with param and reason); 0 = fine. Before the job is made.
     * device: the spec's (-1 = cpu, N = cuda:N). */
    int  (*check)(executor *x, const jobspec_resources *res, int device, char *param, size_t paramlen, char *err,
                  size_t errlen);
    /* Start a run of job j (copied). */
    int  (*start)(executor *x, const exec_job *j, char *err, size_t errlen);
    /* Ask a run to stop at its next step boundary: TR_STOP_CHECKPOINT (pause, preemption, shutdown) or
     * TR_STOP_CANCEL. A request only ever moves up (a pause never downgrades a cancel). Unknown ids are
     * ignored. Its done record follows. */
    void (*stop)(executor *x, const char *job_id, enum tr_stop mode);
    /* After a restart: is job j (whose record is live) still known to this executor? 0 = yes, re-attached
     * (its records follow); -ENOENT = no, the core requeues it. */
    int  (*reattach)(executor *x, const exec_job *j);
    /* NULL when healthy, else why not (for /readyz), valid until the next call. */
    const char *(*trouble)(executor *x);
    /* Close the loop handles (runs that outlive the daemon are left running, the others must be gone);
     * closed(ud) runs once they are closed. */
    void (*close)(executor *x, void (*closed)(void *ud), void *ud);
    void (*free)(executor *x);     /* after closed; NULL-safe through exec_free */
} exec_ops;

struct executor { const exec_ops *ops; };

/* Today's executor: one worker thread per run (at most as many as the scheduler starts). cores: what it
 * may give a job (resources.cpus above it is refused). */
/* gpus: the daemon's GPUs (CUDA indices; copied), gpus_why: why there are none (the 400's reason). nice:
 * each worker thread's nice value (0 = unchanged); the trainer's OpenMP threads inherit it. */
#define EXEC_MAX_GPUS 64
int exec_local_new(executor **out, uv_loop_t *loop, const exec_sink *sink, int cores, const int *gpus, int ngpus,
                   const char *gpus_why, int nice, char *err, size_t errlen);

/* Slurm: each run is a batch job running `coretune train` (executor_slurm.c). */
#define EXEC_SLURM_MAX_ARGS 32
#define EXEC_SLURM_MAX_ACCOUNTS 64
typedef struct exec_slurm_cfg {
    char partition[65], account[65];
    int n_args;                    /* extra sbatch arguments the admin trusts, split on spaces */
    char args[EXEC_SLURM_MAX_ARGS][256];
    double poll_seconds;           /* one squeue per interval for every job */
    char coretune_bin[1024];       /* the trainer CLI the batch script runs */
    char shared_dir[1024];         /* job directories live under it (reachable from the compute nodes) */
    int checkpoint_seconds;
    int n_accounts;                /* user -> Slurm account (--account) */
    struct { char user[64], account[65]; } accounts[EXEC_SLURM_MAX_ACCOUNTS];
} exec_slurm_cfg;
int exec_slurm_new(executor **out, uv_loop_t *loop, const exec_sink *sink, const exec_slurm_cfg *cfg, char *err,
                   size_t errlen);

static inline void exec_free(executor *x) { if (x) x->ops->free(x); }

#endif
