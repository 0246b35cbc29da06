/* Rendering a plan as the static chain config (node/config.h) that the data plane runs:
 * chain.yaml's nodes written back as flow-style YAML, with every written node's position
 * remembered when asked (orchestrator/plan_int.h). */
#include "orchestrator/plan_int.h"
#include "lib/yaml.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text with positions ---------------------------------------------------------- */

void rdm_plan__text_init(struct rdm_plan__text *t, int tracking)
{
	memset(t, 0, sizeof(*t));
	rdm_sb_init(&t->sb);
	t->tracking = tracking;
}

void rdm_plan__text_fini(struct rdm_plan__text *t)
{
	rdm_sb_fini(&t->sb);
	free(t->marks);
	free(t->blocks);
	rdm_plan__text_init(t, 0);
}

/* Remembers that orig starts at the current position. */
static void mark(struct rdm_plan__text *t, const struct rdm_ynode *orig)
{
	if (!t->tracking || t->sb.failed || !orig)
		return;
	if (rdm_sb_grow((void **)&t->marks, &t->cap_marks, t->n_marks + 1, sizeof(*t->marks)) < 0) {
		t->sb.failed = 1;
		return;
	}
	t->marks[t->n_marks++] = (struct rdm_plan__mark){t->sb.line, t->sb.col, orig};
}

/* Remembers that the lines from first to the current one render the stage at orig. */
static void block(struct rdm_plan__text *t, int first, const struct rdm_ynode *orig)
{
	if (!t->tracking || t->sb.failed)
		return;
	if (rdm_sb_grow((void **)&t->blocks, &t->cap_blocks, t->n_blocks + 1, sizeof(*t->blocks)) <
	    0) {
		t->sb.failed = 1;
		return;
	}
	t->blocks[t->n_blocks++] = (struct rdm_plan__block){first, t->sb.line, orig};
}

const struct rdm_ynode *rdm_plan__text_origin(const struct rdm_plan__text *t, int line, int col)
{
	for (size_t i = 0; i < t->n_marks; i++)
		if (t->marks[i].line == line && t->marks[i].col == col)
			return t->marks[i].orig;
	for (size_t i = 0; i < t->n_blocks; i++)
		if (line >= t->blocks[i].first && line <= t->blocks[i].last)
			return t->blocks[i].orig;
	return NULL;
}

/* ---- emitting chain.yaml nodes as flow-style YAML ---------------------------------- */

/* A scalar that reads back the same unquoted, in flow context and as a string (not a
 * null); anything else is double-quoted. */
static int plain_ok(const char *s)
{
	static const char *const nulls[] = {"~", "null", "Null", "NULL"};

	if (!*s || !(isalnum((unsigned char)*s) || *s == '/' || *s == '_'))
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_./+-", *p))
			return 0;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (!strcmp(s, nulls[i]))
			return 0;
	return 1;
}

static void put_scalar(struct rdm_strbuf *b, const char *s)
{
	char esc[8];

	if (plain_ok(s)) {
		rdm_sb_puts(b, s);
		return;
	}
	rdm_sb_put(b, "\"", 1);
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			rdm_sb_put(b, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			rdm_sb_puts(b, esc);
		} else {
			rdm_sb_put(b, p, 1);
		}
	}
	rdm_sb_put(b, "\"", 1);
}

/* Emission state: where text goes, what relative paths resolve against, where errors
 * go. */
struct em {
	struct rdm_plan__text *t;
	struct rdm_strbuf *b;
	const struct rdm_ydoc *doc;
	const char *dir;
	char *err;
	size_t len;
};

static int key_in(const char *key, const char *const *keys)
{
	for (size_t i = 0; keys && keys[i]; i++)
		if (!strcmp(key, keys[i]))
			return 1;
	return 0;
}

/* Emits n in flow style. A scalar under one of path_keys (at any depth) that is a
 * relative path becomes DIR/PATH. Returns 0, or -EINVAL with the error at n (a scalar
 * the DOM holds but no getter would accept, one with a NUL byte). */
static int emit(struct em *e, const struct rdm_ynode *n, const char *const *path_keys, int is_path)
{
	const char *s;
	int rc;

	mark(e->t, n);
	switch (rdm_ynode_kind(n)) {
	case RDM_YSCALAR:
		if (rdm_ynode_is_null(n)) {
			rdm_sb_puts(e->b, "~");
			return 0;
		}
		rc = rdm_yget_str(e->doc, n, &s, e->err, e->len);
		if (rc)
			return rc;
		if (is_path && *s && s[0] != '/') {
			char *abs;

			if (asprintf(&abs, "%s/%s", e->dir, s) < 0) {
				e->b->failed = 1;
				return 0;
			}
			put_scalar(e->b, abs);
			free(abs);
		} else {
			put_scalar(e->b, s);
		}
		return 0;
	case RDM_YMAP:
		rdm_sb_puts(e->b, "{");
		for (size_t i = 0; i < rdm_ymap_size(n); i++) {
			const struct rdm_ynode *k = rdm_ymap_key(n, i), *v = rdm_ymap_value(n, i);

			if (i)
				rdm_sb_puts(e->b, ", ");
			rc = emit(e, k, NULL, 0);
			if (rc)
				return rc;
			rdm_sb_puts(e->b, ": ");
			rc = emit(e, v, path_keys,
				  rdm_ynode_kind(v) == RDM_YSCALAR &&
				      key_in(rdm_ynode_scalar(k), path_keys));
			if (rc)
				return rc;
		}
		rdm_sb_puts(e->b, "}");
		return 0;
	case RDM_YSEQ:
		rdm_sb_puts(e->b, "[");
		for (size_t i = 0; i < rdm_yseq_size(n); i++) {
			if (i)
				rdm_sb_puts(e->b, ", ");
			rc = emit(e, rdm_yseq_item(n, i), path_keys, 0);
			if (rc)
				return rc;
		}
		rdm_sb_puts(e->b, "]");
		return 0;
	}
	return rdm_yerr(e->doc, n, e->err, e->len, "unexpected node");
}

/* ---- rendering --------------------------------------------------------------------- */

static const char *const run_paths[] = {"file", "directory", NULL};
static const char *const ingress_paths[] = {"file", NULL};
static const char *const egress_paths[] = {"pcap", "frames", NULL};

static const char *transport_name(enum rdm_transport_kind t)
{
	return t == RDM_TRANSPORT_TCP ? "tcp" : t == RDM_TRANSPORT_RDMA ? "rdma" : "auto";
}

/* Writes s into a comment: control characters become '?', so it stays one line. */
static void put_comment_text(struct rdm_strbuf *b, const char *s)
{
	for (; *s; s++)
		rdm_sb_put(b, iscntrl((unsigned char)*s) ? "?" : s, 1);
}

int rdm_plan__render(struct rdm_plan__text *t, const struct rdm_chain_spec *spec,
		     const struct rdm_rack *rack, const struct rdm_replica *reps, int n, char *err,
		     size_t errlen)
{
	const char *rack_file = rack ? rack->file : NULL;
	struct rdm_strbuf *b = &t->sb;
	struct em e = {
	    .t = t, .b = b, .doc = spec->doc, .dir = spec->dir, .err = err, .len = errlen};
	int rc;

	rdm_sb_puts(b, "# The static chain rendered by the orchestrator from ");
	put_comment_text(b, rack_file ? rack_file : "(no rack)");
	rdm_sb_puts(b, " and ");
	put_comment_text(b, spec->file);
	rdm_sb_puts(b, ".\n# One data-plane node per replica, named STAGE-N, with id = (stage "
		       "position in the chain) * 100 + N.\n");
	rdm_sb_puts(b, "chain: ");
	rc = emit(&e, spec->chain, NULL, 0);
	if (!rc && spec->transport) {
		rdm_sb_puts(b, "\ntransport: ");
		rc = emit(&e, spec->transport, NULL, 0);
	}
	if (!rc && spec->flows) {
		rdm_sb_puts(b, "\nflows: ");
		rc = emit(&e, spec->flows, NULL, 0);
	}
	if (rc)
		return rc;
	rdm_sb_puts(b, "\nnodes:\n");
	for (int i = 0; i < n && !rc; i++) {
		const struct rdm_replica *r = &reps[i];
		const struct rdm_spec_stage *st = &spec->stages[r->stage];
		int first = b->line, last_stage = r->stage == spec->n_stages - 1;

		rdm_sb_printf(b, "  - name: %s\n    id: %u\n    listen: \"%s\"\n    workers: %d\n",
			      r->id, r->node_id, r->listen, st->workers);
		if (rack && r->node >= 0 && r->node < rack->n_nodes)
			rdm_sb_printf(b, "    identity: %s\n", rack->nodes[r->node].name);
		rdm_sb_puts(b, "    stages: ");
		rc = emit(&e, st->run, run_paths, 0);
		if (!rc && !last_stage) {
			int k = 0;

			rdm_sb_puts(b, "\n    next: [");
			for (int j = 0; j < n; j++)
				if (reps[j].stage == r->stage + 1)
					rdm_sb_printf(b, "%s%s", k++ ? ", " : "", reps[j].id);
			rdm_sb_printf(b, "]\n    transport: %s", transport_name(st->transport));
		}
		if (!rc && st->poll != RDM_POLL_SLEEP)
			rdm_sb_printf(b, "\n    poll: %s", rdm_poll_mode_name(st->poll));
		if (!rc && st->ingress) {
			rdm_sb_puts(b, "\n    ingress: ");
			rc = emit(&e, st->ingress, ingress_paths, 0);
		}
		if (!rc && st->egress) {
			rdm_sb_puts(b, "\n    egress: ");
			rc = emit(&e, st->egress, egress_paths, 0);
		}
		rdm_sb_puts(b, "\n");
		block(t, first, st->map);
	}
	if (!rc && b->failed) {
		snprintf(err, errlen, "%s: out of memory", spec->file);
		rc = -ENOMEM;
	}
	return rc;
}

char *rdm_plan_render(const struct rdm_plan *p, char *err, size_t errlen)
{
	struct rdm_plan__text t;
	char *text;

	rdm_plan__text_init(&t, 0);
	if (rdm_plan__render(&t, p->spec, p->rack, p->replicas, p->n_replicas, err, errlen)) {
		errno = t.sb.failed ? ENOMEM : EINVAL;
		rdm_plan__text_fini(&t);
		return NULL;
	}
	text = rdm_sb_take(&t.sb);
	rdm_plan__text_fini(&t);
	return text;
}
