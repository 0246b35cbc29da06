/* The log-linear latency histogram (lib/hist.h): recording, merging, percentiles. */
#include "lib/hist.h"

#include <string.h>

#define SUB (1u << RDM_HIST_SUB_BITS)

/* Values below 2*SUB get a bucket each; above, a bucket spans 1/SUB of its octave. */
static unsigned bucket_of(uint64_t v)
{
	unsigned msb, shift;

	if (v < 2 * SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	shift = msb - RDM_HIST_SUB_BITS;
	return (shift + 1) * SUB + (unsigned)((v >> shift) & (SUB - 1));
}

/* The lowest value that falls into bucket i. */
static uint64_t bucket_low(unsigned i)
{
	unsigned shift;

	if (i < 2 * SUB)
		return i;
	shift = i / SUB - 1;
	return ((uint64_t)SUB + (i & (SUB - 1))) << shift;
}

void rdm_hist_init(struct rdm_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void rdm_hist_add(struct rdm_hist *h, uint64_t v)
{
	h->b[bucket_of(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void rdm_hist_merge(struct rdm_hist *dst, const struct rdm_hist *src)
{
	for (unsigned i = 0; i < RDM_HIST_BUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->count += src->count;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t rdm_hist_pct(const struct rdm_hist *h, double p)
{
	uint64_t rank, seen = 0;

	if (!h->count)
		return 0;
	if (p >= 100.0)
		return h->max;
	rank = (uint64_t)(p / 100.0 * (double)h->count);
	if (rank >= h->count)
		rank = h->count - 1;
	for (unsigned i = 0; i < RDM_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen > rank) {
			uint64_t lo = bucket_low(i);
			uint64_t hi = i + 1 < RDM_HIST_BUCKETS ? bucket_low(i + 1) - 1 : lo;
			uint64_t mid = lo + (hi - lo) / 2;

			/* The midpoint halves the error; clamp into what was seen. */
			if (mid < h->min)
				mid = h->min;
			if (mid > h->max)
				mid = h->max;
			return mid;
		}
	}
	return h->max;
}
