#include "ssogate/log.h"

#include "ssogate/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

static enum sg_log_level current_level = SG_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* syslog priorities of the levels, for the journal (sd-daemon.h's SD_DEBUG...). */
static const char *const journal_prefixes[] = {"<7>", "<6>", "<4>", "<3>"};

/* -1 until the first line; then 1 when stderr is the journal's stream. */
static int journal_stream = -1;

/*
 * systemd sets JOURNAL_STREAM to the device and inode of the stream it
 * connected to stderr; a stderr redirected elsewhere since no longer matches.
 */
static bool stderr_is_journal(void)
{
    if (journal_stream < 0) {
        const char *value = getenv("JOURNAL_STREAM");
        unsigned long long dev;
        unsigned long long ino;
        char extra;
        struct stat st;
        journal_stream = value != NULL && sscanf(value, "%llu:%llu%c", &dev, &ino, &extra) == 2 &&
                         fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
                         (unsigned long long)st.st_ino == ino;
    }
    return journal_stream == 1;
}

void sg_log_set_level(enum sg_log_level level)
{
    current_level = level;
}

int sg_log_enabled(enum sg_log_level level)
{
    return level >= current_level;
}

/*
 * Writes s as a JSON string of valid UTF-8 (yajl escapes quotes, backslashes
 * and control characters but copies other bytes as they are): a byte that
 * starts no well-formed sequence becomes U+FFFD. A value from outside (a
 * JSON \udc80 decodes to a lone surrogate; a truncated message can end
 * inside a sequence) would otherwise make the line unreadable to a strict
 * JSON reader and the journal's entry "blob data". A value longer than
 * SG_LOG_VALUE_MAX bytes is cut before a character and ends with "...": one
 * line stays under journald's LineMax (48K), which splits a longer one.
 */
static void gen_string(yajl_gen gen, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strnlen(s, SG_LOG_VALUE_MAX + 1);
    bool cut = len > SG_LOG_VALUE_MAX;
    if (cut) {
        len = SG_LOG_VALUE_MAX;
        while (len > 0 && (u[len] & 0xc0) == 0x80)
            len--;
    }
    size_t i = 0;
    while (i < len && u[i] < 0x80)
        i++;
    if (i == len && !cut) {
        yajl_gen_string(gen, u, len);
        return;
    }
    unsigned char *out = sg_malloc(3 * len + 3);
    memcpy(out, u, i);
    size_t n = i;
    while (i < len) {
        size_t k = sg_utf8_sequence(u + i, len - i);
        if (k == 0) {
            memcpy(out + n, "\xef\xbf\xbd", 3);
            n += 3;
            i++;
        } else {
            memcpy(out + n, u + i, k);
            n += k;
            i += k;
        }
    }
    if (cut) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    yajl_gen_string(gen, out, n);
    free(out);
}

static void write_all(const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Opens the line with the fields every line has; the caller adds the rest. */
static yajl_gen line_begin(enum sg_log_level level, const char *event)
{
    yajl_gen gen = yajl_gen_alloc(NULL);
    struct timeval tv;
    struct tm tm;
    char ts[40];

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));

    yajl_gen_map_open(gen);
    gen_string(gen, "ts");
    gen_string(gen, ts);
    gen_string(gen, "level");
    gen_string(gen, level_names[level]);
    gen_string(gen, "event");
    gen_string(gen, event);
    return gen;
}

/* On the journal each line starts with its priority, which journald strips. */
static void line_end(enum sg_log_level level, yajl_gen gen)
{
    const unsigned char *buf;
    size_t len;

    yajl_gen_map_close(gen);
    yajl_gen_get_buf(gen, &buf, &len);
    const char *prefix = stderr_is_journal() ? journal_prefixes[level] : "";
    size_t plen = strlen(prefix);
    unsigned char *line = sg_malloc(plen + len + 1);
    memcpy(line, prefix, plen);
    memcpy(line + plen, buf, len);
    line[plen + len] = '\n';
    write_all(line, plen + len + 1);
    free(line);
    yajl_gen_free(gen);
}

void sg_log(enum sg_log_level level, const char *event, const char *fmt, ...)
{
    if (!sg_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    yajl_gen gen = line_begin(level, event);
    gen_string(gen, "msg");
    gen_string(gen, msg);
    line_end(level, gen);
}

void sg_log_fields(enum sg_log_level level, const char *event, const struct sg_log_field *fields,
                   size_t count)
{
    if (!sg_log_enabled(level))
        return;
    yajl_gen gen = line_begin(level, event);
    for (size_t i = 0; i < count; i++) {
        gen_string(gen, fields[i].key);
        switch (fields[i].type) {
        case SG_LOG_FIELD_STR:
            if (fields[i].str == NULL)
                yajl_gen_null(gen);
            else
                gen_string(gen, fields[i].str);
            break;
        case SG_LOG_FIELD_INT:
            yajl_gen_integer(gen, (long long)fields[i].num);
            break;
        case SG_LOG_FIELD_BOOL:
            yajl_gen_bool(gen, fields[i].num != 0);
            break;
        }
    }
    line_end(level, gen);
}

bool sg_log_every_due(struct sg_log_every *every, uint64_t *count)
{
    int64_t now = sg_mono_us();
    every->since++;
    if (every->logged_us != 0 && now - every->logged_us < SG_LOG_EVERY_US)
        return false;
    *count = every->since;
    every->logged_us = now;
    every->since = 0;
    return true;
}
