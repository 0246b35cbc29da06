/* A log-linear latency histogram: 64 sub-buckets per power of two, so any reported
 * percentile is within 1/64 (1.6 %) of a value actually recorded. Fixed size, no
 * allocation per sample; merge by adding buckets. */
#ifndef RDM_HIST_H
#define RDM_HIST_H

#include <stdint.h>

#define RDM_HIST_SUB_BITS 6
#define RDM_HIST_BUCKETS  ((64 - RDM_HIST_SUB_BITS + 1) << RDM_HIST_SUB_BITS)

struct rdm_hist {
	uint64_t count, sum, min, max;
	uint64_t b[RDM_HIST_BUCKETS];
};

void rdm_hist_init(struct rdm_hist *h);
void rdm_hist_add(struct rdm_hist *h, uint64_t v);
void rdm_hist_merge(struct rdm_hist *dst, const struct rdm_hist *src);
/* The value at percentile p (0..100), 0 when empty. p = 100 gives the exact max. */
uint64_t rdm_hist_pct(const struct rdm_hist *h, double p);

#endif
