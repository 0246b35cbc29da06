/* The placement the orchestrator's desired state (orchestrator/state.c) saves
 * (rdm_state_set_plan) and restores (rdm_state_plan) after a restart, to the very
 * placement that was running, and rdm_plan_rebase (orchestrator/plan_place.c), which
 * keeps saved or running replicas where they are. The file format itself:
 * tests/test_state.c. Files are written to a fresh temporary directory per test. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/plan.h"
#include "orchestrator/rack.h"
#include "orchestrator/state.h"
#include "tests/lib/state_fixture.h"

TestSuite(state, .init = mkdir_tmp, .fini = rm_tmp);

/* ---- the placement, saved and restored ---- */

#define RACK4                                                                                      \
	"nodes:\n"                                                                                 \
	"  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 4}\n"                       \
	"  - {name: n2, control: 10.77.0.2, data: 10.77.0.2, capacity: 4}\n"                       \
	"  - {name: n3, control: 10.77.0.3, data: 10.77.0.3, capacity: 4}\n"                       \
	"  - {name: n4, control: 10.77.0.4, data: 10.77.0.4, capacity: 4}\n"

/* Room for every replica on two nodes, so that losing two of four moves them all. */
#define RACK4_BIG                                                                                  \
	"nodes:\n"                                                                                 \
	"  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 8}\n"                       \
	"  - {name: n2, control: 10.77.0.2, data: 10.77.0.2, capacity: 8}\n"                       \
	"  - {name: n3, control: 10.77.0.3, data: 10.77.0.3, capacity: 8}\n"                       \
	"  - {name: n4, control: 10.77.0.4, data: 10.77.0.4, capacity: 8}\n"

#define CHAIN_HEAD "chain: {name: t}\nstages:\n"
#define EDGE	   "  - name: edge\n    run: [stamp]\n    ingress: {mode: gen, count: 10}\n"
#define DPI	   "  - name: dpi\n    run: [stamp, dpi]\n    workers: 2\n"
#define LOG	   "  - name: log\n    run: [stamp]\n    egress:\n"
#define CHAIN3	   CHAIN_HEAD EDGE DPI LOG

struct world {
	struct rdm_rack rack;
	struct rdm_chain_spec spec;
};

static void world_load_with(struct world *w, const char *rack, const char *chain)
{
	cr_assert_eq(rdm_rack_load(put("rack.yaml", rack), &w->rack, err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(rdm_chain_spec_load(put("chain.yaml", chain), &w->spec, err, sizeof(err)), 0,
		     "%s", err);
}

static void world_load(struct world *w)
{
	world_load_with(w, RACK4, CHAIN3);
}

static void world_free(struct world *w)
{
	rdm_chain_spec_free(&w->spec);
	rdm_rack_free(&w->rack);
}

/* The node a replica runs on, by name. */
static const char *node_of(const struct rdm_plan *p, const char *id)
{
	const struct rdm_replica *r = rdm_plan_replica(p, id);

	cr_assert_not_null(r, "no replica %s", id);
	cr_assert_geq(r->node, 0, "%s not placed", id);
	return p->rack->nodes[r->node].name;
}

static void expect_at(const struct rdm_plan *p, const char *id, const char *node,
		      const char *listen)
{
	const struct rdm_replica *r = rdm_plan_replica(p, id);

	cr_assert_not_null(r, "no replica %s", id);
	cr_assert_str_eq(node_of(p, id), node, "%s", id);
	cr_assert_str_eq(r->listen, listen, "%s", id);
}

/* id runs on the same node and port in a and b. */
static void expect_kept(const struct rdm_plan *a, const struct rdm_plan *b, const char *id)
{
	const struct rdm_replica *x = rdm_plan_replica(a, id), *y = rdm_plan_replica(b, id);

	cr_assert(x && y, "%s missing", id);
	cr_assert_eq(x->node, y->node, "%s moved from %s to %s", id, node_of(a, id),
		     node_of(b, id));
	cr_assert_eq(x->port, y->port, "%s changed port", id);
	cr_assert_str_eq(x->listen, y->listen, "%s", id);
}

/* The two plans are the same placement: same ids, nodes, ports, listen addresses, node
 * ids, replicas per stage, nodes down, and ports held for replicas scaled away. */
static void expect_same_plan(const struct rdm_plan *a, const struct rdm_plan *b)
{
	cr_assert_eq(a->n_replicas, b->n_replicas);
	for (int i = 0; i < a->n_replicas; i++) {
		const struct rdm_replica *x = &a->replicas[i];
		const struct rdm_replica *y = rdm_plan_replica(b, x->id);

		cr_assert_not_null(y, "%s missing", x->id);
		expect_kept(a, b, x->id);
		cr_assert_eq(x->node_id, y->node_id, "%s node id", x->id);
		cr_assert_eq(x->stage, y->stage, "%s stage", x->id);
		cr_assert_eq(x->n, y->n, "%s n", x->id);
	}
	for (int s = 0; s < a->spec->n_stages; s++)
		cr_assert_eq(a->stage_replicas[s], b->stage_replicas[s], "stage %d", s);
	for (int k = 0; k < a->rack->n_nodes; k++)
		cr_assert_eq(a->down[k], b->down[k], "node %d", k);
	cr_assert_eq(a->n_held, b->n_held);
	for (int i = 0; i < a->n_held; i++) {
		int found = 0;

		for (int j = 0; j < b->n_held; j++)
			found |= !strcmp(a->held[i].id, b->held[j].id) &&
				 a->held[i].node == b->held[j].node &&
				 a->held[i].port == b->held[j].port;
		cr_assert(found, "the hold of %s", a->held[i].id);
	}
}

/* Replaces *p by np, which must not be NULL. */
static void take(struct rdm_plan **p, struct rdm_plan *np, const char *what)
{
	cr_assert_not_null(np, "%s: %s", what, err);
	rdm_plan_free(*p);
	*p = np;
}

/* One live change, as the orchestrator makes them: "scale STAGE N", "dead NODE",
 * "drain NODE", "up NODE"; why[] tracks why each node is down. */
static void change(struct rdm_plan **p, enum rdm_down_why *why, const char *op)
{
	char verb[16], arg[64];
	int n = 0;

	cr_assert_geq(sscanf(op, "%15s %63s %d", verb, arg, &n), 2, "%s", op);
	if (!strcmp(verb, "scale")) {
		take(p, rdm_plan_scale(*p, arg, n, err, sizeof(err)), op);
	} else if (!strcmp(verb, "up")) {
		take(p, rdm_plan_node_up(*p, arg, err, sizeof(err)), op);
	} else {
		int k = rdm_rack_find((*p)->rack, arg);

		cr_assert_geq(k, 0, "%s", op);
		take(p, rdm_plan_node_down(*p, arg, err, sizeof(err)), op);
		why[k] = !strcmp(verb, "drain") ? RDM_DOWN_DRAINED : RDM_DOWN_DEAD;
	}
}

/* What the orchestrator does on each change (commit) and at start (restore): describes
 * live in st (epoch + 1), saves it to path, then loads it back and restores the plan,
 * which is returned. */
static struct rdm_plan *save_and_restore(const struct world *w, struct rdm_orch_state *st,
					 const struct rdm_plan *live, const enum rdm_down_why *why,
					 const char *path)
{
	struct rdm_orch_state back;
	struct rdm_plan *p;

	cr_assert_eq(rdm_state_set_plan(st, live, why), 0);
	st->epoch++;
	cr_assert_eq(rdm_state_save(path, st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_state_load(path, &back, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(back.epoch, st->epoch);
	cr_assert_str_eq(back.chain, st->chain);
	p = rdm_state_plan(&back, &w->rack, &w->spec, err, sizeof(err));
	cr_assert_not_null(p, "restore: %s", err);
	rdm_state_free(&back);
	return p;
}

Test(state, set_plan_describes_the_plan)
{
	enum rdm_down_why why[4] = {RDM_DOWN_DEAD, RDM_DOWN_DRAINED, RDM_DOWN_DRAINED,
				    RDM_DOWN_DRAINED};
	static const char *const reps[] = {"edge-1@n1:7100", "dpi-1@n2:7100", "dpi-2@n3:7100",
					   "dpi-3@n4:7100",  "log-1@n1:7101", NULL};
	static const char *const moved[] = {"edge-1@n4:7101", "dpi-1@n3:7102", "dpi-2@n3:7100",
					    "dpi-3@n4:7100",  "log-1@n3:7101", NULL};
	static const char *const down[] = {"n1:dead", "n2:drained", NULL};
	static const char *const down_dead[] = {"n1:dead", "n2:dead", NULL};
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *p, *d;

	world_load_with(&w, RACK4_BIG, CHAIN_HEAD EDGE DPI "    replicas: 3\n" LOG);
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	make_state(&st, 5, "/c.yaml", NULL, NULL);
	cr_assert_eq(rdm_state_set_plan(&st, p, NULL), 0);
	expect_state(&st, 5, "/c.yaml", NULL, reps);

	/* Two nodes down: their replicas move (dpi-1 beside a sibling: no node is free of
	 * dpi), and each down node is saved with its reason; only down nodes count. */
	d = rdm_plan_node_down(p, "n1", err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	take(&d, rdm_plan_node_down(d, "n2", err, sizeof(err)), "down n2");
	cr_assert_eq(rdm_state_set_plan(&st, d, why), 0);
	expect_state(&st, 5, "/c.yaml", down, moved);
	/* Without reasons, down is dead. */
	cr_assert_eq(rdm_state_set_plan(&st, d, NULL), 0);
	expect_state(&st, 5, "/c.yaml", down_dead, moved);
	/* And back: the lists are replaced, not appended to. */
	cr_assert_eq(rdm_state_set_plan(&st, p, why), 0);
	expect_state(&st, 5, "/c.yaml", NULL, reps);
	rdm_plan_free(d);
	rdm_plan_free(p);
	rdm_state_free(&st);
	world_free(&w);
}

/* The restart property: after any sequence of live changes, the state the orchestrator
 * saved, loaded by a restarted one and restored, is the placement that was running,
 * replica for replica. */
Test(state, restart_yields_the_live_placement)
{
	static const char *const ops[] = {
	    "scale dpi 3",  "dead n2",	   "scale log 2", "up n2",	 "drain n4", "scale dpi 2",
	    "scale edge 2", "up n4",	   "scale dpi 4", "scale dpi 3", "dead n1",  "scale log 1",
	    "drain n3",	    "up n1",	   "up n3",	  "scale dpi 4", "dead n2",  "scale edge 1",
	    "up n2",	    "scale log 3", NULL};
	enum rdm_down_why why[4] = {0};
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *live, *restored;
	const char *path = at("state.yaml");

	world_load_with(&w, RACK4_BIG, CHAIN3);
	live = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(live, "%s", err);
	make_state(&st, 0, w.spec.file, NULL, NULL);
	restored = save_and_restore(&w, &st, live, why, path);
	expect_same_plan(live, restored);
	rdm_plan_free(restored);
	for (int i = 0; ops[i]; i++) {
		change(&live, why, ops[i]);
		/* A restart at any point restores the plan running then. */
		restored = save_and_restore(&w, &st, live, why, path);
		expect_same_plan(live, restored);
		/* And the restored plan goes on as the live one would. */
		if (ops[i + 1]) {
			enum rdm_down_why why2[4];
			struct rdm_plan *a = rdm_plan_copy(live), *b = restored;

			cr_assert_not_null(a);
			memcpy(why2, why, sizeof(why2));
			change(&a, why2, ops[i + 1]);
			change(&b, why2, ops[i + 1]);
			expect_same_plan(a, b);
			rdm_plan_free(a);
			restored = b;
		}
		rdm_plan_free(restored);
	}
	/* Held at the end: edge-2, scaled away by "scale edge 1" and never said stopped (the
	 * other replicas scaled away came back to their holds, or their nodes went down). */
	cr_assert_eq(live->n_held, 1);
	cr_assert_str_eq(live->held[0].id, "edge-2");
	cr_assert_eq(st.epoch, 21);
	cr_assert_eq(live->stage_replicas[1], 4);
	cr_assert_eq(live->stage_replicas[2], 3);
	rdm_plan_free(live);
	rdm_state_free(&st);
	world_free(&w);
}

/* Losing nodes may leave siblings of a spread stage on one node (spread is only a
 * preference then); a restart keeps them so, as the live orchestrator did. */
Test(state, restart_keeps_siblings_sharing_a_node)
{
	enum rdm_down_why why[4] = {0};
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *live, *restored;

	world_load_with(&w, RACK4_BIG, CHAIN_HEAD EDGE DPI "    replicas: 3\n" LOG);
	live = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(live, "%s", err);
	change(&live, why, "dead n1");
	change(&live, why, "drain n2");
	/* Three dpi replicas on the two nodes left. */
	cr_assert_str_eq(node_of(live, "dpi-1"), node_of(live, "dpi-2"));
	make_state(&st, 1, w.spec.file, NULL, NULL);
	restored = save_and_restore(&w, &st, live, why, at("state.yaml"));
	expect_same_plan(live, restored);
	rdm_plan_free(restored);
	rdm_plan_free(live);
	rdm_state_free(&st);
	world_free(&w);
}

/* Loads state text (a state file) for rdm_state_plan. */
static void state_text(struct rdm_orch_state *st, const char *text)
{
	cr_assert_eq(rdm_state_load(put("state.yaml", text), st, err, sizeof(err)), 0, "%s", err);
}

/* The state text must not restore: errno e, and err is want after the state file's path
 * (want starts with ":LINE:COL: " or ": "). */
static void restore_fails(const struct world *w, const char *text, int e, const char *want)
{
	struct rdm_orch_state st;
	const char *path = at("state.yaml");

	state_text(&st, text);
	err[0] = '\0';
	errno = 0;
	cr_assert_null(rdm_state_plan(&st, &w->rack, &w->spec, err, sizeof(err)), "%s restored",
		       text);
	cr_assert_eq(errno, e, "errno %d (%s)", errno, err);
	cr_assert_eq(strncmp(err, path, strlen(path)), 0, "'%s' does not start with the path", err);
	cr_assert_str_eq(err + strlen(path), want);
	rdm_state_free(&st);
}

#define SHEAD "version: 1\nepoch: 3\nchain: /c.yaml\n"

Test(state, restore_errors_name_the_state_file_position)
{
	char want[512];
	struct world w;

	world_load(&w);
	snprintf(want, sizeof(want), ": down node 'n9' is not in %s", w.rack.file);
	restore_fails(&w, SHEAD "down: [{node: n1}, {node: n9, why: drained}]\n", ENOENT, want);
	snprintf(want, sizeof(want), ":6:5: replica 'fw-1': no stage 'fw' in %s", w.spec.file);
	restore_fails(&w,
		      SHEAD "replicas:\n  - {id: edge-1, node: n1, port: 7100}\n"
			    "  - {id: fw-1, node: n2, port: 7100}\n",
		      ENOENT, want);
	/* Ids are STAGE-N, N 1..16, written as the orchestrator writes it. */
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-0, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-0' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-17, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-17' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-x, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-x' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-1x, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-1x' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-01, node: n1, port: 7100}\n", EINVAL,
		      ":5:5: replica id 'dpi-01' is not STAGE-N");
	restore_fails(&w, SHEAD "replicas:\n  - {id: dpi-99999999999, node: n1, port: 7100}\n",
		      EINVAL, ":5:5: replica id 'dpi-99999999999' is not STAGE-N");
	world_free(&w);
}

Test(state, restore_places_what_cannot_stay_afresh)
{
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *p;

	world_load(&w);
	/* n9 left rack.yaml: dpi-1 is placed as rdm_plan_new would (not an error); the others
	 * stay where they ran, even where rdm_plan_new would not put them. A port outside the
	 * rack's range moves too. */
	state_text(&st, SHEAD "down: [{node: n4, why: drained}]\n"
			      "replicas:\n  - {id: edge-1, node: n3, port: 7150}\n"
			      "  - {id: dpi-1, node: n9, port: 7100}\n"
			      "  - {id: log-1, node: n2, port: 9000}\n");
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 3);
	expect_at(p, "edge-1", "n3", "10.77.0.3:7150");
	expect_at(p, "dpi-1", "n1", "10.77.0.1:7100");
	expect_at(p, "log-1", "n2", "10.77.0.2:7100");
	cr_assert(p->down[3]);
	cr_assert(!p->down[0] && !p->down[1] && !p->down[2]);
	rdm_plan_free(p);
	rdm_state_free(&st);

	/* A saved replica on a node saved as down is placed afresh too. */
	state_text(&st, SHEAD "down: [{node: n2}]\n"
			      "replicas:\n  - {id: edge-1, node: n1, port: 7100}\n"
			      "  - {id: dpi-1, node: n2, port: 7100}\n"
			      "  - {id: log-1, node: n3, port: 7100}\n");
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "edge-1", "n1", "10.77.0.1:7100");
	expect_at(p, "dpi-1", "n4", "10.77.0.4:7100");
	expect_at(p, "log-1", "n3", "10.77.0.3:7100");
	rdm_plan_free(p);
	rdm_state_free(&st);
	world_free(&w);
}

Test(state, restore_counts_replicas_per_stage)
{
	struct world w;
	struct rdm_orch_state st;
	struct rdm_plan *p;

	world_load_with(&w, RACK4, CHAIN_HEAD EDGE DPI "    replicas: 2\n" LOG);
	/* dpi was scaled to 3 live: the saved count wins over chain.yaml's 2. log has none
	 * saved (a state written by hand, or the stage's replicas all lost): chain.yaml's
	 * count, placed afresh. */
	state_text(&st, SHEAD "replicas:\n  - {id: edge-1, node: n1, port: 7100}\n"
			      "  - {id: dpi-3, node: n4, port: 7100}\n"
			      "  - {id: dpi-1, node: n2, port: 7100}\n"
			      "  - {id: dpi-2, node: n3, port: 7100}\n");
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 5);
	cr_assert_eq(p->stage_replicas[0], 1);
	cr_assert_eq(p->stage_replicas[1], 3);
	cr_assert_eq(p->stage_replicas[2], 1);
	expect_at(p, "dpi-1", "n2", "10.77.0.2:7100");
	expect_at(p, "dpi-2", "n3", "10.77.0.3:7100");
	expect_at(p, "dpi-3", "n4", "10.77.0.4:7100");
	expect_at(p, "log-1", "n1", "10.77.0.1:7101");
	cr_assert_eq(rdm_plan_replica(p, "dpi-3")->node_id, 203);
	rdm_plan_free(p);
	rdm_state_free(&st);

	/* Only dpi-2 saved: dpi has 2 (1 and 2), dpi-1 placed afresh. */
	state_text(&st, SHEAD "replicas:\n  - {id: dpi-2, node: n3, port: 7100}\n");
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 4);
	cr_assert_eq(p->stage_replicas[1], 2);
	expect_at(p, "dpi-2", "n3", "10.77.0.3:7100");
	cr_assert_str_neq(node_of(p, "dpi-1"), "n3");
	rdm_plan_free(p);
	rdm_state_free(&st);

	/* Nothing saved at all: rdm_plan_new's placement. */
	state_text(&st, SHEAD);
	p = rdm_state_plan(&st, &w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	{
		struct rdm_plan *fresh = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));

		cr_assert_not_null(fresh, "%s", err);
		expect_same_plan(fresh, p);
		rdm_plan_free(fresh);
	}
	rdm_plan_free(p);
	rdm_state_free(&st);
	world_free(&w);
}

/* ---- rdm_plan_rebase: keeping replicas where they run ---- */

#define FW "  - name: fw\n    run: [stamp]\n"

/* Loads chain.yaml text from DIR/name into s. */
static void spec_load(const char *name, const char *text, struct rdm_chain_spec *s)
{
	cr_assert_eq(rdm_chain_spec_load(put(name, text), s, err, sizeof(err)), 0, "%s", err);
}

/* keep[i] = replica id on rack node k at port (what rebase reads of a kept replica). */
static void keep_at(struct rdm_replica *keep, const char *id, int k, uint16_t port)
{
	memset(keep, 0, sizeof(*keep));
	snprintf(keep->id, sizeof(keep->id), "%s", id);
	keep->node = k;
	keep->port = port;
}

Test(state, rebase_keeps_replicas_when_the_chain_changes)
{
	struct world w;
	struct rdm_chain_spec added, removed, grown;
	struct rdm_plan *p, *q;
	int counts[3] = {2, 4, 1};

	world_load(&w);
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "edge-1", "n1", "10.77.0.1:7100");
	expect_at(p, "dpi-1", "n2", "10.77.0.2:7100");
	expect_at(p, "log-1", "n3", "10.77.0.3:7100");

	/* Nothing changed: the same plan. */
	q = rdm_plan_rebase(&w.rack, &w.spec, NULL, NULL, p->replicas, p->n_replicas, NULL, 0, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_same_plan(p, q);
	rdm_plan_free(q);

	/* A stage added before dpi: everything stays, dpi's node id follows its new position,
	 * and fw-1 goes where rdm_plan_new would put it given the rest (n4: 4 cores left). */
	spec_load("added.yaml", CHAIN_HEAD EDGE FW DPI LOG, &added);
	q = rdm_plan_rebase(&w.rack, &added, NULL, NULL, p->replicas, p->n_replicas, NULL, 0, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(q->n_replicas, 4);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "dpi-1");
	expect_kept(p, q, "log-1");
	expect_at(q, "fw-1", "n4", "10.77.0.4:7100");
	cr_assert_eq(rdm_plan_replica(q, "dpi-1")->node_id, 301);
	cr_assert_eq(rdm_plan_replica(q, "fw-1")->node_id, 201);
	cr_assert(q->spec == &added && q->rack == &w.rack);
	rdm_plan_free(q);

	/* dpi removed: its replica is gone, the others stay. */
	spec_load("removed.yaml", CHAIN_HEAD EDGE LOG, &removed);
	q = rdm_plan_rebase(&w.rack, &removed, NULL, NULL, p->replicas, p->n_replicas, NULL, 0, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(q->n_replicas, 2);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "log-1");
	cr_assert_null(rdm_plan_replica(q, "dpi-1"));
	rdm_plan_free(q);

	/* dpi grows to 3 in chain.yaml: dpi-1 stays, the new ones spread over the nodes
	 * without one (n4 has the most cores left, then n1 and n3 tie: rack order). */
	spec_load("grown.yaml", CHAIN_HEAD EDGE DPI "    replicas: 3\n" LOG, &grown);
	q = rdm_plan_rebase(&w.rack, &grown, NULL, NULL, p->replicas, p->n_replicas, NULL, 0, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(q->n_replicas, 5);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "dpi-1");
	expect_kept(p, q, "log-1");
	expect_at(q, "dpi-2", "n4", "10.77.0.4:7100");
	expect_at(q, "dpi-3", "n1", "10.77.0.1:7101");
	rdm_plan_free(q);

	/* counts override chain.yaml's: the kept stay, the new are placed around them. */
	q = rdm_plan_rebase(&w.rack, &w.spec, counts, NULL, p->replicas, p->n_replicas, NULL, 0,
			    err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_eq(q->n_replicas, 7);
	cr_assert_eq(q->stage_replicas[0], 2);
	cr_assert_eq(q->stage_replicas[1], 4);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "dpi-1");
	expect_kept(p, q, "log-1");
	for (int i = 2; i <= 4; i++) {
		char id[16];

		snprintf(id, sizeof(id), "dpi-%d", i);
		cr_assert_str_neq(node_of(q, id), "n2", "%s beside dpi-1", id);
	}
	cr_assert_str_neq(node_of(q, "edge-2"), "n1");
	rdm_plan_free(q);

	rdm_chain_spec_free(&grown);
	rdm_chain_spec_free(&removed);
	rdm_chain_spec_free(&added);
	rdm_plan_free(p);
	world_free(&w);
}

/* `ctl apply` with a chain that drops a replica: its node drains it for a while, on its
 * port, so the port is held (as after a scale down) until the node lets it go; a replica
 * placed meanwhile goes around it, and the dropped one brought back takes its place. */
Test(state, rebase_holds_the_port_of_a_replica_the_chain_drops)
{
	struct world w;
	struct rdm_chain_spec removed, fw;
	struct rdm_plan *p, *q, *r;
	unsigned char down[4] = {0, 1, 0, 0};

	world_load(&w);
	spec_load("removed.yaml", CHAIN_HEAD EDGE LOG, &removed);
	spec_load("fw.yaml", CHAIN_HEAD EDGE FW LOG, &fw);
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "dpi-1", "n2", "10.77.0.2:7100");

	q = rdm_plan_rebase(&w.rack, &removed, NULL, NULL, p->replicas, p->n_replicas, p->held,
			    p->n_held, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_null(rdm_plan_replica(q, "dpi-1"));
	cr_assert_eq(q->n_held, 1);
	cr_assert_str_eq(q->held[0].id, "dpi-1");
	cr_assert_eq(q->held[0].node, 1);
	cr_assert_eq(q->held[0].port, 7100);

	/* fw-1 goes to n2 (the most cores left, first in the rack), around the held port;
	 * without the hold it would take 7100 while dpi-1 still listens there. */
	r = rdm_plan_rebase(&w.rack, &fw, NULL, NULL, q->replicas, q->n_replicas, q->held,
			    q->n_held, err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	expect_at(r, "fw-1", "n2", "10.77.0.2:7101");
	cr_assert_eq(r->n_held, 1, "still draining: still held");
	rdm_plan_free(r);
	r = rdm_plan_rebase(&w.rack, &fw, NULL, NULL, q->replicas, q->n_replicas, NULL, 0, err,
			    sizeof(err));
	cr_assert_not_null(r, "%s", err);
	expect_at(r, "fw-1", "n2", "10.77.0.2:7100");
	rdm_plan_free(r);

	/* dpi back before its node stopped it: it takes its place again, nothing held. */
	r = rdm_plan_rebase(&w.rack, &w.spec, NULL, NULL, q->replicas, q->n_replicas, q->held,
			    q->n_held, err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	expect_at(r, "dpi-1", "n2", "10.77.0.2:7100");
	cr_assert_eq(r->n_held, 0);
	rdm_plan_free(r);

	/* Its node went down meanwhile: nothing left to hold. */
	r = rdm_plan_rebase(&w.rack, &removed, NULL, down, q->replicas, q->n_replicas, q->held,
			    q->n_held, err, sizeof(err));
	cr_assert_not_null(r, "%s", err);
	cr_assert_eq(r->n_held, 0);
	rdm_plan_free(r);

	rdm_plan_free(q);
	rdm_plan_free(p);
	rdm_chain_spec_free(&fw);
	rdm_chain_spec_free(&removed);
	world_free(&w);
}

Test(state, rebase_moves_what_cannot_stay)
{
	struct rdm_rack rack;
	struct rdm_chain_spec spec, zoned;
	struct rdm_plan *p, *q;
	unsigned char down[4] = {0, 1, 0, 0};
	struct rdm_replica keep[3];

	cr_assert_eq(
	    rdm_rack_load(put("rack.yaml",
			      "nodes:\n"
			      "  - {name: n1, control: 10.0.0.1, data: 10.0.0.1, capacity: "
			      "4, labels: {zone: a}}\n"
			      "  - {name: n2, control: 10.0.0.2, data: 10.0.0.2, capacity: "
			      "4, labels: {zone: a}}\n"
			      "  - {name: n3, control: 10.0.0.3, data: 10.0.0.3, capacity: "
			      "4, labels: {zone: b}}\n"
			      "  - {name: n4, control: 10.0.0.4, data: 10.0.0.4, capacity: "
			      "4, labels: {zone: b}}\n"),
			  &rack, err, sizeof(err)),
	    0, "%s", err);
	spec_load("chain.yaml", CHAIN3, &spec);
	p = rdm_plan_new(&rack, &spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "edge-1", "n1", "10.0.0.1:7100");
	expect_at(p, "dpi-1", "n2", "10.0.0.2:7100");
	expect_at(p, "log-1", "n3", "10.0.0.3:7100");

	/* dpi-1's node is down: dpi-1 moves (n4: the most cores left), the others stay;
	 * nothing is held on a node that is down. */
	q = rdm_plan_rebase(&rack, &spec, NULL, down, p->replicas, p->n_replicas, NULL, 0, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert(q->down[1]);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "log-1");
	expect_at(q, "dpi-1", "n4", "10.0.0.4:7100");
	cr_assert_eq(q->n_held, 0);
	rdm_plan_free(q);

	/* dpi now wants zone b: dpi-1 leaves n2 (zone a) for n4; edge and log stay. n2
	 * drains the old dpi-1 meanwhile: its port there is held. */
	spec_load("zoned.yaml", CHAIN_HEAD EDGE DPI "    placement: {labels: {zone: b}}\n" LOG,
		  &zoned);
	q = rdm_plan_rebase(&rack, &zoned, NULL, NULL, p->replicas, p->n_replicas, NULL, 0, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_kept(p, q, "edge-1");
	expect_kept(p, q, "log-1");
	expect_at(q, "dpi-1", "n4", "10.0.0.4:7100");
	cr_assert_eq(q->n_held, 1);
	cr_assert_str_eq(q->held[0].id, "dpi-1");
	cr_assert_eq(q->held[0].node, 1);
	cr_assert_eq(q->held[0].port, 7100);
	rdm_plan_free(q);

	/* Not enough cores on a node for every replica kept there, taken in plan order:
	 * edge-1 and dpi-1 use 3 of n1's 4 cores, so dpi-2 (2 more) moves and log-1 (1 more)
	 * stays. */
	{
		int counts[3] = {1, 2, 1};
		struct rdm_replica k4[4];

		keep_at(&k4[0], "edge-1", 0, 7100);
		keep_at(&k4[1], "dpi-1", 0, 7101);
		keep_at(&k4[2], "dpi-2", 0, 7102);
		keep_at(&k4[3], "log-1", 0, 7103);
		q = rdm_plan_rebase(&rack, &spec, counts, NULL, k4, 4, NULL, 0, err, sizeof(err));
		cr_assert_not_null(q, "%s", err);
		expect_at(q, "edge-1", "n1", "10.0.0.1:7100");
		expect_at(q, "dpi-1", "n1", "10.0.0.1:7101");
		expect_at(q, "log-1", "n1", "10.0.0.1:7103");
		cr_assert_str_neq(node_of(q, "dpi-2"), "n1");
		rdm_plan_free(q);
	}

	/* A node index outside the rack, a port outside its range: placed afresh. */
	keep_at(&keep[0], "edge-1", 7, 7100);
	keep_at(&keep[1], "dpi-1", 1, 7000);
	keep_at(&keep[2], "log-1", -1, 7100);
	q = rdm_plan_rebase(&rack, &spec, NULL, NULL, keep, 3, NULL, 0, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_same_plan(p, q);
	rdm_plan_free(q);

	rdm_chain_spec_free(&zoned);
	rdm_plan_free(p);
	rdm_chain_spec_free(&spec);
	rdm_rack_free(&rack);
}

Test(state, rebase_gives_a_port_to_one_kept_replica_only)
{
	struct rdm_rack rack;
	struct rdm_chain_spec spec;
	struct rdm_plan *q;
	struct rdm_replica keep[3];

	/* a and b share a loopback IP, so its ports. */
	cr_assert_eq(rdm_rack_load(put("rack.yaml",
				       "ports: 9000-9099\nnodes:\n"
				       "  - {name: a, control: 127.0.0.1, data: 127.0.0.1, "
				       "capacity: 8}\n"
				       "  - {name: b, control: 127.0.0.1, data: 127.0.0.1, "
				       "capacity: 8}\n"
				       "  - {name: c, control: \"::1\", data: \"::1\", capacity: "
				       "8}\n"),
				   &rack, err, sizeof(err)),
		     0, "%s", err);
	spec_load("chain.yaml",
		  CHAIN_HEAD "  - name: s\n    run: [stamp]\n    replicas: 3\n"
			     "    placement: {spread: false}\n",
		  &spec);
	/* s-1 on a:9000; s-2 claims 9000 on b, the same IP: it is placed afresh (on a, the
	 * most cores left and first, at the lowest free port); s-3 on c:9000 is another IP. */
	keep_at(&keep[0], "s-1", 0, 9000);
	keep_at(&keep[1], "s-2", 1, 9000);
	keep_at(&keep[2], "s-3", 2, 9000);
	q = rdm_plan_rebase(&rack, &spec, NULL, NULL, keep, 3, NULL, 0, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_at(q, "s-1", "a", "127.0.0.1:9000");
	expect_at(q, "s-3", "c", "[::1]:9000");
	cr_assert_neq(rdm_plan_replica(q, "s-2")->port, 9000);
	expect_at(q, "s-2", "b", "127.0.0.1:9001");
	rdm_plan_free(q);

	/* The same node and port twice: the second in plan order moves. */
	keep_at(&keep[0], "s-1", 1, 9005);
	keep_at(&keep[1], "s-2", 1, 9005);
	keep_at(&keep[2], "s-3", 1, 9000);
	q = rdm_plan_rebase(&rack, &spec, NULL, NULL, keep, 3, NULL, 0, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_at(q, "s-1", "b", "127.0.0.1:9005");
	expect_at(q, "s-3", "b", "127.0.0.1:9000");
	cr_assert_neq(rdm_plan_replica(q, "s-2")->port, 9005);
	cr_assert_neq(rdm_plan_replica(q, "s-2")->port, 9000);
	rdm_plan_free(q);
	rdm_chain_spec_free(&spec);
	rdm_rack_free(&rack);
}

Test(state, rebase_refuses_counts_out_of_range)
{
	struct world w;
	struct rdm_plan *p;
	int zero[3] = {1, 0, 1}, big[3] = {1, 1, RDM_PLAN_MAX_REPLICAS + 1};
	int max[3] = {1, 1, RDM_PLAN_MAX_REPLICAS};

	world_load_with(&w, RACK4_BIG, CHAIN_HEAD EDGE DPI LOG "    placement: {spread: false}\n");
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	errno = 0;
	cr_assert_null(rdm_plan_rebase(&w.rack, &w.spec, zero, NULL, p->replicas, p->n_replicas,
				       NULL, 0, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "stage 'dpi': 0 replicas is out of range (1..16)");
	errno = 0;
	cr_assert_null(rdm_plan_rebase(&w.rack, &w.spec, big, NULL, p->replicas, p->n_replicas,
				       NULL, 0, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "stage 'log': 17 replicas is out of range (1..16)");
	/* 16 is in range (log does not spread; 16 fit in the rack's cores). */
	{
		struct rdm_plan *q = rdm_plan_rebase(&w.rack, &w.spec, max, NULL, p->replicas,
						     p->n_replicas, NULL, 0, err, sizeof(err));

		cr_assert_not_null(q, "%s", err);
		cr_assert_eq(q->n_replicas, 18);
		expect_kept(p, q, "log-1");
		rdm_plan_free(q);
	}
	/* An impossible placement is reported at chain.yaml's position, as rdm_plan_new. */
	max[1] = 5;
	errno = 0;
	cr_assert_null(rdm_plan_rebase(&w.rack, &w.spec, max, NULL, p->replicas, p->n_replicas,
				       NULL, 0, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(strncmp(err, w.spec.file, strlen(w.spec.file)), 0, "%s", err);
	cr_assert_not_null(strstr(err, "stage 'dpi': impossible placement: 5 replicas spread"),
			   "%s", err);
	rdm_plan_free(p);
	world_free(&w);
}

Test(state, plan_copy_is_the_same_plan)
{
	struct world w;
	struct rdm_plan *p, *c;

	world_load_with(&w, RACK4_BIG, CHAIN3);
	p = rdm_plan_new(&w.rack, &w.spec, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	take(&p, rdm_plan_scale(p, "dpi", 3, err, sizeof(err)), "scale");
	take(&p, rdm_plan_node_down(p, "n1", err, sizeof(err)), "down n1");
	take(&p, rdm_plan_node_down(p, "n3", err, sizeof(err)), "down n3");
	c = rdm_plan_copy(p);
	cr_assert_not_null(c);
	cr_assert(c->rack == p->rack && c->spec == p->spec);
	cr_assert_neq(c->replicas, p->replicas);
	expect_same_plan(p, c);
	cr_assert(c->down[0] && c->down[2]);
	rdm_plan_free(p);
	/* It owns its arrays: still whole once p is gone. */
	cr_assert_eq(c->n_replicas, 5);
	cr_assert_str_eq(c->replicas[4].id, "log-1");
	rdm_plan_free(c);
	world_free(&w);
}
