/* Per-flow packet and byte counters in a bounded open-addressing table (lib/flowcount.h). */
#include "lib/flowcount.h"

#include <errno.h>
#include <stdlib.h>

#include "lib/mem.h"

int rdm_flowcount_init(struct rdm_flowcount *t, uint32_t max_flows)
{
	uint32_t cap = 16;

	if (max_flows == 0 || max_flows > (1u << 30))
		return -EINVAL;
	while (cap < 2 * max_flows)
		cap <<= 1;
	t->e = rdm_calloc_touched(cap, sizeof(*t->e));
	if (!t->e)
		return -ENOMEM;
	t->cap = cap;
	t->mask = cap - 1;
	t->max_flows = max_flows;
	t->flows = 0;
	t->untracked = 0;
	return 0;
}

struct rdm_flowcount_entry *rdm_flowcount__add_more(struct rdm_flowcount *t, uint64_t id,
						    uint32_t i, uint32_t bytes)
{
	for (;;) {
		struct rdm_flowcount_entry *e = &t->e[i];

		if (e->flow_id == id) {
			e->packets++;
			e->bytes += bytes;
			return e;
		}
		if (e->flow_id == 0) {
			if (t->flows >= t->max_flows) {
				t->untracked++;
				return NULL;
			}
			e->flow_id = id;
			e->packets = 1;
			e->bytes = bytes;
			t->flows++;
			return e;
		}
		i = (i + 1) & t->mask;
	}
}

void rdm_flowcount_fini(struct rdm_flowcount *t)
{
	free(t->e);
	t->e = NULL;
}
