/* Placing a chain's replicas on the nodes of a rack, and re-planning (scale, node down or
 * up, rebase onto a new chain or a saved placement) so that as little as possible moves
 * (orchestrator/plan.h). */
#include "orchestrator/plan_int.h"
#include "lib/util.h"
#include "lib/yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void rdm_plan__set_listen(struct rdm_replica *r, const char *ip, int v6, uint16_t port)
{
	snprintf(r->listen, sizeof(r->listen), v6 ? "[%s]:%u" : "%s:%u", ip, port);
}

void rdm_plan__set_ids(struct rdm_replica *r, const struct rdm_chain_spec *spec, int stage, int n)
{
	r->stage = stage;
	r->n = n;
	r->node_id = (uint32_t)(stage + 1) * RDM_PLAN_ID_STRIDE + (uint32_t)n;
	snprintf(r->id, sizeof(r->id), "%s-%d", spec->stages[stage].name, n);
}

/* ---- placement --------------------------------------------------------------------- */

/* Where placement errors go: at a node of chain.yaml when positions is set (the first
 * plan, whose every choice comes from the files), else a plain line (a scale or a node
 * loss asked for at run time). */
struct pctx {
	struct rdm_plan *p;
	int positions;
	int soft_spread;
	char *err;
	size_t len;
};

static int perr(struct pctx *c, const struct rdm_ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int perr(struct pctx *c, const struct rdm_ynode *at, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->positions)
		rdm_yerr(c->p->spec->doc, at, c->err, c->len, "%s", msg);
	else
		snprintf(c->err, c->len, "%s", msg);
	return -EINVAL;
}

static int labels_match(const struct rdm_rack_node *n, const struct rdm_spec_stage *st)
{
	for (int i = 0; i < st->n_labels; i++) {
		const char *v = rdm_rack_label(n, st->labels[i].key);

		if (!v || strcmp(v, st->labels[i].value))
			return 0;
	}
	return 1;
}

/* Checks what makes a stage impossible whatever the capacity: a label no node has, a
 * label set no node that is up carries, and (spread) more replicas than such nodes. */
static int check_stage(struct pctx *c, int s)
{
	const struct rdm_plan *p = c->p;
	const struct rdm_rack *rack = p->rack;
	const struct rdm_spec_stage *st = &p->spec->stages[s];
	const struct rdm_ynode *at = st->replicas_at ? st->replicas_at : st->map;
	char names[256] = "";
	int matching = 0;

	for (int i = 0; i < st->n_labels; i++) {
		int found = 0;

		for (int k = 0; k < rack->n_hosts && !found; k++) {
			const char *v = rdm_rack_label(&rack->nodes[k], st->labels[i].key);

			found = v && !strcmp(v, st->labels[i].value);
		}
		if (!found)
			return perr(c, st->labels[i].at,
				    "stage '%s': impossible placement: no node in %s has label "
				    "'%s: %s'",
				    st->name, rack->file, st->labels[i].key, st->labels[i].value);
	}
	if (!p->stage_replicas[s])
		return 0; /* pods only: nothing to place on hosts */
	for (int k = 0; k < rack->n_hosts; k++) {
		size_t used = strlen(names);

		if (p->down[k] || !labels_match(&rack->nodes[k], st))
			continue;
		matching++;
		if (used + strlen(rack->nodes[k].name) + 8 < sizeof(names))
			snprintf(names + used, sizeof(names) - used, "%s%s", used ? ", " : "",
				 rack->nodes[k].name);
	}
	if (!matching)
		return perr(c, st->labels_at ? st->labels_at : st->map,
			    "stage '%s': impossible placement: no node that is up carries all "
			    "of its labels",
			    st->name);
	if (st->spread && !c->soft_spread && p->stage_replicas[s] > matching)
		return perr(c, at,
			    "stage '%s': impossible placement: %d replicas spread over distinct "
			    "nodes, but only %d node%s can take%s it (%s)",
			    st->name, p->stage_replicas[s], matching, matching == 1 ? "" : "s",
			    matching == 1 ? "s" : "", names);
	return 0;
}

/* The lowest port of the rack's range no placed or held replica uses on node k's data IP
 * (nodes may share one, on loopback), or 0 when all are taken. */
static uint16_t free_port(const struct rdm_plan *p, int k)
{
	const struct rdm_rack *rack = p->rack;
	size_t span = (size_t)rack->port_last - rack->port_first + 1;
	unsigned char *used = calloc(span, 1);
	uint16_t port = 0;

	if (!used)
		return 0;
	for (int i = 0; i < p->n_replicas; i++) {
		const struct rdm_replica *r = &p->replicas[i];

		if (r->node >= 0 && !strcmp(rack->nodes[r->node].data, rack->nodes[k].data) &&
		    r->port >= rack->port_first && r->port <= rack->port_last)
			used[r->port - rack->port_first] = 1;
	}
	for (int i = 0; i < p->n_held; i++) {
		const struct rdm_held *h = &p->held[i];

		if (!strcmp(rack->nodes[h->node].data, rack->nodes[k].data) &&
		    h->port >= rack->port_first && h->port <= rack->port_last)
			used[h->port - rack->port_first] = 1;
	}
	for (size_t i = 0; i < span; i++)
		if (!used[i]) {
			port = (uint16_t)(rack->port_first + i);
			break;
		}
	free(used);
	return port;
}

/* Places every replica of p whose node is -1, in array order; the others stay. */
static int place(struct pctx *c)
{
	struct rdm_plan *p = c->p;
	const struct rdm_rack *rack = p->rack;
	int nn = rack->n_nodes, rc = 0;
	int *used = calloc((size_t)nn, sizeof(int)), *count = calloc((size_t)nn, sizeof(int));
	int *hosts = calloc((size_t)nn, sizeof(int));

	if (!used || !count || !hosts) {
		snprintf(c->err, c->len, "%s: out of memory", p->spec->file);
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < p->n_replicas; i++) {
		const struct rdm_replica *r = &p->replicas[i];

		if (r->node >= 0) {
			used[r->node] += p->spec->stages[r->stage].workers;
			count[r->node]++;
		}
	}
	for (int i = 0; i < p->n_replicas && !rc; i++) {
		struct rdm_replica *r = &p->replicas[i];
		const struct rdm_spec_stage *st = &p->spec->stages[r->stage];
		int best = -1, best_fresh = 0;
		uint16_t best_port = 0;

		if (r->node >= 0)
			continue;
		memset(hosts, 0, (size_t)nn * sizeof(int));
		for (int j = 0; j < p->n_replicas; j++)
			if (p->replicas[j].node >= 0 && p->replicas[j].stage == r->stage)
				hosts[p->replicas[j].node] = 1;
		for (int k = 0; k < rack->n_hosts; k++) { /* a pod runs only its own replica */
			int fresh = !hosts[k], left = rack->nodes[k].capacity - used[k];
			uint16_t port;

			if (p->down[k] || !labels_match(&rack->nodes[k], st) || left < st->workers)
				continue;
			if (st->spread && !fresh && !c->soft_spread)
				continue;
			if (!(port = free_port(p, k)))
				continue;
			if (best >= 0) {
				int bleft = rack->nodes[best].capacity - used[best];

				if (st->spread && fresh != best_fresh) {
					if (!fresh)
						continue;
				} else if (left != bleft) {
					if (left < bleft)
						continue;
				} else if (count[k] >= count[best]) {
					continue;
				}
			}
			best = k;
			best_fresh = fresh;
			best_port = port;
		}
		if (best < 0) {
			char why[384] = "";
			size_t w = 0;

			for (int k = 0; k < rack->n_hosts && w + 80 < sizeof(why); k++) {
				if (p->down[k] || !labels_match(&rack->nodes[k], st))
					continue;
				w += (size_t)snprintf(why + w, sizeof(why) - w, "%s%s %d free%s",
						      w ? ", " : "", rack->nodes[k].name,
						      rack->nodes[k].capacity - used[k],
						      free_port(p, k) ? "" : ", no free port");
			}
			rc = perr(c, st->replicas_at ? st->replicas_at : st->map,
				  "stage '%s': impossible placement: no node %sfor %s with %d "
				  "worker core%s (cores left: %s)",
				  st->name,
				  st->spread && !c->soft_spread ? "without a replica of it yet "
								: "",
				  r->id, st->workers, st->workers == 1 ? "" : "s", why);
			break;
		}
		r->node = best;
		r->port = best_port;
		rdm_plan__set_listen(r, rack->nodes[best].data,
				     rack->nodes[best].data_family != AF_INET, best_port);
		used[best] += st->workers;
		count[best]++;
	}
out:
	free(used);
	free(count);
	free(hosts);
	return rc;
}

void rdm_plan_free(struct rdm_plan *p)
{
	if (!p)
		return;
	free(p->replicas);
	free(p->stage_replicas);
	free(p->down);
	free(p->held);
	free(p);
}

/* The stage of spec that pod replica r (of a plan for the same rack, maybe another
 * spec) belongs to, or -1 when spec has no such pod-backed stage or the pod left. */
static int pod_stage(const struct rdm_rack *rack, const struct rdm_chain_spec *spec,
		     const struct rdm_replica *r)
{
	const struct rdm_rack_node *rn;
	int s;

	if (r->node < rack->n_hosts || r->node >= rack->n_nodes || r->n < RDM_PLAN_POD_FIRST)
		return -1;
	rn = &rack->nodes[r->node];
	s = rn->pod && !rn->gone ? rdm_chain_spec_find(spec, rn->pod) : -1;
	return s >= 0 && spec->stages[s].pods ? s : -1;
}

/* An empty plan for rack and spec, with room for counts[] replicas per stage (counts
 * NULL: the spec's), then the pod replicas among pods[n_pods] that spec still takes,
 * placed as they were; down copied from old_down when given. NULL on out of memory. */
static struct rdm_plan *plan_alloc(const struct rdm_rack *rack, const struct rdm_chain_spec *spec,
				   const int *counts, const unsigned char *old_down,
				   const struct rdm_replica *pods, int n_pods)
{
	struct rdm_plan *p = calloc(1, sizeof(*p));
	int total = 0, i = 0;

	if (!p)
		return NULL;
	p->rack = rack;
	p->spec = spec;
	p->stage_replicas = calloc((size_t)spec->n_stages, sizeof(int));
	p->down = calloc((size_t)rack->n_hosts + RDM_RACK_PODS_MAX, 1);
	if (!p->stage_replicas || !p->down)
		goto err;
	for (int s = 0; s < spec->n_stages; s++) {
		p->stage_replicas[s] = counts ? counts[s] : spec->stages[s].replicas;
		total += p->stage_replicas[s];
	}
	if (old_down)
		memcpy(p->down, old_down, (size_t)rack->n_nodes);
	p->replicas = calloc((size_t)(total + n_pods) + 1, sizeof(*p->replicas));
	if (!p->replicas)
		goto err;
	for (int s = 0; s < spec->n_stages; s++)
		for (int n = 1; n <= p->stage_replicas[s]; n++, i++) {
			rdm_plan__set_ids(&p->replicas[i], spec, s, n);
			p->replicas[i].node = -1;
		}
	for (int j = 0; j < n_pods; j++) {
		int s = pod_stage(rack, spec, &pods[j]);

		if (s < 0)
			continue;
		p->replicas[i] = pods[j];
		rdm_plan__set_ids(&p->replicas[i++], spec, s, pods[j].n);
		p->n_pods++;
	}
	p->n_replicas = i;
	return p;
err:
	rdm_plan_free(p);
	return NULL;
}

/* Keeps every replica of old that p still has where old put it. */
static void keep_placed(struct rdm_plan *p, const struct rdm_plan *old)
{
	for (int i = 0; i < p->n_replicas; i++)
		for (int j = 0; j < old->n_replicas; j++)
			if (old->replicas[j].stage == p->replicas[i].stage &&
			    old->replicas[j].n == p->replicas[i].n) {
				p->replicas[i] = old->replicas[j];
				break;
			}
}

/* p's holds: those of held[0..n_held) on nodes that are up, and the port of each replica
 * of was[0..n_was) placed on a node that is up that p has no more (scaled away, or gone
 * from the chain by `ctl apply`) or, without claim, has not kept in that place (a rebase
 * moved it: its old node drains it meanwhile). With claim, a replica p has again and has
 * not placed yet takes its held place back (a scale: the node keeps it running).
 * 0, or -ENOMEM (p is then without holds). */
static int hold_places(struct rdm_plan *p, const struct rdm_held *held, int n_held,
		       const struct rdm_replica *was, int n_was, int claim)
{
	struct rdm_held *h = calloc((size_t)(n_held + n_was) + 1, sizeof(*h));
	int n = 0;

	if (!h)
		return -ENOMEM;
	for (int j = 0; j < n_held; j++)
		if (held[j].node >= 0 && held[j].node < p->rack->n_nodes && !p->down[held[j].node])
			h[n++] = held[j];
	for (int j = 0; j < n_was; j++) {
		const struct rdm_replica *o = &was[j], *r = rdm_plan_replica(p, o->id);

		if (o->node < 0 || o->node >= p->rack->n_nodes || p->down[o->node] ||
		    (r && (claim || (r->node == o->node && r->port == o->port))))
			continue;
		snprintf(h[n].id, sizeof(h[n].id), "%s", o->id);
		h[n].node = o->node;
		h[n++].port = o->port;
	}
	for (int i = 0; claim && i < p->n_replicas; i++) {
		struct rdm_replica *r = &p->replicas[i];
		const struct rdm_rack_node *rn;

		for (int j = 0; r->node < 0 && j < n; j++) {
			if (strcmp(h[j].id, r->id))
				continue;
			rn = &p->rack->nodes[h[j].node];
			r->node = h[j].node;
			r->port = h[j].port;
			rdm_plan__set_listen(r, rn->data, rn->data_family != AF_INET, r->port);
			h[j] = h[--n];
		}
	}
	free(p->held);
	p->held = h;
	p->n_held = n;
	return 0;
}

/* p, made from old, keeps old's holds and holds the places of the replicas old had that
 * p has not (hold_places, claiming). */
static int carry_held(struct rdm_plan *p, const struct rdm_plan *old)
{
	return hold_places(p, old->held, old->n_held, old->replicas, old->n_replicas, 1);
}

/* A plan's pod replicas, as plan_alloc takes them. */
#define PODS(p) (p)->replicas + (p)->n_replicas - (p)->n_pods, (p)->n_pods

static struct rdm_plan *nomem(char *err, size_t errlen)
{
	snprintf(err, errlen, "out of memory");
	errno = ENOMEM;
	return NULL;
}

/* Finishes a plan: the stage checks (all stages, or only `stage` when >= 0), then
 * placement. Frees p and returns NULL with errno on error. */
static struct rdm_plan *finish(struct pctx *c, int stage)
{
	int rc = 0;

	for (int s = 0; s < c->p->spec->n_stages && !rc; s++)
		if (stage < 0 || s == stage)
			rc = check_stage(c, s);
	if (!rc)
		rc = place(c);
	if (rc) {
		rdm_plan_free(c->p);
		errno = -rc;
		return NULL;
	}
	return c->p;
}

struct rdm_plan *rdm_plan_new(const struct rdm_rack *rack, const struct rdm_chain_spec *spec,
			      char *err, size_t errlen)
{
	struct pctx c = {.positions = 1, .err = err, .len = errlen};

	c.p = plan_alloc(rack, spec, NULL, NULL, NULL, 0);
	if (!c.p)
		return nomem(err, errlen);
	return finish(&c, -1);
}

struct rdm_plan *rdm_plan_scale(const struct rdm_plan *old, const char *stage, int replicas,
				char *err, size_t errlen)
{
	int s = rdm_chain_spec_find(old->spec, stage), *counts;
	struct pctx c = {.err = err, .len = errlen};

	if (s < 0) {
		snprintf(err, errlen, "scale: no stage named '%s' in %s", stage, old->spec->file);
		errno = ENOENT;
		return NULL;
	}
	if (replicas < 1 || replicas > RDM_PLAN_MAX_REPLICAS) {
		snprintf(err, errlen, "scale: stage '%s': %d replicas is out of range (1..%d)",
			 stage, replicas, RDM_PLAN_MAX_REPLICAS);
		errno = EINVAL;
		return NULL;
	}
	counts = malloc((size_t)old->spec->n_stages * sizeof(int));
	if (!counts)
		return nomem(err, errlen);
	memcpy(counts, old->stage_replicas, (size_t)old->spec->n_stages * sizeof(int));
	counts[s] = replicas;
	c.p = plan_alloc(old->rack, old->spec, counts, old->down, PODS(old));
	free(counts);
	if (!c.p)
		return nomem(err, errlen);
	keep_placed(c.p, old);
	if (carry_held(c.p, old) < 0) {
		rdm_plan_free(c.p);
		return nomem(err, errlen);
	}
	/* Only the scaled stage is checked: the others keep what they have. */
	return finish(&c, replicas > old->stage_replicas[s] ? s : INT32_MAX);
}

/* A copy of old with node k's down flag set to down. */
static struct rdm_plan *with_node(const struct rdm_plan *old, int k, int down)
{
	struct rdm_plan *p =
	    plan_alloc(old->rack, old->spec, old->stage_replicas, old->down, PODS(old));

	if (!p)
		return NULL;
	keep_placed(p, old);
	p->down[k] = (unsigned char)down;
	if (carry_held(p, old) < 0) {
		rdm_plan_free(p);
		return NULL;
	}
	return p;
}

struct rdm_plan *rdm_plan_node_down(const struct rdm_plan *old, const char *node, char *err,
				    size_t errlen)
{
	int k = rdm_rack_find(old->rack, node);
	struct pctx c = {.soft_spread = 1, .err = err, .len = errlen};

	if (k < 0) {
		snprintf(err, errlen, "no node named '%s' in %s", node, old->rack->file);
		errno = ENOENT;
		return NULL;
	}
	c.p = with_node(old, k, 1);
	if (!c.p)
		return nomem(err, errlen);
	for (int i = 0; i < c.p->n_replicas; i++)
		if (c.p->replicas[i].node == k) {
			c.p->replicas[i].node = -1;
			c.p->replicas[i].port = 0;
			c.p->replicas[i].listen[0] = '\0';
		}
	return finish(&c, INT32_MAX);
}

struct rdm_plan *rdm_plan_node_up(const struct rdm_plan *old, const char *node, char *err,
				  size_t errlen)
{
	int k = rdm_rack_find(old->rack, node);
	struct rdm_plan *p;

	if (k < 0) {
		snprintf(err, errlen, "no node named '%s' in %s", node, old->rack->file);
		errno = ENOENT;
		return NULL;
	}
	p = with_node(old, k, 0);
	return p ? p : nomem(err, errlen);
}

const struct rdm_replica *rdm_plan_replica(const struct rdm_plan *p, const char *id)
{
	for (int i = 0; p && id && i < p->n_replicas; i++)
		if (!strcmp(p->replicas[i].id, id))
			return &p->replicas[i];
	return NULL;
}

int rdm_plan_node_replicas(const struct rdm_plan *p, const char *node,
			   const struct rdm_replica **out, int max)
{
	int k = rdm_rack_find(p->rack, node), n = 0;

	if (k < 0)
		return -ENOENT;
	for (int i = 0; i < p->n_replicas; i++)
		if (p->replicas[i].node == k) {
			if (n < max)
				out[n] = &p->replicas[i];
			n++;
		}
	return n;
}

struct rdm_plan *rdm_plan_copy(const struct rdm_plan *p)
{
	return with_node(p, 0, p->down[0]);
}

int rdm_plan_release(struct rdm_plan *p, const char *node, const char *have)
{
	int k = rdm_rack_find(p->rack, node), gone = 0;

	for (int i = 0; k >= 0 && i < p->n_held;) {
		if (p->held[i].node == k && !rdm_word_in(have, p->held[i].id)) {
			p->held[i] = p->held[--p->n_held];
			gone++;
		} else {
			i++;
		}
	}
	return gone;
}

struct rdm_plan *rdm_plan_rebase(const struct rdm_rack *rack, const struct rdm_chain_spec *spec,
				 const int *counts, const unsigned char *down,
				 const struct rdm_replica *keep, int n_keep,
				 const struct rdm_held *held, int n_held, char *err, size_t errlen)
{
	struct pctx c = {.positions = 1, .err = err, .len = errlen};
	struct rdm_plan *p;
	int *used = calloc((size_t)rack->n_nodes, sizeof(int));

	if (!used)
		return nomem(err, errlen);
	for (int s = 0; counts && s < spec->n_stages; s++)
		if (counts[s] < !spec->stages[s].pods || counts[s] > RDM_PLAN_MAX_REPLICAS) {
			snprintf(err, errlen, "stage '%s': %d replicas is out of range (1..%d)",
				 spec->stages[s].name, counts[s], RDM_PLAN_MAX_REPLICAS);
			free(used);
			errno = EINVAL;
			return NULL;
		}
	c.p = plan_alloc(rack, spec, counts, down, keep, n_keep); /* keep's pods stay */
	if (!c.p) {
		free(used);
		return nomem(err, errlen);
	}
	for (int i = c.p->n_replicas - c.p->n_pods; i < c.p->n_replicas; i++)
		used[c.p->replicas[i].node] = 1;
	/* A kept replica stays on its node and port while the node is up, carries the
	 * stage's labels, has the cores, and no other kept replica took the port; so does a
	 * replica that comes back while its node still drains it (a hold with its id). */
	for (int i = 0; i < c.p->n_replicas - c.p->n_pods; i++) {
		struct rdm_replica *r = &c.p->replicas[i];
		const struct rdm_spec_stage *st = &spec->stages[r->stage];
		int k = -1, taken = 0;
		uint16_t port = 0;

		for (int j = 0; j < n_keep && k < 0; j++)
			if (!strcmp(keep[j].id, r->id)) {
				k = keep[j].node;
				port = keep[j].port;
			}
		for (int j = 0; j < n_held && k < 0; j++)
			if (!strcmp(held[j].id, r->id)) {
				k = held[j].node;
				port = held[j].port;
			}
		if (k < 0 || k >= rack->n_hosts || (down && down[k]) ||
		    !labels_match(&rack->nodes[k], st) ||
		    used[k] + st->workers > rack->nodes[k].capacity || port < rack->port_first ||
		    port > rack->port_last)
			continue;
		for (int q = 0; q < i; q++)
			taken |=
			    c.p->replicas[q].node >= 0 && c.p->replicas[q].port == port &&
			    !strcmp(rack->nodes[c.p->replicas[q].node].data, rack->nodes[k].data);
		if (taken)
			continue;
		r->node = k;
		r->port = port;
		rdm_plan__set_listen(r, rack->nodes[k].data, rack->nodes[k].data_family != AF_INET,
				     port);
		used[k] += st->workers;
	}
	free(used);
	if (hold_places(c.p, held, n_held, keep, n_keep, 0) < 0) {
		rdm_plan_free(c.p);
		return nomem(err, errlen);
	}
	/* The stage checks only where something is left to place: a stage whose replicas all
	 * stayed is as it ran (a node's loss may have put spread siblings on one node, which
	 * the strict spread check would refuse, and a restart must not). */
	for (int s = 0, i = 0, rc; s < spec->n_stages; s++) {
		int open = 0;

		for (int n = 0; n < c.p->stage_replicas[s]; n++, i++)
			open |= c.p->replicas[i].node < 0;
		if (open && (rc = check_stage(&c, s)) < 0) {
			rdm_plan_free(c.p);
			errno = -rc;
			return NULL;
		}
	}
	p = finish(&c, INT32_MAX);
	/* A replica placed on the node that holds its old place runs there at its new
	 * address: the node stops the old one at once (it moves), so nothing is held. */
	for (int i = 0; p && i < p->n_held;) {
		const struct rdm_replica *r = rdm_plan_replica(p, p->held[i].id);

		if (r && r->node == p->held[i].node)
			p->held[i] = p->held[--p->n_held];
		else
			i++;
	}
	return p;
}

/* ---- pods ------------------------------------------------------------------------- */

const struct rdm_replica *rdm_plan_pod_replica(const struct rdm_plan *p, int k)
{
	for (int i = p->n_replicas - p->n_pods; i < p->n_replicas; i++)
		if (p->replicas[i].node == k)
			return &p->replicas[i];
	return NULL;
}

struct rdm_plan *rdm_plan_add_pod(const struct rdm_plan *old, int k, int want, char *err,
				  size_t errlen)
{
	const struct rdm_rack *rack = old->rack;
	const struct rdm_rack_node *rn =
	    k >= rack->n_hosts && k < rack->n_nodes ? &rack->nodes[k] : NULL;
	int s = rn && rn->pod ? rdm_chain_spec_find(old->spec, rn->pod) : -1, have = 0, n;
	unsigned char taken[RDM_PLAN_POD_LAST + 1] = {0};
	struct rdm_plan *p;
	struct rdm_replica *r;
	uint16_t port;

	errno = EINVAL;
	if (s < 0 || !old->spec->stages[s].pods) {
		snprintf(err, errlen, "stage '%s' of %s takes no pods (no `pods:` under it)",
			 rn && rn->pod ? rn->pod : "?", old->spec->file);
		return NULL;
	}
	if (rdm_plan_pod_replica(old, k)) {
		snprintf(err, errlen, "pod %s runs a replica already", rn->name);
		errno = EEXIST;
		return NULL;
	}
	for (int i = 0; i < old->n_replicas; i++)
		if (old->replicas[i].stage == s) {
			have++;
			if (old->replicas[i].n <= RDM_PLAN_POD_LAST)
				taken[old->replicas[i].n] = 1;
		}
	if (have >= RDM_PLAN_MAX_REPLICAS) {
		snprintf(err, errlen, "stage '%s' has %d replicas, the most a next list holds",
			 rn->pod, have);
		return NULL;
	}
	n = want >= RDM_PLAN_POD_FIRST && want <= RDM_PLAN_POD_LAST && !taken[want] ? want : 0;
	for (int c = RDM_PLAN_POD_FIRST; !n && c <= RDM_PLAN_POD_LAST; c++)
		if (!taken[c])
			n = c;
	if (!(port = free_port(old, k))) {
		snprintf(err, errlen, "pod %s: no free port in %u..%u on %s", rn->name,
			 rack->port_first, rack->port_last, rn->data);
		return NULL;
	}
	p = with_node(old, 0, old->down[0]);
	if (!p)
		return nomem(err, errlen);
	r = &p->replicas[p->n_replicas++];
	p->n_pods++;
	memset(r, 0, sizeof(*r));
	rdm_plan__set_ids(r, old->spec, s, n);
	r->node = k;
	r->port = port;
	rdm_plan__set_listen(r, rn->data, rn->data_family != AF_INET, port);
	p->down[k] = 0;
	return p;
}

struct rdm_plan *rdm_plan_remove_pod(const struct rdm_plan *old, int k, char *err, size_t errlen)
{
	struct rdm_plan *p = with_node(old, 0, old->down[0]);

	if (!p)
		return nomem(err, errlen);
	for (int i = p->n_replicas - p->n_pods; i < p->n_replicas; i++)
		if (p->replicas[i].node == k) {
			memmove(&p->replicas[i], &p->replicas[i + 1],
				sizeof(*p->replicas) * (size_t)(p->n_replicas - i - 1));
			p->n_replicas--;
			p->n_pods--;
			break;
		}
	return p;
}
