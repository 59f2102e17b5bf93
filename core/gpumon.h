/* core/gpumon.h — GPU memory and utilisation for /metrics, from NVML, which is loaded with
 * dlopen("libnvidia-ml.so.1") when the monitor starts (never linked: the daemon runs where there is no
 * driver). A thread of its own samples every period (NVML calls may block: never on the loop, never on
 * a request); readers copy the last sample under a mutex. The daemon's GPUs are CUDA indices (what
 * "cuda:N" names, CUDA_VISIBLE_DEVICES applied), matched to NVML's devices by PCI bus id.
 * Errors: gpumon_start returns 0 or a negative errno with a one-line reason (no NVML, no GPUs, ...). */
#ifndef CT_GPUMON_H
#define CT_GPUMON_H
#include <stddef.h>

typedef struct gpumon_sample {
    int gpu;                          /* the CUDA index jobs name */
    int ok;                           /* 0: the last NVML query of this GPU failed (no series) */
    unsigned long long mem_used, mem_total; /* bytes */
    double util;                      /* 0..1: time a kernel ran over NVML's last sample period */
} gpumon_sample;

typedef struct gpumon gpumon; /* opaque */

/* Loads NVML, finds each of gpus[0..n) and starts sampling every period_s seconds (first sample before it
 * returns). OUT *out: NULL on failure, with why filled. gpus is copied. */
int  gpumon_start(gpumon **out, const int *gpus, int n, double period_s, char *why, size_t whylen);
/* The last sample of each GPU (at most max); returns how many. NULL-safe (0). Any thread. */
int  gpumon_read(gpumon *m, gpumon_sample *out, int max);
/* Stops the thread (wakes it at once), shuts NVML down and unloads it. NULL-safe. */
void gpumon_stop(gpumon *m);

#endif
