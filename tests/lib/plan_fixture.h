/* What the plan tests (tests/test_plan.c, tests/test_plan_place.c) share: a fresh
 * temporary directory per test with rack.yaml and chain.yaml written into it and loaded,
 * a four-node rack, and checking where a replica landed. Include after criterion.h. */
#ifndef RDM_TESTS_PLAN_FIXTURE_H
#define RDM_TESTS_PLAN_FIXTURE_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/plan.h"
#include "orchestrator/rack.h"

static char err[1024];
static char dir[64];
static char paths[16][128];
static int n_paths;

static void mkdir_tmp(void)
{
	strcpy(dir, "/tmp/rdm-test-plan-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	n_paths = 0;
}

static void rm_tmp(void)
{
	for (int i = 0; i < n_paths; i++)
		unlink(paths[i]);
	rmdir(dir);
}

/* Writes text to DIR/name; returns the path (valid for the test). */
static const char *put(const char *name, const char *text)
{
	char want[128], *p = NULL;
	FILE *f;

	snprintf(want, sizeof(want), "%s/%s", dir, name);
	for (int i = 0; i < n_paths && !p; i++)
		if (!strcmp(paths[i], want))
			p = paths[i];
	if (!p) {
		cr_assert_lt(n_paths, 16);
		p = strcpy(paths[n_paths++], want);
	}
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}
static void load_rack(const char *text, struct rdm_rack *r)
{
	int rc = rdm_rack_load(put("rack.yaml", text), r, err, sizeof(err));

	cr_assert_eq(rc, 0, "%s", err);
}

static void load_chain(const char *text, struct rdm_chain_spec *s)
{
	int rc = rdm_chain_spec_load(put("chain.yaml", text), s, err, sizeof(err));

	cr_assert_eq(rc, 0, "%s", err);
}

static void expect_at(const struct rdm_plan *p, const char *id, const char *node,
		      const char *listen)
{
	const struct rdm_replica *r = rdm_plan_replica(p, id);

	cr_assert_not_null(r, "no replica %s", id);
	cr_assert_str_eq(p->rack->nodes[r->node].name, node, "%s", id);
	cr_assert_str_eq(r->listen, listen, "%s", id);
}

#define RACK4                                                                                      \
	"nodes:\n"                                                                                 \
	"  - {name: n1, control: 10.77.0.1, data: 10.77.0.1, capacity: 4}\n"                       \
	"  - {name: n2, control: 10.77.0.2, data: 10.77.0.2, capacity: 4}\n"                       \
	"  - {name: n3, control: 10.77.0.3, data: 10.77.0.3, capacity: 4}\n"                       \
	"  - {name: n4, control: 10.77.0.4, data: 10.77.0.4, capacity: 4}\n"

/* edge -> dpi -> log, with dpi's own lines (each "    key: value\n") in dpi. */
#define CHAIN3_DPI(dpi)                                                                            \
	"chain: {name: t}\n"                                                                       \
	"stages:\n"                                                                                \
	"  - name: edge\n"                                                                         \
	"    run: [stamp]\n"                                                                       \
	"    ingress: {mode: gen, count: 10}\n"                                                    \
	"  - name: dpi\n"                                                                          \
	"    run: [stamp, dpi]\n" dpi "  - name: log\n"                                            \
	"    run: [stamp]\n"                                                                       \
	"    egress:\n"

#define HEAD "chain: {name: t}\nstages:\n"

#endif
