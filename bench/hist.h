/*
 * Latency histograms for the load tool: a fixed array of log-linear buckets
 * (values exact below 256 us, then within 0.8 %), so recording is O(1), the
 * memory is bounded whatever the run's length, and percentiles are read back
 * at the end.
 */
#ifndef SSOGATE_BENCH_HIST_H
#define SSOGATE_BENCH_HIST_H

#include <stdint.h>

/* Values above this (in microseconds, about 137 s) are recorded as this. */
#define SG_HIST_MAX_US  ((int64_t)1 << 37)
#define SG_HIST_BUCKETS 4096

struct sg_hist {
    uint64_t count;
    int64_t sum_us;
    int64_t max_us;
    uint64_t buckets[SG_HIST_BUCKETS];
};

/* Records one value in microseconds (negative counts as 0, too big as SG_HIST_MAX_US). */
void sg_hist_record(struct sg_hist *h, int64_t us);

/*
 * The value at percentile pct (0..100) in microseconds: the upper bound of
 * the bucket holding that rank, never above the maximum recorded. 0 when
 * the histogram is empty.
 */
int64_t sg_hist_percentile(const struct sg_hist *h, double pct);

/* Mean in microseconds, 0 when empty. */
double sg_hist_mean(const struct sg_hist *h);

#endif
