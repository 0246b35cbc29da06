/* The orchestrator's plan in force: what each node gets, how a new plan differs from it,
 * and switching to a new one (saved first, then pushed). */
#include "orchestrator/orch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rdm_orch__assigned(const struct rdm_plan *p, int k, char *out, size_t len)
{
	const struct rdm_replica *r[RDM_PLAN_MAX_STAGES];
	int n = rdm_plan_node_replicas(p, p->rack->nodes[k].name, r, RDM_PLAN_MAX_STAGES);
	size_t used = 0;

	out[0] = 0;
	for (int i = 0; i < n && i < RDM_PLAN_MAX_STAGES; i++)
		used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s%s",
					 i ? " " : "", r[i]->id);
}

int rdm_orch__plan_diff(FILE *f, const struct rdm_plan *a, const struct rdm_plan *b)
{
	int k = 0;

	for (int i = 0; i < b->n_replicas; i++) {
		const struct rdm_replica *nr = &b->replicas[i];
		const struct rdm_replica * or = a ? rdm_plan_replica(a, nr->id) : NULL;

		if (! or) {
			fprintf(f, "  + %s on %s (%s)\n", nr->id, b->rack->nodes[nr->node].name,
				nr->listen);
			k++;
		} else if (or->node != nr->node || strcmp(or->listen, nr->listen)) {
			fprintf(f, "  ~ %s: %s -> %s (%s)\n", nr->id, a->rack->nodes[or->node].name,
				b->rack->nodes[nr->node].name, nr->listen);
			k++;
		}
	}
	for (int i = 0; a && i < a->n_replicas; i++)
		if (!rdm_plan_replica(b, a->replicas[i].id)) {
			fprintf(f, "  - %s from %s\n", a->replicas[i].id,
				a->rack->nodes[a->replicas[i].node].name);
			k++;
		}
	return k;
}

int rdm_orch__commit(struct orch *o, struct rdm_plan *np, const char *chain, char *err,
		     size_t errlen)
{
	struct rdm_orch_state ns = {.epoch = o->st.epoch + 1,
				    .chain = (char *)(chain ? chain : o->st.chain),
				    .spent = o->st.spent, /* borrowed: it stays o->st's */
				    .n_spent = o->st.n_spent};
	enum rdm_down_why *why = calloc((size_t)o->rack.n_nodes + 1, sizeof(*why));
	char *text = rdm_plan_render(np, err, errlen), *dup = chain ? strdup(chain) : NULL;
	int rc = -ENOMEM;

	if (!text) {
		rc = -EINVAL;
		goto fail;
	}
	if (!why || (chain && !dup))
		goto fail;
	for (int k = 0; k < o->rack.n_nodes; k++)
		why[k] = o->nodes[k].drained ? RDM_DOWN_DRAINED : RDM_DOWN_DEAD;
	rc = rdm_state_set_plan(&ns, np, why);
	if (rc < 0)
		goto fail;
	rc = rdm_orch__store_save(o, &ns, chain, err, errlen);
	if (rc < 0)
		goto fail;
	free(o->st.replicas);
	free(o->st.down);
	o->st.replicas = ns.replicas;
	o->st.n_replicas = ns.n_replicas;
	o->st.down = ns.down;
	o->st.n_down = ns.n_down;
	o->st.epoch = ns.epoch;
	if (dup) {
		free(o->st.chain);
		o->st.chain = dup;
	}
	free(why);
	rdm_plan_free(o->plan);
	o->plan = np;
	free(o->rendered);
	o->rendered = text;
	rdm_orch__push_all(o);
	return 0;
fail:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	free(ns.replicas);
	free(ns.down);
	free(why);
	free(dup);
	free(text);
	rdm_plan_free(np);
	return rc;
}
