#include "hist.h"

/* Values below EXACT get a bucket each; above, each power of two gets HALF buckets. */
#define EXACT 256
#define HALF  128

static unsigned bucket_of(int64_t us)
{
    if (us < EXACT)
        return (unsigned)us;
    unsigned top_bit = 63u - (unsigned)__builtin_clzll((unsigned long long)us);
    unsigned shift = top_bit - 7;
    unsigned mantissa = (unsigned)(us >> shift);
    return EXACT + (shift - 1) * HALF + (mantissa - HALF);
}

/* The largest value that lands in bucket b. */
static int64_t bucket_top(unsigned b)
{
    if (b < EXACT)
        return b;
    unsigned shift = (b - EXACT) / HALF + 1;
    int64_t mantissa = (int64_t)((b - EXACT) % HALF + HALF);
    return ((mantissa + 1) << shift) - 1;
}

void sg_hist_record(struct sg_hist *h, int64_t us)
{
    if (us < 0)
        us = 0;
    if (us > SG_HIST_MAX_US)
        us = SG_HIST_MAX_US;
    unsigned b = bucket_of(us);
    if (b >= SG_HIST_BUCKETS)
        b = SG_HIST_BUCKETS - 1;
    h->buckets[b]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

int64_t sg_hist_percentile(const struct sg_hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    if (pct < 0)
        pct = 0;
    if (pct > 100)
        pct = 100;
    /* The rank (1-based) of the sample at pct, as in "nearest rank". */
    uint64_t rank = (uint64_t)((pct / 100.0) * (double)h->count + 0.999999);
    if (rank == 0)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned b = 0; b < SG_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            int64_t top = bucket_top(b);
            return top < h->max_us ? top : h->max_us;
        }
    }
    return h->max_us;
}

double sg_hist_mean(const struct sg_hist *h)
{
    return h->count == 0 ? 0.0 : (double)h->sum_us / (double)h->count;
}
