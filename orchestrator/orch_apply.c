/* ctl apply: the chain file is read and checked (YAML, every stage's settings and files)
 * on a thread of its own, so that a huge or slow file never stalls the loop that hears
 * the nodes; the loop waits at most APPLY_LIMIT_MS for it (then ctl hears that the file
 * took too long, and nothing changes), and then compares its plan with the running one
 * and, unless it is a dry run, switches to it. One apply at a time. */
#include "orchestrator/orch_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"

#define APPLY_LIMIT_MS 10000

struct apply_job {
	pthread_t thr;
	struct orch *o;
	char real[PATH_MAX];
	int dry;
	struct conn *c; /* the ctl channel waiting for the answer; NULL once it went */
	uint64_t deadline_ns;
	atomic_int done;
	int rc;
	char err[1024];
	struct rdm_chain_spec spec;
};

static void *check_main(void *arg)
{
	struct apply_job *j = arg;

	j->rc = rdm_chain_spec_load(j->real, &j->spec, j->err, sizeof(j->err));
	atomic_store(&j->done, 1);
	if (write(j->o->wake[1], "a", 1) < 0) {
		/* the loop's tick finds it */
	}
	return NULL;
}

/* The checked spec ns against the running plan; then the switch (ns is taken). */
static int finish(struct orch *o, const char *real, struct rdm_chain_spec *ns, int dry, FILE *f)
{
	struct rdm_plan *np;
	char err[1024], *text, *cur;
	int changes;

	/* Replicas the new file still has stay where they run; those it drops hold their
	 * ports while their nodes drain them, as the running plan's holds do. */
	np = rdm_plan_rebase(&o->rack, ns, NULL, o->plan->down, o->plan->replicas,
			     o->plan->n_replicas, o->plan->held, o->plan->n_held, err, sizeof(err));
	if (!np) {
		fprintf(f, "%s\nnothing changed\n", err);
		rdm_chain_spec_free(ns);
		return -1;
	}
	text = rdm_plan_render(np, err, sizeof(err));
	cur = o->rendered;
	fprintf(f, "%s: chain '%s', %d replicas (running: '%s', %d replicas)\n", real, ns->name,
		np->n_replicas, o->spec.name, o->plan->n_replicas);
	changes = rdm_orch__plan_diff(f, o->plan, np);
	if (text && strcmp(text, cur)) {
		/* The settings part: which lines of the rendered chain differ. */
		char *a = strdup(cur), *b = strdup(text), *sa = NULL, *sb = NULL;
		int shown = 0, differ = 0;

		for (char *la = a ? strtok_r(a, "\n", &sa) : NULL,
			  *lb = b ? strtok_r(b, "\n", &sb) : NULL;
		     (la || lb) && shown < 40; la = la ? strtok_r(NULL, "\n", &sa) : NULL,
			  lb = lb ? strtok_r(NULL, "\n", &sb) : NULL) {
			if ((la && lb && !strcmp(la, lb)) ||
			    (la && lb && la[0] == '#' && lb[0] == '#'))
				continue;
			if (!differ++)
				fprintf(f, "  rendered chain config differs:\n");
			if (la)
				fprintf(f, "    - %s\n", la);
			if (lb)
				fprintf(f, "    + %s\n", lb);
			shown++;
		}
		free(a);
		free(b);
		changes += differ > 0;
	}
	free(text);
	if (!changes || dry) {
		fprintf(f, "%s\n", changes ? "dry run: nothing applied" : "no change");
		rdm_plan_free(np);
		rdm_chain_spec_free(ns);
		return 0;
	}
	{
		/* The plan points at the spec: move the new spec into place, keeping the old
		 * one until the switch is committed. */
		struct rdm_chain_spec old_spec = o->spec;

		o->spec = *ns;
		memset(ns, 0, sizeof(*ns)); /* moved */
		np->spec = &o->spec;
		o->plan->spec = &old_spec;
		if (rdm_orch__commit(o, np, real, err, sizeof(err)) < 0) {
			fprintf(f, "%s\nnothing changed\n", err);
			rdm_chain_spec_free(&o->spec);
			o->spec = old_spec;
			o->plan->spec = &o->spec;
			return -1;
		}
		rdm_chain_spec_free(&old_spec);
	}
	fprintf(f, "applied: epoch %" PRIu64 "\n", o->st.epoch);
	rdm_orch__log(o, "ctl apply %s: epoch %" PRIu64, real, o->st.epoch);
	return 0;
}

int rdm_orch__apply_start(struct orch *o, struct conn *c, const char *path, int dry, FILE *f,
			  int *started)
{
	struct apply_job *j;

	*started = 0;
	if (o->apply) {
		fprintf(f, "another apply is being checked (%s): try again when it is done\n",
			o->apply->real);
		return -1;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		fprintf(f, "out of memory\n");
		return -1;
	}
	if (!path || !realpath(path, j->real)) {
		fprintf(f, "%s: %s\n", path ? path : "(no file)", strerror(path ? errno : EINVAL));
		free(j);
		return -1;
	}
	j->o = o;
	j->c = c;
	j->dry = dry;
	j->deadline_ns = rdm_now_ns() + APPLY_LIMIT_MS * 1000000ull;
	if (pthread_create(&j->thr, NULL, check_main, j)) {
		fprintf(f, "cannot start a thread to check %s\n", j->real);
		free(j);
		return -1;
	}
	o->apply = j;
	*started = 1;
	rdm_orch__log(o, "ctl apply %s: checking it (off the loop, at most %d s)", j->real,
		      APPLY_LIMIT_MS / 1000);
	return 0;
}

void rdm_orch__apply_poll(struct orch *o)
{
	struct apply_job *j = o->apply;
	char *out = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	if (!j)
		return;
	if (!atomic_load(&j->done)) {
		if (j->c && rdm_now_ns() >= j->deadline_ns) {
			/* The file takes too long: say so now; the check ends on its own. */
			char msg[PATH_MAX + 128];
			int n = snprintf(msg, sizeof(msg),
					 "%s: not checked within %d s (too large or too slow to "
					 "read): refused\nnothing changed\n",
					 j->real, APPLY_LIMIT_MS / 1000);

			rdm_orch__log(o, "ctl apply %s: not checked within %d s: refused", j->real,
				      APPLY_LIMIT_MS / 1000);
			rdm_orch__reply(o, j->c, "apply", -1, msg, (size_t)n, NULL);
			j->c = NULL;
		}
		return;
	}
	pthread_join(j->thr, NULL);
	o->apply = NULL;
	f = j->c ? open_memstream(&out, &len) : NULL;
	if (!f) {
		/* Nobody waits (ctl went, or was told the file took too long). */
		rdm_chain_spec_free(&j->spec);
		free(j);
		return;
	}
	if (j->rc < 0) {
		fprintf(f, "%s\nnothing changed\n", j->err);
		rc = -1;
	} else if (!rdm_orch__leads(o)) {
		fprintf(f, "this orchestrator stopped leading while the file was checked: nothing "
			   "changed\n");
		rdm_chain_spec_free(&j->spec);
		rc = -1;
	} else {
		rc = finish(o, j->real, &j->spec, j->dry, f);
	}
	fclose(f);
	rdm_orch__reply(o, j->c, "apply", rc, out, len, NULL);
	free(out);
	free(j);
}

void rdm_orch__apply_gone(struct orch *o, struct conn *c)
{
	if (o->apply && o->apply->c == c)
		o->apply->c = NULL;
}

void rdm_orch__apply_close(struct orch *o)
{
	if (!o->apply)
		return;
	pthread_join(o->apply->thr, NULL);
	rdm_chain_spec_free(&o->apply->spec);
	free(o->apply);
	o->apply = NULL;
}
