#include "orchestrator/plan.h"
#include "lib/yaml.h"
#include "services/stage.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- text with positions ---------------------------------------------------------- */

/* Where an emitted node of chain.yaml landed in rendered text. */
struct mark {
	int line, col;
	const struct rdm_ynode *orig;
};

/* A run of rendered lines that belongs to one stage of chain.yaml: an error at a node
 * the renderer made up itself (a default) is reported at the stage. */
struct block {
	int first, last;
	const struct rdm_ynode *orig;
};

/* A growing text that knows the line and column (in characters, as libyaml counts
 * them) of its end, and optionally remembers where each emitted node of chain.yaml
 * went. failed is set on out of memory; later writes are ignored. */
struct sb {
	char *buf;
	size_t len, cap;
	int line, col;
	int failed;
	int tracking;
	struct mark *marks;
	size_t n_marks, cap_marks;
	struct block *blocks;
	size_t n_blocks, cap_blocks;
};

static void sb_init(struct sb *b, int tracking)
{
	memset(b, 0, sizeof(*b));
	b->line = 1;
	b->col = 1;
	b->tracking = tracking;
}

static void sb_fini(struct sb *b)
{
	free(b->buf);
	free(b->marks);
	free(b->blocks);
	memset(b, 0, sizeof(*b));
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	q = realloc(*p, n * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static void sb_put(struct sb *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (grow((void **)&b->buf, &b->cap, b->len + n + 1, 1) < 0) {
		b->failed = 1;
		return;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n') {
			b->line++;
			b->col = 1;
		} else if (((unsigned char)s[i] & 0xC0) != 0x80) {
			b->col++;
		}
	}
}

static void sb_puts(struct sb *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sb *b, const char *fmt, ...)
{
	char small[256], *s = small;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = 1;
		return;
	}
	if ((size_t)n >= sizeof(small)) {
		va_start(ap, fmt);
		n = vasprintf(&s, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
	}
	sb_put(b, s, (size_t)n);
	if (s != small)
		free(s);
}

/* Remembers that orig starts at the current position. */
static void sb_mark(struct sb *b, const struct rdm_ynode *orig)
{
	if (!b->tracking || b->failed || !orig)
		return;
	if (grow((void **)&b->marks, &b->cap_marks, b->n_marks + 1, sizeof(*b->marks)) < 0) {
		b->failed = 1;
		return;
	}
	b->marks[b->n_marks++] = (struct mark){b->line, b->col, orig};
}

static void sb_block(struct sb *b, int first, const struct rdm_ynode *orig)
{
	if (!b->tracking || b->failed)
		return;
	if (grow((void **)&b->blocks, &b->cap_blocks, b->n_blocks + 1, sizeof(*b->blocks)) < 0) {
		b->failed = 1;
		return;
	}
	b->blocks[b->n_blocks++] = (struct block){first, b->line, orig};
}

/* The node of chain.yaml rendered at line:col, else the stage whose lines hold it, else
 * NULL. */
static const struct rdm_ynode *sb_origin(const struct sb *b, int line, int col)
{
	for (size_t i = 0; i < b->n_marks; i++)
		if (b->marks[i].line == line && b->marks[i].col == col)
			return b->marks[i].orig;
	for (size_t i = 0; i < b->n_blocks; i++)
		if (line >= b->blocks[i].first && line <= b->blocks[i].last)
			return b->blocks[i].orig;
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

static void put_scalar(struct sb *b, const char *s)
{
	char esc[8];

	if (plain_ok(s)) {
		sb_puts(b, s);
		return;
	}
	sb_put(b, "\"", 1);
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			sb_put(b, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			sb_puts(b, esc);
		} else {
			sb_put(b, p, 1);
		}
	}
	sb_put(b, "\"", 1);
}

/* Emission state: where text goes, what relative paths resolve against, where errors
 * go. */
struct em {
	struct sb *b;
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

	sb_mark(e->b, n);
	switch (rdm_ynode_kind(n)) {
	case RDM_YSCALAR:
		if (rdm_ynode_is_null(n)) {
			sb_puts(e->b, "~");
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
		sb_puts(e->b, "{");
		for (size_t i = 0; i < rdm_ymap_size(n); i++) {
			const struct rdm_ynode *k = rdm_ymap_key(n, i), *v = rdm_ymap_value(n, i);

			if (i)
				sb_puts(e->b, ", ");
			rc = emit(e, k, NULL, 0);
			if (rc)
				return rc;
			sb_puts(e->b, ": ");
			rc = emit(e, v, path_keys,
				  rdm_ynode_kind(v) == RDM_YSCALAR &&
				      key_in(rdm_ynode_scalar(k), path_keys));
			if (rc)
				return rc;
		}
		sb_puts(e->b, "}");
		return 0;
	case RDM_YSEQ:
		sb_puts(e->b, "[");
		for (size_t i = 0; i < rdm_yseq_size(n); i++) {
			if (i)
				sb_puts(e->b, ", ");
			rc = emit(e, rdm_yseq_item(n, i), path_keys, 0);
			if (rc)
				return rc;
		}
		sb_puts(e->b, "]");
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
static void put_comment_text(struct sb *b, const char *s)
{
	for (; *s; s++)
		sb_put(b, iscntrl((unsigned char)*s) ? "?" : s, 1);
}

/* Renders the static chain for replicas (n of them, by stage then number; every stage
 * has at least one) into b. Returns 0, or -EINVAL/-ENOMEM with a message in err. */
static int render(struct sb *b, const struct rdm_chain_spec *spec, const char *rack_file,
		  const struct rdm_replica *reps, int n, char *err, size_t errlen)
{
	struct em e = {.b = b, .doc = spec->doc, .dir = spec->dir, .err = err, .len = errlen};
	int rc;

	sb_puts(b, "# The static chain rendered by the orchestrator from ");
	put_comment_text(b, rack_file ? rack_file : "(no rack)");
	sb_puts(b, " and ");
	put_comment_text(b, spec->file);
	sb_puts(b, ".\n# One data-plane node per replica, named STAGE-N, with id = (stage "
		   "position in the chain) * 100 + N.\n");
	sb_puts(b, "chain: ");
	rc = emit(&e, spec->chain, NULL, 0);
	if (!rc && spec->transport) {
		sb_puts(b, "\ntransport: ");
		rc = emit(&e, spec->transport, NULL, 0);
	}
	if (!rc && spec->flows) {
		sb_puts(b, "\nflows: ");
		rc = emit(&e, spec->flows, NULL, 0);
	}
	if (rc)
		return rc;
	sb_puts(b, "\nnodes:\n");
	for (int i = 0; i < n && !rc; i++) {
		const struct rdm_replica *r = &reps[i];
		const struct rdm_spec_stage *st = &spec->stages[r->stage];
		int first = b->line, last_stage = r->stage == spec->n_stages - 1;

		sb_printf(b, "  - name: %s\n    id: %u\n    listen: \"%s\"\n    workers: %d\n",
			  r->id, r->node_id, r->listen, st->workers);
		sb_puts(b, "    stages: ");
		rc = emit(&e, st->run, run_paths, 0);
		if (!rc && !last_stage) {
			int k = 0;

			sb_puts(b, "\n    next: [");
			for (int j = 0; j < n; j++)
				if (reps[j].stage == r->stage + 1)
					sb_printf(b, "%s%s", k++ ? ", " : "", reps[j].id);
			sb_printf(b, "]\n    transport: %s", transport_name(st->transport));
		}
		if (!rc && st->ingress) {
			sb_puts(b, "\n    ingress: ");
			rc = emit(&e, st->ingress, ingress_paths, 0);
		}
		if (!rc && st->egress) {
			sb_puts(b, "\n    egress: ");
			rc = emit(&e, st->egress, egress_paths, 0);
		}
		sb_puts(b, "\n");
		sb_block(b, first, st->map);
	}
	if (!rc && b->failed) {
		snprintf(err, errlen, "%s: out of memory", spec->file);
		rc = -ENOMEM;
	}
	return rc;
}

static void set_listen(struct rdm_replica *r, const char *ip, int v6, uint16_t port)
{
	snprintf(r->listen, sizeof(r->listen), v6 ? "[%s]:%u" : "%s:%u", ip, port);
}

static void set_ids(struct rdm_replica *r, const struct rdm_chain_spec *spec, int stage, int n)
{
	r->stage = stage;
	r->n = n;
	r->node_id = (uint32_t)(stage + 1) * RDM_PLAN_ID_STRIDE + (uint32_t)n;
	snprintf(r->id, sizeof(r->id), "%s-%d", spec->stages[stage].name, n);
}

char *rdm_plan_render(const struct rdm_plan *p, char *err, size_t errlen)
{
	struct sb b;
	char *text;

	sb_init(&b, 0);
	if (render(&b, p->spec, p->rack->file, p->replicas, p->n_replicas, err, errlen)) {
		sb_fini(&b);
		errno = b.failed ? ENOMEM : EINVAL;
		return NULL;
	}
	text = b.buf;
	b.buf = NULL;
	sb_fini(&b);
	return text;
}

/* ---- chain.yaml -------------------------------------------------------------------- */

struct ld {
	struct rdm_ydoc *doc;
	char *err;
	size_t len;
};

static int oom(struct ld *l)
{
	rdm_yerr(l->doc, NULL, l->err, l->len, "out of memory");
	return -ENOMEM;
}

/* The key node of map's entry key (errors about a whole entry point at its key). */
static const struct rdm_ynode *key_node(const struct rdm_ynode *map, const char *key)
{
	for (size_t i = 0; i < rdm_ymap_size(map); i++)
		if (!strcmp(rdm_ynode_scalar(rdm_ymap_key(map, i)), key))
			return rdm_ymap_key(map, i);
	return NULL;
}

static int valid_stage_name(const char *s)
{
	return strlen(s) <= RDM_PLAN_STAGE_NAME_MAX && rdm_node_name_ok(s);
}

/* placement: {labels: {k: v}, spread: bool}; null or absent = no labels, spread. */
static int load_placement(struct ld *l, const struct rdm_ynode *v, struct rdm_spec_stage *st)
{
	static const char *const keys[] = {"labels", "spread", NULL};
	const struct rdm_ynode *lm;
	size_t n;
	int rc;

	st->spread = 1;
	if (!v || rdm_ynode_is_null(v))
		return 0;
	rc = rdm_yexpect(l->doc, v, "placement", RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, v, keys, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_bool(l->doc, v, "spread", 1, &st->spread, l->err, l->len);
	if (rc)
		return rc;
	lm = rdm_ymap_get(v, "labels");
	if (!lm || rdm_ynode_is_null(lm))
		return 0;
	rc = rdm_yexpect(l->doc, lm, "labels", RDM_YMAP, l->err, l->len);
	if (rc)
		return rc;
	st->labels_at = lm;
	n = rdm_ymap_size(lm);
	if (!n)
		return 0;
	st->labels = calloc(n, sizeof(*st->labels));
	if (!st->labels)
		return oom(l);
	for (size_t i = 0; i < n; i++) {
		const struct rdm_ynode *k = rdm_ymap_key(lm, i);
		const char *ks, *vs;

		rc = rdm_yget_str(l->doc, k, &ks, l->err, l->len);
		if (!rc && !*ks)
			rc = rdm_yerr(l->doc, k, l->err, l->len, "labels: a key must not be empty");
		if (!rc)
			rc = rdm_yget_str(l->doc, rdm_ymap_value(lm, i), &vs, l->err, l->len);
		if (rc)
			return rc;
		st->n_labels = (int)(i + 1);
		st->labels[i].at = k;
		rc = rdm_ystrdup(l->doc, ks, &st->labels[i].key, l->err, l->len);
		if (!rc)
			rc = rdm_ystrdup(l->doc, vs, &st->labels[i].value, l->err, l->len);
		if (rc)
			return rc;
	}
	return 0;
}

/* The run list: names or mappings with `name:`, each a registered data-plane stage. */
static int load_run(struct ld *l, const struct rdm_spec_stage *st)
{
	const struct rdm_ynode *v = st->run;
	const char *const *names = rdm_stage_names();
	size_t n_names = 0;
	int rc;

	while (names[n_names])
		n_names++;
	rc = rdm_yexpect(l->doc, v, "run", RDM_YSEQ, l->err, l->len);
	if (rc)
		return rc;
	if (rdm_yseq_size(v) == 0)
		return rdm_yerr(l->doc, v, l->err, l->len,
				"stage '%s': run: list at least one data-plane stage", st->name);
	for (size_t i = 0; i < rdm_yseq_size(v); i++) {
		const struct rdm_ynode *it = rdm_yseq_item(v, i), *nv = it;
		const char *name, *hint;

		if (rdm_ynode_kind(it) == RDM_YMAP) {
			nv = rdm_ymap_get(it, "name");
			if (!nv)
				return rdm_yerr(l->doc, it, l->err, l->len,
						"stage '%s': run entry %zu: missing key 'name'",
						st->name, i + 1);
			rc = rdm_ymap_str(l->doc, it, "name", NULL, &name, l->err, l->len);
		} else if (rdm_ynode_kind(it) == RDM_YSCALAR) {
			rc = rdm_yget_str(l->doc, it, &name, l->err, l->len);
		} else {
			return rdm_yerr(l->doc, it, l->err, l->len,
					"expected a stage name or a mapping with 'name', got a "
					"sequence");
		}
		if (rc)
			return rc;
		if (rdm_stage_find(name))
			continue;
		hint = rdm_yclosest(name, names, n_names, 2);
		return rdm_yerr(l->doc, nv, l->err, l->len, "unknown stage '%s'%s%s%s", name,
				hint ? " (did you mean '" : "", hint ? hint : "",
				hint ? "'?)" : "");
	}
	return 0;
}

/* 1 if msg starts "FILE:LINE:COL: " (FILE without ": " in it). */
static int has_position(const char *msg)
{
	for (const char *p = msg; *p && !(p[0] == ':' && p[1] == ' '); p++) {
		const char *q = p + 1;

		if (*p != ':' || !isdigit((unsigned char)*q))
			continue;
		while (isdigit((unsigned char)*q))
			q++;
		if (*q++ != ':' || !isdigit((unsigned char)*q))
			continue;
		while (isdigit((unsigned char)*q))
			q++;
		if (q[0] == ':' && q[1] == ' ')
			return 1;
	}
	return 0;
}

/* Each run entry's settings, checked by the stage itself (it may read its files). An
 * error without a position ("policy.yaml: No such file or directory") gets the run
 * entry's, so the user knows which line named the file. */
static int check_run_confs(struct ld *l, const struct rdm_spec_stage *st)
{
	for (size_t i = 0; i < rdm_yseq_size(st->run); i++) {
		const struct rdm_ynode *it = rdm_yseq_item(st->run, i), *conf = NULL;
		const char *name = rdm_ynode_scalar(it);
		const struct rdm_stage_ops *ops;
		void *c;

		if (rdm_ynode_kind(it) == RDM_YMAP) {
			conf = it;
			name = rdm_ynode_scalar(rdm_ymap_get(it, "name"));
		}
		ops = rdm_stage_find(name);
		if (l->len)
			l->err[0] = '\0';
		c = ops->conf_new(l->doc, conf, l->err, l->len);
		if (!c) {
			if (!l->len || !l->err[0]) {
				rdm_yerr(l->doc, it, l->err, l->len, "stage '%s': bad settings",
					 name);
			} else if (!has_position(l->err)) {
				char msg[512];

				snprintf(msg, sizeof(msg), "%s", l->err);
				rdm_yerr(l->doc, it, l->err, l->len, "%s", msg);
			}
			return -EINVAL;
		}
		ops->conf_free(c);
	}
	return 0;
}

static int load_stage(struct ld *l, struct rdm_chain_spec *s, size_t idx, size_t count)
{
	static const char *const keys[] = {"name",    "run",	   "replicas",
					   "workers", "placement", "transport",
					   "ingress", "egress",	   NULL};
	const struct rdm_ynode *m =
	    rdm_yseq_item(rdm_ymap_get(rdm_ydoc_root(l->doc), "stages"), idx);
	struct rdm_spec_stage *st = &s->stages[idx];
	const struct rdm_ynode *v;
	const char *name;
	char what[32];
	uint64_t u;
	int rc;

	snprintf(what, sizeof(what), "stage %zu", idx + 1);
	rc = rdm_yexpect(l->doc, m, what, RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, m, keys, l->err, l->len);
	if (rc)
		return rc;
	st->map = m;

	v = rdm_ymap_get(m, "name");
	if (!v)
		return rdm_yerr(l->doc, m, l->err, l->len, "stage %zu: missing key 'name'",
				idx + 1);
	rc = rdm_ymap_str(l->doc, m, "name", NULL, &name, l->err, l->len);
	if (rc)
		return rc;
	if (!valid_stage_name(name))
		return rdm_yerr(l->doc, v, l->err, l->len,
				"bad stage name '%s' (expected 1 to %d of A-Z a-z 0-9 _ . -)", name,
				RDM_PLAN_STAGE_NAME_MAX);
	for (size_t j = 0; j < idx; j++)
		if (!strcmp(s->stages[j].name, name))
			return rdm_yerr(l->doc, v, l->err, l->len,
					"duplicate stage name '%s' (first at line %d)", name,
					rdm_ynode_line(s->stages[j].map));
	rc = rdm_ystrdup(l->doc, name, &st->name, l->err, l->len);
	if (rc)
		return rc;

	st->run = rdm_ymap_get(m, "run");
	if (!st->run)
		return rdm_yerr(l->doc, m, l->err, l->len,
				"stage '%s': missing key 'run' (its data-plane stages)", st->name);
	rc = load_run(l, st);
	if (rc)
		return rc;

	st->replicas_at = rdm_ymap_get(m, "replicas");
	rc = rdm_ymap_u64(l->doc, m, "replicas", 1, RDM_PLAN_MAX_REPLICAS, 1, &u, l->err, l->len);
	if (rc)
		return rc;
	st->replicas = (int)u;
	rc = rdm_ymap_u64(l->doc, m, "workers", 1, RDM_PLAN_MAX_WORKERS, 1, &u, l->err, l->len);
	if (rc)
		return rc;
	st->workers = (int)u;
	rc = load_placement(l, rdm_ymap_get(m, "placement"), st);
	if (rc)
		return rc;

	st->transport = RDM_TRANSPORT_AUTO;
	if ((v = rdm_ymap_get(m, "transport"))) {
		const char *t;

		if (idx + 1 == count)
			return rdm_yerr(l->doc, key_node(m, "transport"), l->err, l->len,
					"transport: stage '%s' is the last stage, there is no next "
					"stage to reach",
					st->name);
		rc = rdm_ymap_str(l->doc, m, "transport", NULL, &t, l->err, l->len);
		if (rc)
			return rc;
		if (!strcmp(t, "tcp"))
			st->transport = RDM_TRANSPORT_TCP;
		else if (!strcmp(t, "rdma"))
			st->transport = RDM_TRANSPORT_RDMA;
		else if (strcmp(t, "auto"))
			return rdm_yerr(l->doc, v, l->err, l->len,
					"unknown transport '%s' (expected tcp, rdma or auto)", t);
	}

	if ((st->ingress = rdm_ymap_get(m, "ingress")) && idx != 0)
		return rdm_yerr(l->doc, key_node(m, "ingress"), l->err, l->len,
				"ingress: only the first stage ('%s') takes ingress",
				s->stages[0].name);
	if ((st->egress = rdm_ymap_get(m, "egress")) && idx + 1 != count)
		return rdm_yerr(l->doc, key_node(m, "egress"), l->err, l->len,
				"egress: only the last stage takes egress (stage %zu of %zu)",
				idx + 1, count);
	return 0;
}

/* The directory of path, absolute and without a trailing slash; caller frees. */
static char *abs_dir(const char *path)
{
	const char *slash;
	char cwd[4096], *out;
	int base;

	while (path[0] == '.' && path[1] == '/')
		for (path += 2; *path == '/'; path++)
			;
	slash = strrchr(path, '/');
	base = slash ? (int)(slash - path) : 0;
	if (path[0] == '/')
		return strndup(path, base ? (size_t)base : 1);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	if (!slash)
		return strdup(cwd);
	if (asprintf(&out, "%s%s%.*s", cwd, strcmp(cwd, "/") ? "/" : "", base, path) < 0)
		return NULL;
	return out;
}

/* Checks the sections node/config.c reads (chain, transport, flows, and each stage's
 * ingress and egress) with node/config.c itself: renders a scratch chain with one
 * replica per stage, loads it, and reports an error at the node of chain.yaml it came
 * from. */
static int check_with_chain_loader(struct ld *l, const struct rdm_chain_spec *s)
{
	struct rdm_replica *reps = calloc((size_t)s->n_stages, sizeof(*reps));
	const char *tmp = getenv("TMPDIR");
	char path[512], msg[512];
	struct rdm_chain_conf conf;
	struct sb b;
	int fd = -1, rc, line, col, off = 0;

	sb_init(&b, 1);
	if (!reps) {
		rc = oom(l);
		goto out;
	}
	for (int i = 0; i < s->n_stages; i++) {
		set_ids(&reps[i], s, i, 1);
		set_listen(&reps[i], "127.0.0.1", 0, (uint16_t)(1024 + i));
	}
	rc = render(&b, s, NULL, reps, s->n_stages, l->err, l->len);
	if (rc)
		goto out;
	snprintf(path, sizeof(path), "%s/rdmesh-plan-check-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	errno = 0;
	fd = mkstemp(path);
	if (fd < 0 || write(fd, b.buf, b.len) != (ssize_t)b.len) {
		rc = -(errno ? errno : EIO);
		rdm_yerr(l->doc, NULL, l->err, l->len, "cannot check: scratch file %s: %s", path,
			 strerror(-rc));
		goto out;
	}
	rc = rdm_chain_load(path, &conf, msg, sizeof(msg));
	if (rc == 0) {
		rdm_chain_free(&conf);
		goto out;
	}
	/* msg is "PATH:LINE:COL: text" or "PATH: text". */
	if (strncmp(msg, path, strlen(path)) || msg[strlen(path)] != ':') {
		snprintf(l->err, l->len, "%s", msg);
		goto out;
	}
	const char *rest = msg + strlen(path) + 1;
	if (sscanf(rest, "%d:%d: %n", &line, &col, &off) == 2 && off > 0)
		rdm_yerr(l->doc, sb_origin(&b, line, col), l->err, l->len, "%s", rest + off);
	else
		rdm_yerr(l->doc, NULL, l->err, l->len, "%s", rest[0] == ' ' ? rest + 1 : rest);
out:
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	sb_fini(&b);
	free(reps);
	return rc;
}

static int load_spec(struct ld *l, struct rdm_chain_spec *s, const char *path)
{
	static const char *const keys[] = {"chain", "transport", "flows", "stages", NULL};
	const struct rdm_ynode *root = rdm_ydoc_root(l->doc), *stages;
	const char *name;
	uint64_t u;
	size_t n;
	int rc;

	if (!root)
		return rdm_yerr(l->doc, NULL, l->err, l->len,
				"empty document (expected a mapping with 'chain' and 'stages')");
	rc = rdm_yexpect(l->doc, root, "top level", RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, root, keys, l->err, l->len);
	if (rc)
		return rc;
	s->chain = rdm_ymap_get(root, "chain");
	if (!s->chain)
		return rdm_yerr(l->doc, root, l->err, l->len, "missing key 'chain'");
	stages = rdm_ymap_get(root, "stages");
	if (!stages)
		return rdm_yerr(l->doc, root, l->err, l->len, "missing key 'stages'");
	s->transport = rdm_ymap_get(root, "transport");
	s->flows = rdm_ymap_get(root, "flows");
	rc = rdm_yexpect(l->doc, stages, "stages", RDM_YSEQ, l->err, l->len);
	if (rc)
		return rc;
	n = rdm_yseq_size(stages);
	if (n == 0)
		return rdm_yerr(l->doc, stages, l->err, l->len, "'stages' must not be empty");
	if (n > RDM_PLAN_MAX_STAGES)
		return rdm_yerr(l->doc, stages, l->err, l->len, "too many stages (at most %d)",
				RDM_PLAN_MAX_STAGES);
	s->stages = calloc(n, sizeof(*s->stages));
	s->dir = abs_dir(path);
	if (!s->stages || !s->dir)
		return oom(l);
	for (size_t i = 0; i < n; i++) {
		s->n_stages = (int)(i + 1);
		rc = load_stage(l, s, i, n);
		if (rc)
			return rc;
	}
	rc = check_with_chain_loader(l, s);
	for (int i = 0; !rc && i < s->n_stages; i++)
		rc = check_run_confs(l, &s->stages[i]);
	if (rc)
		return rc;
	/* Both checked by the chain loader above. */
	rc = rdm_ymap_str(l->doc, s->chain, "name", NULL, &name, l->err, l->len);
	if (!rc)
		rc = rdm_ystrdup(l->doc, name, &s->name, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_u64(l->doc, s->chain, "spi", 1, 0xFFFFFF, 1, &u, l->err, l->len);
	if (!rc)
		s->spi = (uint32_t)u;
	return rc;
}

int rdm_chain_spec_load(const char *path, struct rdm_chain_spec *out, char *err, size_t errlen)
{
	struct rdm_chain_spec s;
	struct ld l = {.err = err, .len = errlen};
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&s, 0, sizeof(s));
	l.doc = rdm_ydoc_load(path, err, errlen);
	if (!l.doc)
		return errno ? -errno : -EINVAL;
	s.doc = l.doc;
	rc = rdm_ystrdup(l.doc, path, &s.file, l.err, l.len);
	if (!rc)
		rc = load_spec(&l, &s, path);
	if (rc) {
		rdm_chain_spec_free(&s);
		return rc;
	}
	*out = s;
	return 0;
}

void rdm_chain_spec_free(struct rdm_chain_spec *s)
{
	if (!s)
		return;
	for (int i = 0; s->stages && i < s->n_stages; i++) {
		struct rdm_spec_stage *st = &s->stages[i];

		for (int j = 0; st->labels && j < st->n_labels; j++) {
			free(st->labels[j].key);
			free(st->labels[j].value);
		}
		free(st->labels);
		free(st->name);
	}
	free(s->stages);
	free(s->file);
	free(s->dir);
	free(s->name);
	rdm_ydoc_free(s->doc);
	memset(s, 0, sizeof(*s));
}

int rdm_chain_spec_find(const struct rdm_chain_spec *s, const char *name)
{
	for (int i = 0; s && name && i < s->n_stages; i++)
		if (!strcmp(s->stages[i].name, name))
			return i;
	return -1;
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

		for (int k = 0; k < rack->n_nodes && !found; k++) {
			const char *v = rdm_rack_label(&rack->nodes[k], st->labels[i].key);

			found = v && !strcmp(v, st->labels[i].value);
		}
		if (!found)
			return perr(c, st->labels[i].at,
				    "stage '%s': impossible placement: no node in %s has label "
				    "'%s: %s'",
				    st->name, rack->file, st->labels[i].key, st->labels[i].value);
	}
	for (int k = 0; k < rack->n_nodes; k++) {
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

/* The lowest port of the rack's range no placed replica uses on node k's data IP (nodes
 * may share one, on loopback), or 0 when all are taken. */
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
		for (int k = 0; k < nn; k++) {
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

			for (int k = 0; k < nn && w + 80 < sizeof(why); k++) {
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
		set_listen(r, rack->nodes[best].data, rack->nodes[best].data_family != AF_INET,
			   best_port);
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
	free(p);
}

/* An empty plan for rack and spec, with room for counts[] replicas per stage (counts
 * NULL: the spec's); down copied from old_down when given. NULL on out of memory. */
static struct rdm_plan *plan_alloc(const struct rdm_rack *rack, const struct rdm_chain_spec *spec,
				   const int *counts, const unsigned char *old_down)
{
	struct rdm_plan *p = calloc(1, sizeof(*p));
	int total = 0;

	if (!p)
		return NULL;
	p->rack = rack;
	p->spec = spec;
	p->stage_replicas = calloc((size_t)spec->n_stages, sizeof(int));
	p->down = calloc((size_t)rack->n_nodes, 1);
	if (!p->stage_replicas || !p->down)
		goto err;
	for (int s = 0; s < spec->n_stages; s++) {
		p->stage_replicas[s] = counts ? counts[s] : spec->stages[s].replicas;
		total += p->stage_replicas[s];
	}
	if (old_down)
		memcpy(p->down, old_down, (size_t)rack->n_nodes);
	p->replicas = calloc((size_t)total, sizeof(*p->replicas));
	if (!p->replicas)
		goto err;
	p->n_replicas = total;
	for (int s = 0, i = 0; s < spec->n_stages; s++)
		for (int n = 1; n <= p->stage_replicas[s]; n++, i++) {
			set_ids(&p->replicas[i], spec, s, n);
			p->replicas[i].node = -1;
		}
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

	c.p = plan_alloc(rack, spec, NULL, NULL);
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
	c.p = plan_alloc(old->rack, old->spec, counts, old->down);
	free(counts);
	if (!c.p)
		return nomem(err, errlen);
	keep_placed(c.p, old);
	/* Only the scaled stage is checked: the others keep what they have. */
	return finish(&c, replicas > old->stage_replicas[s] ? s : INT32_MAX);
}

/* A copy of old with node k's down flag set to down. */
static struct rdm_plan *with_node(const struct rdm_plan *old, int k, int down)
{
	struct rdm_plan *p = plan_alloc(old->rack, old->spec, old->stage_replicas, old->down);

	if (!p)
		return NULL;
	keep_placed(p, old);
	p->down[k] = (unsigned char)down;
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

struct rdm_plan *rdm_plan_rebase(const struct rdm_rack *rack, const struct rdm_chain_spec *spec,
				 const int *counts, const unsigned char *down,
				 const struct rdm_replica *keep, int n_keep, char *err,
				 size_t errlen)
{
	struct pctx c = {.positions = 1, .err = err, .len = errlen};
	int *used = calloc((size_t)rack->n_nodes, sizeof(int));

	if (!used)
		return nomem(err, errlen);
	for (int s = 0; counts && s < spec->n_stages; s++)
		if (counts[s] < 1 || counts[s] > RDM_PLAN_MAX_REPLICAS) {
			snprintf(err, errlen, "stage '%s': %d replicas is out of range (1..%d)",
				 spec->stages[s].name, counts[s], RDM_PLAN_MAX_REPLICAS);
			free(used);
			errno = EINVAL;
			return NULL;
		}
	c.p = plan_alloc(rack, spec, counts, down);
	if (!c.p) {
		free(used);
		return nomem(err, errlen);
	}
	/* A kept replica stays on its node and port while the node is up, carries the
	 * stage's labels, has the cores, and no other kept replica took the port. */
	for (int i = 0; i < c.p->n_replicas; i++) {
		struct rdm_replica *r = &c.p->replicas[i];
		const struct rdm_spec_stage *st = &spec->stages[r->stage];

		for (int j = 0; j < n_keep; j++) {
			const struct rdm_replica *o = &keep[j];
			int k = o->node, taken = 0;

			if (strcmp(o->id, r->id))
				continue;
			if (k < 0 || k >= rack->n_nodes || (down && down[k]) ||
			    !labels_match(&rack->nodes[k], st) ||
			    used[k] + st->workers > rack->nodes[k].capacity ||
			    o->port < rack->port_first || o->port > rack->port_last)
				break;
			for (int q = 0; q < i; q++)
				taken |= c.p->replicas[q].node >= 0 &&
					 c.p->replicas[q].port == o->port &&
					 !strcmp(rack->nodes[c.p->replicas[q].node].data,
						 rack->nodes[k].data);
			if (taken)
				break;
			r->node = k;
			r->port = o->port;
			set_listen(r, rack->nodes[k].data, rack->nodes[k].data_family != AF_INET,
				   o->port);
			used[k] += st->workers;
			break;
		}
	}
	free(used);
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
	return finish(&c, INT32_MAX);
}
