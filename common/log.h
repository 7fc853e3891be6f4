/* log: logfmt lines on stderr, one per event.
 *
 * Every line reads `ts=<iso8601> level=<lvl> msg=<event> key=value...`; the
 * caller supplies the key=value tail with printf formatting. Values that may
 * hold spaces or quotes must go through log_quote() first. */
#ifndef NOTIFY_LOG_H
#define NOTIFY_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int log_level_parse(const char *s);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

/* Writes one line; fmt may be NULL for an event without fields. */
void log_write(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Renders s as a logfmt value (quoted and escaped when needed, truncated to
 * fit) into buf, and returns buf so it can be used inline in an argument. */
const char *log_quote(char *buf, size_t size, const char *s);

#define log_error(ev, ...) log_write(LOG_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_write(LOG_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...)                                                                          \
    do {                                                                                           \
        if (log_enabled(LOG_INFO))                                                                 \
            log_write(LOG_INFO, ev, __VA_ARGS__);                                                  \
    } while (0)
#define log_debug(ev, ...)                                                                         \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_write(LOG_DEBUG, ev, __VA_ARGS__);                                                 \
    } while (0)

#endif
