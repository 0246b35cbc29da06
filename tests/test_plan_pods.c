/* Pods in the plan (orchestrator/plan_place.c, rack.c, state.c): a pod is one replica of
 * the stage it is bound to, numbered from RDM_PLAN_POD_FIRST, beside the hosts'
 * replicas; it stays through every re-plan of the others, leaves alone, never receives a
 * host's replica, and is not restored from the saved state (it comes back by itself). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orchestrator/plan.h"
#include "orchestrator/rack.h"
#include "orchestrator/state.h"
#include "tests/lib/plan_fixture.h"

TestSuite(pods, .init = mkdir_tmp, .fini = rm_tmp);

/* Adds pod name at data as a replica of dpi; returns the new plan (p is freed). */
static struct rdm_plan *join(struct rdm_plan *p, struct rdm_rack *r, const char *name,
			     const char *data, int want)
{
	int k = rdm_rack_add_pod(r, name, "dpi", data, NULL, err, sizeof(err));
	struct rdm_plan *np;

	cr_assert_geq(k, r->n_hosts, "%s", err);
	np = rdm_plan_add_pod(p, k, want, err, sizeof(err));
	cr_assert_not_null(np, "%s", err);
	rdm_plan_free(p);
	return np;
}

Test(pods, a_pod_is_one_replica_numbered_apart_and_rendered_with_its_name)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p;
	char *text;

	load_rack(RACK4, &r);
	load_chain(CHAIN3_DPI("    pods: {deployment: rdmesh-dpi, namespace: mesh}\n"), &s);
	cr_assert(s.stages[1].pods);
	cr_assert_str_eq(s.stages[1].pod_deployment, "rdmesh-dpi");
	cr_assert_str_eq(s.stages[1].pod_namespace, "mesh");
	cr_assert_eq(s.stages[1].replicas, 0, "pod-backed: no host replica unless asked");
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 2);
	p = join(p, &r, "dpi-7c9f-a", "10.88.0.7", 0);
	p = join(p, &r, "dpi-7c9f-b", "10.88.0.8", 0);
	cr_assert_eq(p->n_replicas, 4);
	cr_assert_eq(p->n_pods, 2);
	expect_at(p, "dpi-51", "dpi-7c9f-a", "10.88.0.7:7100");
	expect_at(p, "dpi-52", "dpi-7c9f-b", "10.88.0.8:7100");
	cr_assert_eq(rdm_plan_replica(p, "dpi-52")->node_id, 252);
	text = rdm_plan_render(p, err, sizeof(err));
	cr_assert_not_null(text, "%s", err);
	cr_assert(strstr(text, "next: [dpi-51, dpi-52]"), "%s", text);
	cr_assert(strstr(text, "identity: dpi-7c9f-b"), "%s", text);
	free(text);
	/* a second replica on the same pod, or a pod of a stage without pods:, is refused */
	cr_assert_null(rdm_plan_add_pod(p, r.n_hosts, 0, err, sizeof(err)));
	cr_assert_eq(errno, EEXIST);
	{
		int k = rdm_rack_add_pod(&r, "log-pod", "log", "10.88.0.9", NULL, err, sizeof(err));

		cr_assert_geq(k, 0, "%s", err);
		cr_assert_null(rdm_plan_add_pod(p, k, 0, err, sizeof(err)));
		cr_assert(strstr(err, "takes no pods"), "%s", err);
	}
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(pods, pods_stay_through_every_replan_of_the_hosts)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p, *q;

	load_rack(RACK4, &r);
	load_chain(CHAIN3_DPI("    replicas: 1\n    pods:\n"), &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	p = join(p, &r, "pa", "10.88.0.7", 0);
	/* scale another stage, lose a host, copy: the pod keeps its replica where it is */
	q = rdm_plan_scale(p, "log", 2, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_at(q, "dpi-51", "pa", "10.88.0.7:7100");
	rdm_plan_free(p);
	p = rdm_plan_node_down(q, "n1", err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	expect_at(p, "dpi-51", "pa", "10.88.0.7:7100");
	for (int i = 0; i < p->n_replicas; i++)
		if (strcmp(p->replicas[i].id, "dpi-51"))
			cr_assert_lt(p->replicas[i].node, r.n_hosts, "%s went to a pod",
				     p->replicas[i].id);
	rdm_plan_free(q);
	/* apply (rebase on the running plan): the pod stays */
	q = rdm_plan_rebase(&r, &s, NULL, p->down, p->replicas, p->n_replicas, NULL, 0, err,
			    sizeof(err));
	cr_assert_not_null(q, "%s", err);
	expect_at(q, "dpi-51", "pa", "10.88.0.7:7100");
	cr_assert_eq(q->n_pods, 1);
	rdm_plan_free(q);
	/* it leaves: only its replica goes */
	q = rdm_plan_remove_pod(p, r.n_hosts, err, sizeof(err));
	cr_assert_not_null(q, "%s", err);
	cr_assert_null(rdm_plan_replica(q, "dpi-51"));
	cr_assert_eq(q->n_replicas, p->n_replicas - 1);
	cr_assert_eq(q->n_pods, 0);
	expect_at(q, "dpi-1",
		  rdm_plan_replica(p, "dpi-1")
		      ? p->rack->nodes[rdm_plan_replica(p, "dpi-1")->node].name
		      : "",
		  rdm_plan_replica(p, "dpi-1")->listen);
	rdm_plan_free(q);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(pods, a_returning_pod_gets_its_number_back_and_numbers_are_reused)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p, *q;

	load_rack(RACK4, &r);
	load_chain(CHAIN3_DPI("    pods:\n"), &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	p = join(p, &r, "pa", "10.88.0.7", 57); /* it ran dpi-57 before we restarted */
	expect_at(p, "dpi-57", "pa", "10.88.0.7:7100");
	p = join(p, &r, "pb", "10.88.0.8", 57); /* taken: the lowest free */
	expect_at(p, "dpi-51", "pb", "10.88.0.8:7100");
	q = rdm_plan_remove_pod(p, rdm_rack_find(&r, "pa"), err, sizeof(err));
	rdm_rack_remove_pod(&r, rdm_rack_find(&r, "pa"));
	cr_assert_eq(rdm_rack_find(&r, "pa"), -1, "a gone pod's name is free");
	rdm_plan_free(p);
	p = join(q, &r, "pc", "10.88.0.9", 0);
	expect_at(p, "dpi-52", "pc", "10.88.0.9:7100");
	cr_assert_eq(r.n_nodes, r.n_hosts + 2, "pc took pa's slot");
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}

Test(pods, the_rack_refuses_bad_pods)
{
	struct rdm_rack r;

	load_rack(RACK4, &r);
	cr_assert_eq(rdm_rack_add_pod(&r, "n1", "dpi", "10.88.0.7", NULL, err, sizeof(err)),
		     -EEXIST);
	cr_assert(strstr(err, "already a host"), "%s", err);
	cr_assert_eq(rdm_rack_add_pod(&r, "bad/name", "dpi", "10.88.0.7", NULL, err, sizeof(err)),
		     -EINVAL);
	cr_assert_eq(rdm_rack_add_pod(&r, "p1", "dpi", "not-an-ip", NULL, err, sizeof(err)),
		     -EINVAL);
	cr_assert_geq(rdm_rack_add_pod(&r, "p1", "dpi", "fd00::7", NULL, err, sizeof(err)), 4);
	cr_assert_eq(rdm_rack_add_pod(&r, "p1", "dpi", "10.88.0.7", NULL, err, sizeof(err)),
		     -EEXIST);
	cr_assert(strstr(err, "already a pod"), "%s", err);
	for (int i = 2; i <= RDM_RACK_PODS_MAX; i++) {
		char name[32];

		snprintf(name, sizeof(name), "p%d", i);
		cr_assert_geq(
		    rdm_rack_add_pod(&r, name, "dpi", "10.88.0.7", NULL, err, sizeof(err)), 0, "%s",
		    err);
	}
	cr_assert_eq(rdm_rack_add_pod(&r, "one-more", "dpi", "10.88.0.7", NULL, err, sizeof(err)),
		     -ENOSPC);
	rdm_rack_free(&r);
}

Test(pods, a_rack_of_pods_only_and_a_stage_of_pods_only)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p;

	load_rack("nodes: []\n", &r);
	cr_assert_eq(r.n_hosts, 0);
	load_chain("chain: {name: t}\n"
		   "stages:\n"
		   "  - {name: edge, run: [stamp], pods: , ingress: {mode: gen, count: 10}}\n"
		   "  - {name: log, run: [stamp], pods: , egress: }\n",
		   &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	cr_assert_eq(p->n_replicas, 0);
	rdm_plan_free(p);
	rdm_chain_spec_free(&s);
	/* no host replica is for a pod-backed stage only */
	cr_assert_lt(rdm_chain_spec_load(put("chain.yaml", CHAIN3_DPI("    replicas: 0\n")), &s,
					 err, sizeof(err)),
		     0);
	cr_assert(strstr(err, "replicas: 0 is out of range (1..16)"), "%s", err);
	rdm_rack_free(&r);
}

Test(pods, the_state_keeps_spent_tokens_and_does_not_restore_pods)
{
	struct rdm_rack r;
	struct rdm_chain_spec s;
	struct rdm_plan *p, *back;
	struct rdm_orch_state st = {.epoch = 3}, in;
	char path[128];

	load_rack(RACK4, &r);
	load_chain(CHAIN3_DPI("    replicas: 1\n    pods:\n"), &s);
	p = rdm_plan_new(&r, &s, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	p = join(p, &r, "pa", "10.88.0.7", 0);
	st.chain = strdup("/etc/rdmesh/chain.yaml");
	cr_assert_eq(rdm_state_set_plan(&st, p, NULL), 0);
	cr_assert_eq(rdm_state_spend(&st, "00112233445566aa", "pa", 2000, 1000), 0);
	cr_assert_eq(rdm_state_spend(&st, "00112233445566bb", "pb", 3000, 2500), 0,
		     "drops the expired one");
	cr_assert_eq(st.n_spent, 1);
	snprintf(path, sizeof(path), "%s/state", dir);
	put("state", "");
	cr_assert_eq(rdm_state_save(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(rdm_state_load(path, &in, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(in.n_spent, 1);
	cr_assert_not_null(rdm_state_spent(&in, "00112233445566bb"));
	cr_assert_null(rdm_state_spent(&in, "00112233445566aa"));
	cr_assert_str_eq(rdm_state_spent(&in, "00112233445566bb")->pod, "pb");
	cr_assert_eq(in.n_replicas, 4, "the pod's replica is saved");
	/* a restart knows no pod yet: the pod's replica waits for its hello */
	rdm_rack_remove_pod(&r, rdm_rack_find(&r, "pa"));
	back = rdm_state_plan(&in, &r, &s, err, sizeof(err));
	cr_assert_not_null(back, "%s", err);
	cr_assert_null(rdm_plan_replica(back, "dpi-51"));
	expect_at(back, "dpi-1", p->rack->nodes[rdm_plan_replica(p, "dpi-1")->node].name,
		  rdm_plan_replica(p, "dpi-1")->listen);
	rdm_plan_free(back);
	rdm_plan_free(p);
	rdm_state_free(&st);
	rdm_state_free(&in);
	rdm_chain_spec_free(&s);
	rdm_rack_free(&r);
}
