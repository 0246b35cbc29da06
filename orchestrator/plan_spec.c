/* Loading chain.yaml (the chain the orchestrator deploys) and checking it as strictly as
 * the static chain config, before anything is deployed (orchestrator/plan.h). */
#include "orchestrator/plan_int.h"
#include "lib/yaml.h"
#include "services/stage.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* pods: {deployment: NAME, namespace: NS}: pods that join with a token for this stage
 * are its replicas (one each), beside its `replicas` on hosts; the pod orchestrator's
 * deployment owns their count. Absent: hosts only. */
static int load_pods(struct ld *l, const struct rdm_ynode *v, struct rdm_spec_stage *st)
{
	static const char *const keys[] = {"deployment", "namespace", NULL};
	int rc;

	if (!v)
		return 0;
	st->pods = 1;
	st->pod_deployment = st->name;
	st->pod_namespace = "default";
	if (rdm_ynode_is_null(v))
		return 0;
	rc = rdm_yexpect(l->doc, v, "pods", RDM_YMAP, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_check_keys(l->doc, v, keys, l->err, l->len);
	if (!rc)
		rc = rdm_ymap_str(l->doc, v, "deployment", st->name, &st->pod_deployment, l->err,
				  l->len);
	if (!rc)
		rc = rdm_ymap_str(l->doc, v, "namespace", "default", &st->pod_namespace, l->err,
				  l->len);
	if (!rc && (!rdm_node_name_ok(st->pod_deployment) || !rdm_node_name_ok(st->pod_namespace)))
		rc = rdm_yerr(l->doc, v, l->err, l->len,
			      "pods: deployment and namespace are names (A-Z a-z 0-9 _ . -)");
	return rc;
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
	static const char *const keys[] = {"name",	"run",	     "replicas", "workers",
					   "placement", "transport", "ingress",	 "egress",
					   "pods",	"poll",	     NULL};
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

	rc = load_pods(l, rdm_ymap_get(m, "pods"), st);
	if (rc)
		return rc;
	st->replicas_at = rdm_ymap_get(m, "replicas");
	/* A pod-backed stage may have no host replica: its pods are its replicas. */
	rc = rdm_ymap_u64(l->doc, m, "replicas", st->pods ? 0 : 1, RDM_PLAN_MAX_REPLICAS,
			  st->pods ? 0 : 1, &u, l->err, l->len);
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

	if ((v = rdm_ymap_get(m, "poll"))) {
		const char *p;

		rc = rdm_ymap_str(l->doc, m, "poll", NULL, &p, l->err, l->len);
		if (rc)
			return rc;
		if (rdm_poll_mode_parse(p, &st->poll) < 0)
			return rdm_yerr(l->doc, v, l->err, l->len,
					"unknown poll '%s' (expected sleep, adaptive or busy)", p);
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
	struct rdm_plan__text t;
	int fd = -1, rc, line, col, off = 0;

	rdm_plan__text_init(&t, 1);
	if (!reps) {
		rc = oom(l);
		goto out;
	}
	for (int i = 0; i < s->n_stages; i++) {
		rdm_plan__set_ids(&reps[i], s, i, 1);
		rdm_plan__set_listen(&reps[i], "127.0.0.1", 0, (uint16_t)(1024 + i));
	}
	rc = rdm_plan__render(&t, s, NULL, reps, s->n_stages, l->err, l->len);
	if (rc)
		goto out;
	snprintf(path, sizeof(path), "%s/rdmesh-plan-check-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	errno = 0;
	fd = mkstemp(path);
	if (fd < 0 || write(fd, t.sb.buf, t.sb.len) != (ssize_t)t.sb.len) {
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
		rdm_yerr(l->doc, rdm_plan__text_origin(&t, line, col), l->err, l->len, "%s",
			 rest + off);
	else
		rdm_yerr(l->doc, NULL, l->err, l->len, "%s", rest[0] == ' ' ? rest + 1 : rest);
out:
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	rdm_plan__text_fini(&t);
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

/* Loads the chain at path (text: its content, NULL: read the file). */
static int spec_from(const char *path, const char *text, struct rdm_chain_spec *out, char *err,
		     size_t errlen)
{
	struct rdm_chain_spec s;
	struct ld l = {.err = err, .len = errlen};
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&s, 0, sizeof(s));
	errno = 0;
	l.doc = text ? rdm_ydoc_parse_string(path, text, err, errlen)
		     : rdm_ydoc_load(path, err, errlen);
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

int rdm_chain_spec_load(const char *path, struct rdm_chain_spec *out, char *err, size_t errlen)
{
	return spec_from(path, NULL, out, err, errlen);
}

int rdm_chain_spec_parse(const char *path, const char *text, struct rdm_chain_spec *out, char *err,
			 size_t errlen)
{
	return spec_from(path, text, out, err, errlen);
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
