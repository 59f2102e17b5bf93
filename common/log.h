/* common/log.h — one log macro for the whole project: one key=value line per event on stderr
 * (journald adds the timestamp when run under systemd). The level is checked before any formatting.
 * Thread-safe (one fprintf per line). Libraries such as trainer/ never log; they return errors. */
#ifndef CT_LOG_H
#define CT_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
extern enum log_level log_min_level;

int  log_parse_level(const char *s, enum log_level *out); /* 0 or -1 for an unknown name */
void log_write(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG(lvl, ...) do { if ((lvl) >= log_min_level) log_write((lvl), __VA_ARGS__); } while (0)

#endif
