/* core/gpumon.c — NVML through dlopen, sampled on a thread of its own (see gpumon.h). Only the handful
 * of NVML entry points below are used; their prototypes are written here (NVML's header is not needed
 * to build). The thread owns the NVML handles; samples are shared under lock. */
#include "core/gpumon.h"
#include "trainer/gpu/gpu.h"
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GPUMON_MAX 64

typedef int nvml_ret;                 /* nvmlReturn_t: 0 = NVML_SUCCESS */
typedef void *nvml_dev;               /* nvmlDevice_t */
typedef struct { unsigned long long total, free, used; } nvml_memory;  /* nvmlMemory_t */
typedef struct { unsigned int gpu, memory; } nvml_util;               /* nvmlUtilization_t, percent */

struct gpumon {
    void *lib;
    nvml_ret (*init)(void);
    nvml_ret (*shutdown)(void);
    const char *(*error_string)(nvml_ret);
    nvml_ret (*by_bus_id)(const char *, nvml_dev *);
    nvml_ret (*memory_info)(nvml_dev, nvml_memory *);
    nvml_ret (*utilization)(nvml_dev, nvml_util *);
    int inited;
    int n;
    nvml_dev dev[GPUMON_MAX];         /* thread-owned after start */
    double period;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;                         /* under lock */
    gpumon_sample s[GPUMON_MAX];      /* under lock */
};

static void sample(gpumon *m)
{
    gpumon_sample s[GPUMON_MAX];
    for (int i = 0; i < m->n; i++) {
        nvml_memory mem;
        nvml_util u;
        s[i] = m->s[i]; /* gpu index: set at start, never changed */
        s[i].ok = m->memory_info(m->dev[i], &mem) == 0 && m->utilization(m->dev[i], &u) == 0;
        if (!s[i].ok) continue;
        s[i].mem_used = mem.used;
        s[i].mem_total = mem.total;
        s[i].util = u.gpu / 100.0;
    }
    pthread_mutex_lock(&m->lock);
    memcpy(m->s, s, sizeof s[0] * (size_t)m->n);
    pthread_mutex_unlock(&m->lock);
}

static void *thread_main(void *arg)
{
    gpumon *m = arg;
    pthread_mutex_lock(&m->lock);
    while (!m->stop) {
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        long long ns = at.tv_nsec + (long long)(m->period * 1e9);
        at.tv_sec += (time_t)(ns / 1000000000LL);
        at.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&m->wake, &m->lock, &at);
        if (m->stop) break;
        pthread_mutex_unlock(&m->lock); /* NVML may block: never under the lock readers take */
        sample(m);
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

void gpumon_stop(gpumon *m)
{
    if (!m) return;
    if (m->started) {
        pthread_mutex_lock(&m->lock);
        m->stop = 1;
        pthread_cond_signal(&m->wake);
        pthread_mutex_unlock(&m->lock);
        pthread_join(m->thread, NULL);
    }
    if (m->inited) m->shutdown();
    if (m->lib) dlclose(m->lib);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int gpumon_start(gpumon **out, const int *gpus, int n, double period_s, char *why, size_t whylen)
{
    *out = NULL;
    gpumon *m = calloc(1, sizeof *m);
    if (!m) { snprintf(why, whylen, "out of memory"); return -ENOMEM; }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->wake, NULL);
    m->period = period_s > 0 ? period_s : 5;
    int rc = -ENOENT;
    if (!(m->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL))) {
        const char *e = dlerror();
        snprintf(why, whylen, "cannot load NVML: %s", e ? e : "libnvidia-ml.so.1 not found");
        goto fail;
    }
    /* the _v2 names are what nvml.h maps nvmlInit and the handle lookups to */
    *(void **)&m->init = dlsym(m->lib, "nvmlInit_v2");
    *(void **)&m->shutdown = dlsym(m->lib, "nvmlShutdown");
    *(void **)&m->error_string = dlsym(m->lib, "nvmlErrorString");
    *(void **)&m->by_bus_id = dlsym(m->lib, "nvmlDeviceGetHandleByPciBusId_v2");
    *(void **)&m->memory_info = dlsym(m->lib, "nvmlDeviceGetMemoryInfo");
    *(void **)&m->utilization = dlsym(m->lib, "nvmlDeviceGetUtilizationRates");
    if (!m->init || !m->shutdown || !m->error_string || !m->by_bus_id || !m->memory_info || !m->utilization) {
        snprintf(why, whylen, "libnvidia-ml.so.1 lacks an NVML function this daemon uses (driver too old?)");
        goto fail;
    }
    nvml_ret r = m->init();
    if (r != 0) {
        snprintf(why, whylen, "nvmlInit: %s", m->error_string(r));
        goto fail;
    }
    m->inited = 1;
    if (n <= 0) {
        snprintf(why, whylen, "the daemon has no GPUs to watch");
        goto fail;
    }
    m->n = n < GPUMON_MAX ? n : GPUMON_MAX;
    for (int i = 0; i < m->n; i++) {
        char bus[32];
        m->s[i].gpu = gpus[i];
        if (gpu_device_pci_bus_id(gpus[i], bus, sizeof bus) != 0) {
            snprintf(why, whylen, "GPU %d: CUDA gives no PCI bus id", gpus[i]);
            goto fail;
        }
        if ((r = m->by_bus_id(bus, &m->dev[i])) != 0) {
            snprintf(why, whylen, "GPU %d (%s): nvmlDeviceGetHandleByPciBusId: %s", gpus[i], bus, m->error_string(r));
            goto fail;
        }
    }
    sample(m);
    if ((rc = pthread_create(&m->thread, NULL, thread_main, m)) != 0) {
        snprintf(why, whylen, "cannot start the sampling thread: %s", strerror(rc));
        rc = -rc;
        goto fail;
    }
    m->started = 1;
    snprintf(why, whylen, "%d GPU%s every %.3g s", m->n, m->n == 1 ? "" : "s", m->period);
    *out = m;
    return 0;
fail:
    gpumon_stop(m);
    return rc;
}

int gpumon_read(gpumon *m, gpumon_sample *out, int max)
{
    if (!m) return 0;
    pthread_mutex_lock(&m->lock);
    int n = m->n < max ? m->n : max;
    memcpy(out, m->s, sizeof *out * (size_t)n);
    pthread_mutex_unlock(&m->lock);
    return n;
}
