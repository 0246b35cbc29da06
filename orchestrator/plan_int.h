/* Private to the plan module (plan_spec.c, plan_render.c, plan_place.c): what its files
 * share but orchestrator/plan.h does not offer. */
#ifndef RDM_PLAN_INT_H
#define RDM_PLAN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strbuf.h"
#include "orchestrator/plan.h"

/* Where an emitted node of chain.yaml landed in rendered text. */
struct rdm_plan__mark {
	int line, col;
	const struct rdm_ynode *orig;
};

/* A run of rendered lines that belongs to one stage of chain.yaml: an error at a node
 * the renderer made up itself (a default) is reported at the stage. */
struct rdm_plan__block {
	int first, last;
	const struct rdm_ynode *orig;
};

/* Rendered text that, when tracking, remembers where each emitted node of chain.yaml
 * went (so an error the chain loader reports in it can be traced back to chain.yaml).
 * Out of memory while remembering sets sb.failed, as one in the text does. */
struct rdm_plan__text {
	struct rdm_strbuf sb;
	int tracking;
	struct rdm_plan__mark *marks;
	size_t n_marks, cap_marks;
	struct rdm_plan__block *blocks;
	size_t n_blocks, cap_blocks;
};

void rdm_plan__text_init(struct rdm_plan__text *t, int tracking);

/* Frees the text and what it remembers; may be called twice. */
void rdm_plan__text_fini(struct rdm_plan__text *t);

/* The node of chain.yaml rendered at line:col, else the stage whose lines hold it, else
 * NULL. */
const struct rdm_ynode *rdm_plan__text_origin(const struct rdm_plan__text *t, int line, int col);

/* Renders the static chain for replicas (n of them, by stage then number; every stage
 * has at least one) into t, as rdm_plan_render describes. With a rack (NULL: none) its
 * file is named in the opening comment, and each placed replica's identity is its
 * host's name, the certificate it proves its hops with. Returns 0, or -EINVAL/-ENOMEM
 * with a message in err. */
int rdm_plan__render(struct rdm_plan__text *t, const struct rdm_chain_spec *spec,
		     const struct rdm_rack *rack, const struct rdm_replica *reps, int n, char *err,
		     size_t errlen);

/* Names replica r: number n of stage (index in spec), its id and node id. */
void rdm_plan__set_ids(struct rdm_replica *r, const struct rdm_chain_spec *spec, int stage, int n);

/* Sets r's listen address from ip ("[ip]:port" when v6) and port. */
void rdm_plan__set_listen(struct rdm_replica *r, const char *ip, int v6, uint16_t port);

#endif
