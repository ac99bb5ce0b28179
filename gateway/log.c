#include "ssogate/log.h"

#include "ssogate/common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

static enum sg_log_level current_level = SG_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void sg_log_set_level(enum sg_log_level level)
{
    current_level = level;
}

int sg_log_enabled(enum sg_log_level level)
{
    return level >= current_level;
}

static void gen_string(yajl_gen gen, const char *s)
{
    yajl_gen_string(gen, (const unsigned char *)s, strlen(s));
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

static void line_end(yajl_gen gen)
{
    const unsigned char *buf;
    size_t len;

    yajl_gen_map_close(gen);
    yajl_gen_get_buf(gen, &buf, &len);
    unsigned char *line = sg_malloc(len + 1);
    memcpy(line, buf, len);
    line[len] = '\n';
    write_all(line, len + 1);
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
    line_end(gen);
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
    line_end(gen);
}
