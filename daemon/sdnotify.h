/* daemon/sdnotify.h — the systemd notify protocol (READY=1, STOPPING=1, WATCHDOG=1, STATUS=...), done
 * by hand: one datagram to the AF_UNIX socket named in $NOTIFY_SOCKET. Thirty lines instead of linking
 * libsystemd (and its dependencies) into a daemon that must also run without systemd; does nothing when
 * $NOTIFY_SOCKET is unset. Loop thread. Errors: negative errno (callers only log them). */
#ifndef CT_SDNOTIFY_H
#define CT_SDNOTIFY_H

int sdnotify(const char *state);
/* The watchdog interval systemd asked for (WATCHDOG_USEC, for this pid), in microseconds; 0 = none. */
unsigned long long sdnotify_watchdog_usec(void);

#endif
