/* daemon/sdnotify.c — see sdnotify.h. */
#include "daemon/sdnotify.h"
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sdnotify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return 0;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof sun.sun_path || (path[0] != '/' && path[0] != '@')) return -EINVAL;
    memcpy(sun.sun_path, path, n);
    if (path[0] == '@') sun.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, len);
    int rc = w < 0 ? -errno : 0;
    close(fd);
    return rc;
}

unsigned long long sdnotify_watchdog_usec(void)
{
    const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!us) return 0;
    if (pid && strtoll(pid, NULL, 10) != (long long)getpid()) return 0;
    char *end;
    unsigned long long v = strtoull(us, &end, 10);
    return *end ? 0 : v;
}
