/* core/slurm_script.h — the job directory's spec.json and batch script for the Slurm executor
 * (core/slurm_script.c). */
#ifndef CT_SLURM_SCRIPT_H
#define CT_SLURM_SCRIPT_H
#include "trainer/trainer.h"
#include <stddef.h>

/* DIR/spec.json and DIR/slurm.sh (exec CORETUNE_BIN train ... --resume --progress DIR/progress.jsonl).
 * 0, or a negative errno with the reason in err. */
int slurm_write_job_files(const char *dir, const char *job_id, const tr_spec *spec, const char *coretune_bin,
                          int checkpoint_seconds, char *err, size_t errlen);

#endif
