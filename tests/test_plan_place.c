/* Placing a chain's replicas on a rack and re-planning (orchestrator/plan_place.c):
 * a known layout, determinism, capacity and labels, impossible placements, scaling and
 * losing nodes while moving as little as possible. Files are written to a fresh
 * temporary directory per test. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/plan.h"
#include "orchestrator/rack.h"
#include "tests/lib/plan_fixture.h"

/* The node a replica landed on, by name. */
static const char *where(const struct rdm_plan *p, const char *id)
{
	const struct rdm_replica *r = rdm_plan_replica(p, id);

	cr_assert_not_null(r, "no replica %s", id);
	return p->rack->nodes[r->node].name;
}

/* Every replica of a appears in b on the same node and port. */
static void expect_same(const struct rdm_plan *a, const struct rdm_plan *b, const char *id)
{
	const struct rdm_replica *x = rdm_plan_replica(a, id), *y = rdm_plan_replica(b, id);

	cr_assert(x && y, "%s missing", id);
	cr_assert_eq(x->node, y->node, "%s moved", id);
	cr_assert_eq(x->port, y->port, "%s changed port", id);
	cr_assert_eq(x->node_id, y->node_id, "%s changed node id", id);
}

#define CHAIN3(dpi_extra) CHAIN3_DPI("    workers: 2\n" dpi_extra)

TestSuite(plan, .init = mkdir_tmp, .fini = rm_tmp);

/* ---- placement ---- */

Test(plan, known_layout_on_four_nodes)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p;

	load_rack(RACK4, &r);
	load_chain(CHAIN3("    replicas: 3\n"), &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 5);
	/* edge-1: all equal, the first node; dpi-1..3: spread, most cores left first; log-1:
	 * n1 has 3 cores left, the others 2. */
	expect_at(p, "edge-1", "n1", "10.77.0.1:7100");
	expect_at(p, "dpi-1", "n2", "10.77.0.2:7100");
	expect_at(p, "dpi-2", "n3", "10.77.0.3:7100");
	expect_at(p, "dpi-3", "n4", "10.77.0.4:7100");
	expect_at(p, "log-1", "n1", "10.77.0.1:7101");
	cr_assert_eq(rdm_plan_replica(p, "edge-1")->node_id, 101);
	cr_assert_eq(rdm_plan_replica(p, "dpi-3")->node_id, 203);
	cr_assert_eq(rdm_plan_replica(p, "log-1")->node_id, 301);
	cr_assert_str_eq(p->replicas[0].id, "edge-1");
	cr_assert_str_eq(p->replicas[3].id, "dpi-3");
	cr_assert_eq(p->stage_replicas[1], 3);

	const struct rdm_replica *on[4];
	cr_assert_eq(rdm_plan_node_replicas(p, "n1", on, 4), 2);
	cr_assert_str_eq(on[0]->id, "edge-1");
	cr_assert_str_eq(on[1]->id, "log-1");
	cr_assert_eq(rdm_plan_node_replicas(p, "n1", on, 1), 2);
	cr_assert_eq(rdm_plan_node_replicas(p, "n3", on, 4), 1);
	cr_assert_str_eq(on[0]->id, "dpi-2");
	cr_assert_eq(rdm_plan_node_replicas(p, "n9", on, 4), -ENOENT);
	cr_assert_null(rdm_plan_replica(p, "dpi-4"));
	rdm_plan_free(p);
	rdm_plan_free(NULL);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, deterministic)
{
	struct rdm_rack r1, r2;
	struct rdm_chain_spec s1, s2;
	const char *chain = CHAIN3("    replicas: 3\n");

	load_rack(RACK4, &r1);
	load_rack(RACK4, &r2);
	load_chain(chain, &s1);
	load_chain(chain, &s2);
	struct rdm_plan *a = rdm_plan_new(&r1, &s1, err, sizeof(err));
	struct rdm_plan *b = rdm_plan_new(&r2, &s2, err, sizeof(err));
	cr_assert(a && b, "%s", err);
	cr_assert_eq(a->n_replicas, b->n_replicas);
	cr_assert_eq(memcmp(a->replicas, b->replicas, sizeof(*a->replicas) * (size_t)a->n_replicas),
		     0);
	char *ta = rdm_plan_render(a, err, sizeof(err)), *tb = rdm_plan_render(b, err, sizeof(err));
	cr_assert(ta && tb, "%s", err);
	cr_assert_str_eq(ta, tb);
	free(ta);
	free(tb);
	rdm_plan_free(a);
	rdm_plan_free(b);
	rdm_chain_spec_free(&s1);
	rdm_chain_spec_free(&s2);
	rdm_rack_free(&r1);
	rdm_rack_free(&r2);
}

Test(plan, honours_capacity_and_labels)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p;
	int used[4] = {0};

	load_rack(
	    "nodes:\n"
	    "  - {name: big, control: 10.0.0.1, data: 10.0.0.1, capacity: 8, labels: {zone: a}}\n"
	    "  - {name: small, control: 10.0.0.2, data: 10.0.0.2, capacity: 2, labels: {zone: a}}\n"
	    "  - {name: b1, control: 10.0.0.3, data: 10.0.0.3, capacity: 6, labels: {zone: b, gpu: "
	    "x}}\n"
	    "  - {name: b2, control: 10.0.0.4, data: 10.0.0.4, capacity: 6, labels: {zone: b}}\n",
	    &r);
	load_chain(HEAD "  - name: in\n    run: [stamp]\n    workers: 2\n    replicas: 2\n"
			"    placement: {labels: {zone: a}}\n"
			"  - name: mid\n    run: [stamp]\n    workers: 3\n    replicas: 4\n"
			"    placement: {spread: false, labels: {zone: b}}\n"
			"  - name: out\n    run: [stamp]\n    workers: 3\n"
			"    placement: {labels: {gpu: x}}\n",
		   &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_null(p, "placed what does not fit");
	/* mid takes all of b1 and b2 (4 x 3 = 12 cores), so out (gpu) has no room. */
	cr_assert(strstr(err, ":13:5: stage 'out': impossible placement: no node without a "
			      "replica of it yet for out-1 with 3 worker cores (cores left: b1 0 "
			      "free)"),
		  "%s", err);
	cr_assert_eq(errno, EINVAL);
	rdm_chain_spec_free(&s);

	load_chain(HEAD "  - name: in\n    run: [stamp]\n    workers: 2\n    replicas: 2\n"
			"    placement: {labels: {zone: a}}\n"
			"  - name: mid\n    run: [stamp]\n    workers: 2\n    replicas: 3\n"
			"    placement: {spread: false, labels: {zone: b}}\n"
			"  - name: out\n    run: [stamp]\n    workers: 2\n"
			"    placement: {labels: {gpu: x}}\n",
		   &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	for (int i = 0; i < p->n_replicas; i++) {
		const struct rdm_replica *rp = &p->replicas[i];
		const struct rdm_spec_stage *st = &s.stages[rp->stage];

		used[rp->node] += st->workers;
		for (int l = 0; l < st->n_labels; l++)
			cr_assert_str_eq(rdm_rack_label(&r.nodes[rp->node], st->labels[l].key),
					 st->labels[l].value, "%s", rp->id);
	}
	for (int k = 0; k < 4; k++)
		cr_assert_leq(used[k], r.nodes[k].capacity, "%s over capacity", r.nodes[k].name);
	/* in-2 goes to small, the only other zone a node, though big has more room. */
	cr_assert_str_eq(where(p, "in-1"), "big");
	cr_assert_str_eq(where(p, "in-2"), "small");
	/* Without spread, the most cores left wins each time, then the fewest replicas, then
	 * rack order: b1, b2, then b1 again. */
	cr_assert_str_eq(where(p, "mid-1"), "b1");
	cr_assert_str_eq(where(p, "mid-2"), "b2");
	cr_assert_str_eq(where(p, "mid-3"), "b1");
	cr_assert_str_eq(rdm_plan_replica(p, "mid-3")->listen, "10.0.0.3:7101");
	/* out needs gpu: b1, with exactly its 2 cores left. */
	cr_assert_str_eq(where(p, "out-1"), "b1");
	cr_assert_eq(used[2], 6);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

/* What plan_new refuses, at the chain.yaml node that asked for it. */
static void plan_fails(const char *rack, const char *chain, const char *want)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	char full[1200];

	load_rack(rack, &r);
	load_chain(chain, &s);
	err[0] = '\0';
	errno = 0;
	cr_assert_null(rdm_plan_new(&r, &s, err, sizeof(err)), "placed, expected '%s'", want);
	cr_assert_eq(errno, EINVAL);
	snprintf(full, sizeof(full), want, r.file);
	cr_assert_str_eq(err + strlen(s.file), full);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, impossible_placement_refused)
{
	/* A label no node has, at the label. */
	plan_fails(RACK4,
		   HEAD "  - name: a\n    run: [stamp]\n    placement: {labels: {zone: c}}\n",
		   ":5:26: stage 'a': impossible placement: no node in %s has label 'zone: c'");
	/* Labels each somewhere, but never together. */
	plan_fails(
	    "nodes:\n"
	    "  - {name: n1, control: 10.0.0.1, data: 10.0.0.1, capacity: 4, labels: {zone: a}}\n"
	    "  - {name: n2, control: 10.0.0.2, data: 10.0.0.2, capacity: 4, labels: {disk: ssd}}\n",
	    HEAD "  - name: a\n    run: [stamp]\n"
		 "    placement: {labels: {zone: a, disk: ssd}}\n",
	    ":5:25: stage 'a': impossible placement: no node that is up carries all of "
	    "its labels");
	/* Spread: more replicas than nodes. */
	plan_fails(RACK4, HEAD "  - name: a\n    run: [stamp]\n    replicas: 5\n",
		   ":5:15: stage 'a': impossible placement: 5 replicas spread over distinct nodes, "
		   "but only 4 nodes can take it (n1, n2, n3, n4)");
	/* Not enough cores: spread leaves b-4 only n1, which has 2 left after a. */
	plan_fails(RACK4,
		   HEAD "  - name: a\n    run: [stamp]\n    workers: 2\n"
			"  - name: b\n    run: [stamp]\n    replicas: 4\n    workers: 3\n",
		   ":8:15: stage 'b': impossible placement: no node without a replica of it yet "
		   "for b-4 with 3 worker cores (cores left: n1 2 free, n2 1 free, n3 1 free, n4 "
		   "1 free)");
	/* workers beyond any node. */
	plan_fails(RACK4, HEAD "  - name: a\n    run: [stamp]\n    workers: 5\n",
		   ":3:5: stage 'a': impossible placement: no node without a replica of it yet "
		   "for a-1 with 5 worker cores (cores left: n1 4 free, n2 4 free, n3 4 free, n4 4 "
		   "free)");
	/* Ports run out before cores. */
	plan_fails(
	    "ports: 7100-7101\nnodes:\n"
	    "  - {name: n1, control: 10.0.0.1, data: 10.0.0.1, capacity: 8}\n",
	    HEAD "  - name: a\n    run: [stamp]\n    replicas: 3\n    placement: {spread: false}\n",
	    ":5:15: stage 'a': impossible placement: no node for a-3 with 1 worker core "
	    "(cores left: n1 6 free, no free port)");
}

Test(plan, spread_false_shares_nodes_and_ports_follow_the_ip)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p;

	/* Two nodes on one loopback IP share its port range. */
	load_rack("ports: 9000-9099\nnodes:\n"
		  "  - {name: a, control: 127.0.0.1, data: 127.0.0.1, capacity: 8}\n"
		  "  - {name: b, control: 127.0.0.1, data: 127.0.0.1, capacity: 2}\n"
		  "  - {name: c, control: \"::1\", data: \"::1\", capacity: 1}\n",
		  &r);
	load_chain(HEAD "  - name: s\n    run: [stamp]\n    replicas: 4\n"
			"    placement: {spread: false}\n",
		   &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "s-1", "a", "127.0.0.1:9000");
	expect_at(p, "s-2", "a", "127.0.0.1:9001"); /* a has 7 left, b 2 */
	expect_at(p, "s-3", "a", "127.0.0.1:9002");
	expect_at(p, "s-4", "a", "127.0.0.1:9003");
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);

	load_chain(HEAD "  - name: s\n    run: [stamp]\n    replicas: 3\n", &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "s-1", "a", "127.0.0.1:9000");
	expect_at(p, "s-2", "b", "127.0.0.1:9001");
	expect_at(p, "s-3", "c", "[::1]:9000");
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, scale_keeps_existing_replicas)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p1, *p3, *p4, *back;

	load_rack(RACK4, &r);
	load_chain(CHAIN3(""), &s);
	p1 = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p1, "%s", err);
	expect_at(p1, "edge-1", "n1", "10.77.0.1:7100");
	expect_at(p1, "dpi-1", "n2", "10.77.0.2:7100");
	expect_at(p1, "log-1", "n3", "10.77.0.3:7100");

	p3 = rdm_plan_scale(p1, "dpi", 3, err, sizeof(err));
	cr_assert_not_null(p3, "%s", err);
	cr_assert_eq(p3->n_replicas, 5);
	cr_assert_eq(p3->stage_replicas[1], 3);
	expect_same(p1, p3, "edge-1");
	expect_same(p1, p3, "dpi-1");
	expect_same(p1, p3, "log-1");
	/* n4 has 4 cores left; then n1 and n3 have 3 each and one replica each: rack order. */
	expect_at(p3, "dpi-2", "n4", "10.77.0.4:7100");
	expect_at(p3, "dpi-3", "n1", "10.77.0.1:7101");
	cr_assert_eq(rdm_plan_replica(p3, "dpi-3")->node_id, 203);
	/* p1 is untouched. */
	cr_assert_eq(p1->n_replicas, 3);
	cr_assert_null(rdm_plan_replica(p1, "dpi-2"));

	/* Back to one: only the highest-numbered go. */
	back = rdm_plan_scale(p3, "dpi", 1, err, sizeof(err));
	cr_assert_not_null(back, "%s", err);
	cr_assert_eq(back->n_replicas, 3);
	cr_assert_null(rdm_plan_replica(back, "dpi-2"));
	cr_assert_null(rdm_plan_replica(back, "dpi-3"));
	expect_same(p3, back, "edge-1");
	expect_same(p3, back, "dpi-1");
	expect_same(p3, back, "log-1");

	/* 3 -> 2 keeps dpi-1 and dpi-2. */
	p4 = rdm_plan_scale(p3, "dpi", 2, err, sizeof(err));
	cr_assert_not_null(p4, "%s", err);
	expect_same(p3, p4, "dpi-1");
	expect_same(p3, p4, "dpi-2");
	cr_assert_null(rdm_plan_replica(p4, "dpi-3"));
	rdm_plan_free(p4);

	/* Out of range, unknown stage, impossible: NULL, and the old plan stands. */
	cr_assert_null(rdm_plan_scale(p3, "dpi", 0, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "scale: stage 'dpi': 0 replicas is out of range (1..16)");
	cr_assert_null(rdm_plan_scale(p3, "dip", 2, err, sizeof(err)));
	cr_assert_eq(errno, ENOENT);
	cr_assert_null(rdm_plan_scale(p3, "dpi", 5, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "stage 'dpi': impossible placement: 5 replicas spread over "
			      "distinct nodes, but only 4 nodes can take it (n1, n2, n3, n4)");
	cr_assert_eq(p3->n_replicas, 5);
	rdm_plan_free(back);
	rdm_plan_free(p3);
	rdm_plan_free(p1);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

/* A replica scaled away keeps running on its node while it drains, and keeps its port:
 * nothing else is placed on that port until the node says the replica is gone. */
Test(plan, a_replica_scaled_away_holds_its_port_until_its_node_lets_it_go)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p, *two, *d, *again, *freed;

	load_rack(RACK4, &r);
	load_chain(CHAIN3("    replicas: 3\n"), &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "dpi-3", "n4", "10.77.0.4:7100");
	two = rdm_plan_scale(p, "dpi", 2, err, sizeof(err));
	cr_assert_not_null(two, "%s", err);
	cr_assert_null(rdm_plan_replica(two, "dpi-3"));
	cr_assert_eq(two->n_held, 1);
	cr_assert_str_eq(two->held[0].id, "dpi-3");

	/* n2 dies while dpi-3 drains on n4: dpi-1 moves to n4 (no dpi replica there, the
	 * most cores left), but not onto dpi-3's port. */
	d = rdm_plan_node_down(two, "n2", err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	expect_at(d, "dpi-1", "n4", "10.77.0.4:7101");
	cr_assert_eq(d->n_held, 1, "a copy keeps the hold");

	/* Scaled back before it stopped: dpi-3 takes its place again (its node keeps it). */
	again = rdm_plan_scale(two, "dpi", 3, err, sizeof(err));
	cr_assert_not_null(again, "%s", err);
	expect_at(again, "dpi-3", "n4", "10.77.0.4:7100");
	cr_assert_eq(again->n_held, 0);

	/* Its node still lists it (running or draining): held. Not listed: the port is free. */
	cr_assert_eq(rdm_plan_release(two, "n4", "dpi-2 dpi-3"), 0);
	cr_assert_eq(rdm_plan_release(two, "n3", ""), 0, "only n4's holds are n4's");
	cr_assert_eq(rdm_plan_release(two, "n4", "dpi-2"), 1);
	cr_assert_eq(two->n_held, 0);
	freed = rdm_plan_node_down(two, "n2", err, sizeof(err));
	cr_assert_not_null(freed, "%s", err);
	expect_at(freed, "dpi-1", "n4", "10.77.0.4:7100");

	/* A dead node's holds go with it: its replicas are not running anywhere. */
	rdm_plan_free(freed);
	freed = rdm_plan_scale(p, "dpi", 2, err, sizeof(err));
	cr_assert_not_null(freed, "%s", err);
	rdm_plan_free(d);
	d = rdm_plan_node_down(freed, "n4", err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	cr_assert_eq(d->n_held, 0);

	rdm_plan_free(d);
	rdm_plan_free(freed);
	rdm_plan_free(again);
	rdm_plan_free(two);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, node_death_moves_only_its_replicas)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p, *d, *d2, *up, *more;

	load_rack(RACK4, &r);
	load_chain(CHAIN3("    replicas: 3\n"), &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);

	d = rdm_plan_node_down(p, "n3", err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	cr_assert(d->down[2]);
	cr_assert_eq(d->n_replicas, 5);
	expect_same(p, d, "edge-1");
	expect_same(p, d, "dpi-1");
	expect_same(p, d, "dpi-3");
	expect_same(p, d, "log-1");
	/* dpi-2 keeps its name and id; n1 is the only node without a dpi replica. */
	expect_at(d, "dpi-2", "n1", "10.77.0.1:7102");
	cr_assert_eq(rdm_plan_replica(d, "dpi-2")->node_id, 202);
	cr_assert_eq(rdm_plan_node_replicas(d, "n3", NULL, 0), 0);

	/* A later scale avoids the dead node: 4 replicas spread need 4 live nodes. */
	cr_assert_null(rdm_plan_scale(d, "dpi", 4, err, sizeof(err)));
	cr_assert_str_eq(err, "stage 'dpi': impossible placement: 4 replicas spread over "
			      "distinct nodes, but only 3 nodes can take it (n1, n2, n4)");

	/* Marking it again changes nothing; an unknown node is refused. */
	d2 = rdm_plan_node_down(d, "n3", err, sizeof(err));
	cr_assert_not_null(d2, "%s", err);
	for (int i = 0; i < d->n_replicas; i++)
		expect_same(d, d2, d->replicas[i].id);
	rdm_plan_free(d2);
	cr_assert_null(rdm_plan_node_down(d, "n9", err, sizeof(err)));
	cr_assert_eq(errno, ENOENT);

	/* Back up: nothing moves onto it until a placement picks it. */
	up = rdm_plan_node_up(d, "n3", err, sizeof(err));
	cr_assert_not_null(up, "%s", err);
	for (int i = 0; i < d->n_replicas; i++)
		expect_same(d, up, d->replicas[i].id);
	more = rdm_plan_scale(up, "dpi", 4, err, sizeof(err));
	cr_assert_not_null(more, "%s", err);
	expect_at(more, "dpi-4", "n3", "10.77.0.3:7100");
	rdm_plan_free(more);
	rdm_plan_free(up);
	rdm_plan_free(d);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(plan, node_death_prefers_spread_but_keeps_replicas)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p, *d, *d2;

	load_rack("nodes:\n"
		  "  - {name: n1, control: 10.0.0.1, data: 10.0.0.1, capacity: 4}\n"
		  "  - {name: n2, control: 10.0.0.2, data: 10.0.0.2, capacity: 8}\n"
		  "  - {name: n3, control: 10.0.0.3, data: 10.0.0.3, capacity: 4}\n",
		  &r);
	load_chain(HEAD "  - name: a\n    run: [stamp]\n    replicas: 3\n    workers: 2\n", &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "a-1", "n2", "10.0.0.2:7100");
	expect_at(p, "a-2", "n1", "10.0.0.1:7100");
	expect_at(p, "a-3", "n3", "10.0.0.3:7100");
	/* No node is free of stage a: a-2 goes beside a sibling, on the most cores left. */
	d = rdm_plan_node_down(p, "n1", err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	expect_at(d, "a-2", "n2", "10.0.0.2:7101");
	expect_same(p, d, "a-1");
	expect_same(p, d, "a-3");
	/* With n2 gone too, n3 (2 cores left) takes a-1 and has no room for a-2. */
	d2 = rdm_plan_node_down(d, "n2", err, sizeof(err));
	cr_assert_null(d2);
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(err, "stage 'a': impossible placement: no node for a-2 with 2 worker "
			      "cores (cores left: n3 0 free)");
	rdm_plan_free(d);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}
