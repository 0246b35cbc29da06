/* What the state tests (tests/test_state.c, tests/test_state_restore.c) share: a fresh
 * temporary directory per test with files written into it, and desired states built and
 * checked from short strings. Include after criterion.h. */
#ifndef RDM_TESTS_STATE_FIXTURE_H
#define RDM_TESTS_STATE_FIXTURE_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orchestrator/state.h"

static char err[1024];
static char dir[64];

static void mkdir_tmp(void)
{
	strcpy(dir, "/tmp/rdm-test-state-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

/* Removes every file the test left in DIR (the tests create no subdirectories but one,
 * removed by the test that makes it), then DIR. */
static void rm_tmp(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

/* DIR/name in a static buffer (one of 64 in turn: a test keeps its few paths). */
static const char *at(const char *name)
{
	static char bufs[64][256];
	static int k;
	char *p = bufs[k++ % 64];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

/* Writes text to DIR/name; returns the path. */
static const char *put(const char *name, const char *text)
{
	const char *p = at(name);
	FILE *f = fopen(p, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}
/* A state of chain at epoch with the given down nodes ("NAME:dead" or "NAME:drained")
 * and replicas ("ID@NODE:PORT"), NULL-terminated lists (the strings are copied). */
static void make_state(struct rdm_orch_state *s, uint64_t epoch, const char *chain,
		       const char *const down[], const char *const reps[])
{
	int n = 0;

	memset(s, 0, sizeof(*s));
	s->epoch = epoch;
	s->chain = chain ? strdup(chain) : NULL;
	cr_assert(!chain || s->chain);
	while (down && down[n])
		n++;
	s->down = calloc((size_t)n + 1, sizeof(*s->down));
	cr_assert_not_null(s->down);
	for (s->n_down = 0; s->n_down < n; s->n_down++) {
		struct rdm_state_down *d = &s->down[s->n_down];
		char why[16];

		cr_assert_eq(sscanf(down[s->n_down], "%63[^:]:%15s", d->node, why), 2);
		d->why = !strcmp(why, "drained") ? RDM_DOWN_DRAINED : RDM_DOWN_DEAD;
	}
	n = 0;
	while (reps && reps[n])
		n++;
	s->replicas = calloc((size_t)n + 1, sizeof(*s->replicas));
	cr_assert_not_null(s->replicas);
	for (s->n_replicas = 0; s->n_replicas < n; s->n_replicas++) {
		struct rdm_state_replica *r = &s->replicas[s->n_replicas];
		unsigned port;

		cr_assert_eq(
		    sscanf(reps[s->n_replicas], "%63[^@]@%63[^:]:%u", r->id, r->node, &port), 3,
		    "%s", reps[s->n_replicas]);
		r->port = (uint16_t)port;
	}
}

static void expect_state(const struct rdm_orch_state *s, uint64_t epoch, const char *chain,
			 const char *const down[], const char *const reps[])
{
	int n = 0;
	char buf[200];

	cr_assert_eq(s->epoch, epoch);
	cr_assert_str_eq(s->chain, chain);
	while (down && down[n])
		n++;
	cr_assert_eq(s->n_down, n);
	for (int i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s:%s", s->down[i].node,
			 s->down[i].why == RDM_DOWN_DRAINED ? "drained" : "dead");
		cr_assert_str_eq(buf, down[i], "down %d", i);
	}
	n = 0;
	while (reps && reps[n])
		n++;
	cr_assert_eq(s->n_replicas, n);
	for (int i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%s@%s:%u", s->replicas[i].id, s->replicas[i].node,
			 s->replicas[i].port);
		cr_assert_str_eq(buf, reps[i], "replica %d: %s, want %s", i, buf, reps[i]);
	}
}

#endif
