/*
 * JSON-lines logging on stderr. Each line is one JSON object written with a
 * single write(2), so lines from several worker processes never interleave.
 * Callers must never pass tokens, secrets or cookie values.
 *
 * When stderr is the journal (JOURNAL_STREAM names its device and inode), each
 * line starts with its syslog priority ("<3>" error, "<4>" warn, "<6>" info,
 * "<7>" debug), which journald takes as the entry's priority.
 */
#ifndef SSOGATE_LOG_H
#define SSOGATE_LOG_H

#include "ssogate/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sg_log_field_type {
    SG_LOG_FIELD_STR,
    SG_LOG_FIELD_INT,
    SG_LOG_FIELD_BOOL,
};

/* One extra key of a log line; values are borrowed for the call. */
struct sg_log_field {
    const char *key;
    enum sg_log_field_type type;
    const char *str;
    int64_t num;
};

#define SG_LOG_STR(k, v)  ((struct sg_log_field){.key = (k), .type = SG_LOG_FIELD_STR, .str = (v)})
#define SG_LOG_INT(k, v)  ((struct sg_log_field){.key = (k), .type = SG_LOG_FIELD_INT, .num = (v)})
#define SG_LOG_BOOL(k, v) ((struct sg_log_field){.key = (k), .type = SG_LOG_FIELD_BOOL, .num = (v)})

/* Lines below level are dropped. */
void sg_log_set_level(enum sg_log_level level);
int sg_log_enabled(enum sg_log_level level);

/* Writes {"ts","level","event","msg"} with msg from the format. */
void sg_log(enum sg_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes {"ts","level","event", fields...}; fields are borrowed. */
void sg_log_fields(enum sg_log_level level, const char *event, const struct sg_log_field *fields,
                   size_t count);

/* The longest value a log line carries, in bytes; a longer one is cut before a character and ends
 * with "..." (journald splits a line over its LineMax, 48K, into entries that are not JSON). */
#define SG_LOG_VALUE_MAX 4096

/*
 * A warning that comes at a client's pace (a flood's refusals): written for
 * the first event, then at most once per SG_LOG_EVERY_US, each line standing
 * for the events since the previous one. Starts zeroed.
 */
#define SG_LOG_EVERY_US (10 * 1000000)
struct sg_log_every {
    int64_t logged_us; /* the last line; 0: none yet */
    uint64_t since;    /* events not yet in a line */
};

/* Counts one event. True when its line is due; *count then gets the events the line stands for
 * (this one included). */
bool sg_log_every_due(struct sg_log_every *every, uint64_t *count);

#endif
