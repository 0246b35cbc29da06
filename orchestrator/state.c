/* The orchestrator's persisted state (orchestrator/state.h): saving it atomically and
 * restoring it with the position of any error. */
#include "orchestrator/state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/yaml.h"
#include "orchestrator/plan.h"

void rdm_state_free(struct rdm_orch_state *s)
{
	free(s->file);
	free(s->chain);
	free(s->down);
	free(s->replicas);
	free(s->held);
	free(s->spent);
	memset(s, 0, sizeof(*s));
}

const struct rdm_state_token *rdm_state_spent(const struct rdm_orch_state *s, const char *id)
{
	for (int i = 0; i < s->n_spent; i++)
		if (!strcmp(s->spent[i].id, id))
			return &s->spent[i];
	return NULL;
}

int rdm_state_spend(struct rdm_orch_state *s, const char *id, const char *pod, int64_t until,
		    int64_t now)
{
	struct rdm_state_token *t = malloc(sizeof(*t) * (size_t)(s->n_spent + 1));
	int n = 0;

	if (!t)
		return -ENOMEM;
	for (int i = 0; i < s->n_spent; i++)
		if (s->spent[i].until > now)
			t[n++] = s->spent[i];
	memset(&t[n], 0, sizeof(t[n]));
	snprintf(t[n].id, sizeof(t[n].id), "%s", id);
	snprintf(t[n].pod, sizeof(t[n].pod), "%s", pod);
	t[n++].until = until;
	free(s->spent);
	s->spent = t;
	s->n_spent = n;
	return 0;
}

static int get_name(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key,
		    char *out, size_t outlen, char *err, size_t errlen);

/* spent: [{token: ID, pod: NAME, until: UNIX}] */
static int load_spent(const struct rdm_ydoc *d, const struct rdm_ynode *seq,
		      struct rdm_orch_state *s, char *err, size_t errlen)
{
	static const char *const keys[] = {"token", "pod", "until", NULL};
	size_t n = rdm_yseq_size(seq);
	int rc = 0;

	s->spent = calloc(n ? n : 1, sizeof(*s->spent));
	if (!s->spent)
		return -ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		const struct rdm_ynode *it = rdm_yseq_item(seq, i);
		struct rdm_state_token *t = &s->spent[s->n_spent];
		const char *id = NULL;
		uint64_t u = 0;

		rc = rdm_yexpect(d, it, "spent entry", RDM_YMAP, err, errlen);
		if (!rc)
			rc = rdm_ymap_check_keys(d, it, keys, err, errlen);
		if (!rc)
			rc = rdm_ymap_str(d, it, "token", "", &id, err, errlen);
		if (!rc && (strlen(id) != 16 || strspn(id, "0123456789abcdef") != 16))
			rc = rdm_yerr(d, it, err, errlen, "token: 16 hex digits expected");
		if (!rc)
			rc = get_name(d, it, "pod", t->pod, sizeof(t->pod), err, errlen);
		if (!rc)
			rc = rdm_ymap_u64(d, it, "until", 0, INT64_MAX, 0, &u, err, errlen);
		if (!rc) {
			snprintf(t->id, sizeof(t->id), "%s", id);
			t->until = (int64_t)u;
			s->n_spent++;
		}
	}
	return rc;
}

/* A name as rack.yaml allows one (letters, digits, _ . -), into out. */
static int get_name(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key,
		    char *out, size_t outlen, char *err, size_t errlen)
{
	const char *v;
	int rc = rdm_ymap_str(d, map, key, NULL, &v, err, errlen);

	if (rc)
		return rc;
	if (!v)
		return rdm_yerr(d, map, err, errlen, "'%s' is required", key);
	if (!rdm_node_name_ok(v) || strlen(v) >= outlen)
		return rdm_yerr(d, rdm_ymap_get(map, key), err, errlen, "%s: '%s' is not a name",
				key, v);
	snprintf(out, outlen, "%s", v);
	return 0;
}

static int load_down(const struct rdm_ydoc *d, const struct rdm_ynode *seq,
		     struct rdm_orch_state *s, char *err, size_t errlen)
{
	static const char *const keys[] = {"node", "why", NULL};
	size_t n = rdm_yseq_size(seq);
	int rc;

	s->down = calloc(n ? n : 1, sizeof(*s->down));
	if (!s->down)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct rdm_ynode *it = rdm_yseq_item(seq, i);
		struct rdm_state_down *dn = &s->down[s->n_down];
		const char *why;

		rc = rdm_yexpect(d, it, "down entry", RDM_YMAP, err, errlen);
		if (!rc)
			rc = rdm_ymap_check_keys(d, it, keys, err, errlen);
		if (!rc)
			rc = get_name(d, it, "node", dn->node, sizeof(dn->node), err, errlen);
		if (!rc)
			rc = rdm_ymap_str(d, it, "why", "dead", &why, err, errlen);
		if (rc)
			return rc;
		if (!strcmp(why, "dead"))
			dn->why = RDM_DOWN_DEAD;
		else if (!strcmp(why, "drained"))
			dn->why = RDM_DOWN_DRAINED;
		else
			return rdm_yerr(d, rdm_ymap_get(it, "why"), err, errlen,
					"why: '%s' is not dead or drained", why);
		s->n_down++;
	}
	return 0;
}

/* A list of {id, node, port} (replicas, or held) into *out and *n_out. */
static int load_replicas(const struct rdm_ydoc *d, const struct rdm_ynode *seq,
			 struct rdm_state_replica **out, int *n_out, char *err, size_t errlen)
{
	static const char *const keys[] = {"id", "node", "port", NULL};
	size_t n = rdm_yseq_size(seq);
	int rc;

	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct rdm_ynode *it = rdm_yseq_item(seq, i);
		struct rdm_state_replica *r = &(*out)[*n_out];
		uint64_t port;

		rc = rdm_yexpect(d, it, "replica", RDM_YMAP, err, errlen);
		if (!rc)
			rc = rdm_ymap_check_keys(d, it, keys, err, errlen);
		if (!rc)
			rc = get_name(d, it, "id", r->id, sizeof(r->id), err, errlen);
		if (!rc)
			rc = get_name(d, it, "node", r->node, sizeof(r->node), err, errlen);
		if (!rc)
			rc = rdm_ymap_u64(d, it, "port", 1, 65535, 0, &port, err, errlen);
		if (!rc && !port)
			rc = rdm_yerr(d, it, err, errlen, "'port' is required");
		for (int j = 0; !rc && j < *n_out; j++)
			if (!strcmp((*out)[j].id, r->id))
				rc = rdm_yerr(d, rdm_ymap_get(it, "id"), err, errlen,
					      "replica '%s' twice", r->id);
		if (rc)
			return rc;
		r->port = (uint16_t)port;
		r->line = rdm_ynode_line(it);
		r->col = rdm_ynode_col(it);
		(*n_out)++;
	}
	return 0;
}

/* Reads the state document d (from path, or the store's key path) into *s. */
static int load_doc(struct rdm_ydoc *d, const char *path, struct rdm_orch_state *s, char *err,
		    size_t errlen)
{
	static const char *const keys[] = {"version",  "epoch", "chain", "down",
					   "replicas", "held",	"spent", NULL};
	const struct rdm_ynode *root, *seq;
	const char *chain = NULL;
	uint64_t v = 0;
	int rc;

	root = rdm_ydoc_root(d);
	/* An empty file (or only comments) has no root node: no position to report. */
	rc = root ? rdm_yexpect(d, root, "state", RDM_YMAP, err, errlen)
		  : rdm_yerr(d, NULL, err, errlen, "state: the file is empty");
	if (!rc)
		rc = rdm_ymap_check_keys(d, root, keys, err, errlen);
	if (!rc && !rdm_ymap_get(root, "version"))
		rc = rdm_yerr(d, root, err, errlen, "no version (this orchestrator reads %d)",
			      RDM_STATE_VERSION);
	if (!rc)
		rc = rdm_ymap_u64(d, root, "version", 1, UINT32_MAX, 0, &v, err, errlen);
	if (!rc && v != RDM_STATE_VERSION)
		rc = rdm_yerr(d, rdm_ymap_get(root, "version"), err, errlen,
			      "version %" PRIu64 " (this orchestrator reads %d)", v,
			      RDM_STATE_VERSION);
	if (!rc)
		rc = rdm_ymap_u64(d, root, "epoch", 1, INT64_MAX, 0, &s->epoch, err, errlen);
	if (!rc && !s->epoch)
		rc = rdm_yerr(d, root, err, errlen, "no epoch");
	if (!rc)
		rc = rdm_ymap_str(d, root, "chain", NULL, &chain, err, errlen);
	if (!rc && (!chain || chain[0] != '/'))
		rc = rdm_yerr(d, chain ? rdm_ymap_get(root, "chain") : root, err, errlen,
			      "chain: an absolute path is required");
	if (!rc && !(s->chain = strdup(chain)))
		rc = -ENOMEM;
	seq = rdm_ymap_get(root, "down");
	if (!rc && seq && !rdm_ynode_is_null(seq)) {
		rc = rdm_yexpect(d, seq, "down", RDM_YSEQ, err, errlen);
		if (!rc)
			rc = load_down(d, seq, s, err, errlen);
	}
	seq = rdm_ymap_get(root, "replicas");
	if (!rc && seq && !rdm_ynode_is_null(seq)) {
		rc = rdm_yexpect(d, seq, "replicas", RDM_YSEQ, err, errlen);
		if (!rc)
			rc = load_replicas(d, seq, &s->replicas, &s->n_replicas, err, errlen);
	}
	seq = rdm_ymap_get(root, "held");
	if (!rc && seq && !rdm_ynode_is_null(seq)) {
		rc = rdm_yexpect(d, seq, "held", RDM_YSEQ, err, errlen);
		if (!rc)
			rc = load_replicas(d, seq, &s->held, &s->n_held, err, errlen);
	}
	seq = rdm_ymap_get(root, "spent");
	if (!rc && seq && !rdm_ynode_is_null(seq)) {
		rc = rdm_yexpect(d, seq, "spent", RDM_YSEQ, err, errlen);
		if (!rc)
			rc = load_spent(d, seq, s, err, errlen);
	}
	if (!rc && !(s->file = strdup(path)))
		rc = -ENOMEM;
	rdm_ydoc_free(d);
	if (rc) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "%s: out of memory", path);
		rdm_state_free(s);
	}
	return rc;
}

int rdm_state_load(const char *path, struct rdm_orch_state *s, char *err, size_t errlen)
{
	struct rdm_ydoc *d;

	memset(s, 0, sizeof(*s));
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		snprintf(err, errlen, "%s: no such file", path);
		return -ENOENT;
	}
	errno = 0;
	d = rdm_ydoc_load(path, err, errlen);
	if (!d)
		return errno && errno != EINVAL ? -errno : -EINVAL;
	return load_doc(d, path, s, err, errlen);
}

int rdm_state_parse(const char *name, const char *text, struct rdm_orch_state *s, char *err,
		    size_t errlen)
{
	struct rdm_ydoc *d;

	memset(s, 0, sizeof(*s));
	errno = 0;
	d = rdm_ydoc_parse_string(name, text, err, errlen);
	if (!d)
		return errno && errno != EINVAL ? -errno : -EINVAL;
	return load_doc(d, name, s, err, errlen);
}

static int utf8_seq(const unsigned char *s, uint32_t *cp)
{
	static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
	int n = s[0] < 0x80		       ? 1
		: s[0] >= 0xc2 && s[0] <= 0xdf ? 2
		: (s[0] & 0xf0) == 0xe0	       ? 3
		: s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
					       : 0;
	uint32_t c;

	if (!n)
		return 0;
	c = n == 1 ? s[0] : s[0] & (0x7f >> n);
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min[n] || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	*cp = c;
	return n;
}
static int utf8_ok(const char *s)
{
	uint32_t cp;

	for (int n; *s; s += n)
		if (!(n = utf8_seq((const unsigned char *)s, &cp)))
			return 0;
	return 1;
}
/* A YAML double-quoted scalar of the UTF-8 string s (see utf8_ok), in plain ASCII: '"'
 * and '\\' escaped, control bytes as \xNN, every other code point past ASCII as \uXXXX
 * or \UXXXXXXXX. Escaping them (rather than writing the bytes) keeps the file ASCII and
 * sidesteps what YAML makes of some of them unescaped (U+0085, U+2028 and U+2029 are line
 * breaks there, folded in a quoted scalar). \xNN is only right below 0x80: YAML reads it
 * as a code point, so \xe9 would come back as the two bytes of U+00E9. */
static void put_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	while (*s) {
		unsigned char c = (unsigned char)*s;
		uint32_t cp = 0;
		int n = utf8_seq((const unsigned char *)s, &cp);

		if (n > 1)
			fprintf(f, cp > 0xffff ? "\\U%08" PRIX32 : "\\u%04" PRIX32, cp);
		else if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
		s += n > 1 ? n : 1;
	}
	fputc('"', f);
}

/* Writes s as the state document to f. */
static void format(FILE *f, const struct rdm_orch_state *s)
{
	fprintf(f,
		"# rdmesh orchestrator state: written by `rdmesh orch`, read when it starts (or\n"
		"# takes the lead). Edit only with every orchestrator stopped.\n"
		"version: %d\nepoch: %" PRIu64 "\nchain: ",
		RDM_STATE_VERSION, s->epoch);
	put_quoted(f, s->chain);
	fprintf(f, "\ndown:%s\n", s->n_down ? "" : " []");
	for (int i = 0; i < s->n_down; i++)
		fprintf(f, "  - {node: %s, why: %s}\n", s->down[i].node,
			s->down[i].why == RDM_DOWN_DRAINED ? "drained" : "dead");
	fprintf(f, "replicas:%s\n", s->n_replicas ? "" : " []");
	for (int i = 0; i < s->n_replicas; i++)
		fprintf(f, "  - {id: %s, node: %s, port: %u}\n", s->replicas[i].id,
			s->replicas[i].node, s->replicas[i].port);
	if (s->n_held)
		fprintf(f, "held:\n");
	for (int i = 0; i < s->n_held; i++)
		fprintf(f, "  - {id: %s, node: %s, port: %u}\n", s->held[i].id, s->held[i].node,
			s->held[i].port);
	if (s->n_spent)
		fprintf(f, "spent:\n");
	for (int i = 0; i < s->n_spent; i++)
		fprintf(f, "  - {token: %s, pod: %s, until: %" PRId64 "}\n", s->spent[i].id,
			s->spent[i].pod, s->spent[i].until);
}

/* 0 when s can be written so that it reads back the same, else -EINVAL with why. */
static int writable(const char *path, const struct rdm_orch_state *s, char *err, size_t errlen)
{
	if (s->chain && utf8_ok(s->chain))
		return 0;
	/* YAML text is Unicode: such a path could not be read back byte for byte. */
	snprintf(err, errlen, "%s: %s", path,
		 s->chain ? "the chain file's path is not valid UTF-8" : "state has no chain file");
	return -EINVAL;
}

char *rdm_state_format(const struct rdm_orch_state *s, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (writable("state", s, err, errlen) < 0)
		return NULL;
	f = open_memstream(&text, &len);
	if (!f) {
		snprintf(err, errlen, "state: out of memory");
		return NULL;
	}
	format(f, s);
	if (fclose(f)) {
		snprintf(err, errlen, "state: out of memory");
		free(text);
		return NULL;
	}
	return text;
}

int rdm_state_save(const char *path, const struct rdm_orch_state *s, char *err, size_t errlen)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	FILE *f;
	int fd, rc = writable(path, s, err, errlen);

	if (rc)
		return rc;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	f = fopen(tmp, "w");
	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return rc;
	}
	format(f, s);
	if (fflush(f) || fsync(fileno(f)) < 0)
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		unlink(tmp);
		return rc;
	}
	/* The rename itself is durable once the directory is. */
	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

int rdm_state_set_plan(struct rdm_orch_state *s, const struct rdm_plan *p,
		       const enum rdm_down_why *why)
{
	const struct rdm_rack *rack = p->rack;
	struct rdm_state_replica *reps = calloc((size_t)p->n_replicas + 1, sizeof(*reps));
	struct rdm_state_replica *held = calloc((size_t)p->n_held + 1, sizeof(*held));
	struct rdm_state_down *down = calloc((size_t)rack->n_nodes + 1, sizeof(*down));
	int n_down = 0;

	if (!reps || !held || !down) {
		free(reps);
		free(held);
		free(down);
		return -ENOMEM;
	}
	for (int i = 0; i < p->n_held; i++) {
		snprintf(held[i].id, sizeof(held[i].id), "%s", p->held[i].id);
		snprintf(held[i].node, sizeof(held[i].node), "%s",
			 rack->nodes[p->held[i].node].name);
		held[i].port = p->held[i].port;
	}
	for (int i = 0; i < p->n_replicas; i++) {
		snprintf(reps[i].id, sizeof(reps[i].id), "%s", p->replicas[i].id);
		snprintf(reps[i].node, sizeof(reps[i].node), "%s",
			 rack->nodes[p->replicas[i].node].name);
		reps[i].port = p->replicas[i].port;
	}
	for (int k = 0; k < rack->n_nodes; k++)
		if (p->down[k]) {
			snprintf(down[n_down].node, sizeof(down[n_down].node), "%s",
				 rack->nodes[k].name);
			down[n_down++].why =
			    why && why[k] == RDM_DOWN_DRAINED ? RDM_DOWN_DRAINED : RDM_DOWN_DEAD;
		}
	free(s->replicas);
	free(s->held);
	free(s->down);
	s->replicas = reps;
	s->n_replicas = p->n_replicas;
	s->held = held;
	s->n_held = p->n_held;
	s->down = down;
	s->n_down = n_down;
	return 0;
}

/* "FILE:LINE:COL: " for replica r, or "FILE: " */
static void where(const struct rdm_orch_state *s, const struct rdm_state_replica *r, char *out,
		  size_t len)
{
	if (r && r->line)
		snprintf(out, len, "%s:%d:%d: ", s->file ? s->file : "state", r->line, r->col);
	else
		snprintf(out, len, "%s: ", s->file ? s->file : "state");
}

struct rdm_plan *rdm_state_plan(const struct rdm_orch_state *s, const struct rdm_rack *rack,
				const struct rdm_chain_spec *spec, char *err, size_t errlen)
{
	int *counts = calloc((size_t)spec->n_stages, sizeof(int));
	unsigned char *down = calloc((size_t)rack->n_nodes + 1, 1);
	struct rdm_replica *keep = calloc((size_t)s->n_replicas + 1, sizeof(*keep));
	struct rdm_held *held = calloc((size_t)s->n_held + 1, sizeof(*held));
	struct rdm_plan *p = NULL;
	char at[PATH_MAX + 32];
	int n_held = 0;

	if (!counts || !down || !keep || !held) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		goto out;
	}
	for (int i = 0; i < s->n_down; i++) {
		int k = rdm_rack_find(rack, s->down[i].node);

		if (k < 0) {
			where(s, NULL, at, sizeof(at));
			snprintf(err, errlen, "%sdown node '%s' is not in %s", at, s->down[i].node,
				 rack->file);
			errno = ENOENT;
			goto out;
		}
		down[k] = 1;
	}
	for (int i = 0; i < s->n_replicas; i++) {
		const struct rdm_state_replica *r = &s->replicas[i];
		const char *dash = strrchr(r->id, '-');
		const char *num = dash ? dash + 1 : "";
		char stage[RDM_RACK_NAME_MAX + 1];
		int st, n = 0;

		where(s, r, at, sizeof(at));
		/* N exactly as the plan writes it (decimal, no leading zero): "dpi-01" or
		 * "dpi-1x" would match no replica of the plan and be dropped unseen. */
		if (num[0] >= '1' && num[0] <= '9' && strlen(num) <= 2 &&
		    strspn(num, "0123456789") == strlen(num))
			n = atoi(num);
		keep[i].node = -1;
		if (n >= RDM_PLAN_POD_FIRST && n <= RDM_PLAN_POD_LAST)
			continue; /* a pod's: it comes back by itself (its certificate says) */
		if (n < 1 || n > RDM_PLAN_MAX_REPLICAS) {
			snprintf(err, errlen, "%sreplica id '%s' is not STAGE-N", at, r->id);
			errno = EINVAL;
			goto out;
		}
		snprintf(stage, sizeof(stage), "%.*s", (int)(dash - r->id), r->id);
		st = rdm_chain_spec_find(spec, stage);
		if (st < 0) {
			snprintf(err, errlen, "%sreplica '%s': no stage '%s' in %s", at, r->id,
				 stage, spec->file);
			errno = ENOENT;
			goto out;
		}
		if (n > counts[st])
			counts[st] = n;
		snprintf(keep[i].id, sizeof(keep[i].id), "%s", r->id);
		keep[i].node = rdm_rack_find(rack, r->node); /* -1: placed afresh */
		keep[i].port = r->port;
	}
	for (int st = 0; st < spec->n_stages; st++)
		if (!counts[st])
			counts[st] = spec->stages[st].replicas;
	/* The holds go into the placement: a replica placed afresh must not take the port
	 * of one its node still drains. A hold on a node the rack no longer has is dropped. */
	for (int i = 0; i < s->n_held; i++) {
		const struct rdm_state_replica *h = &s->held[i];
		int k = rdm_rack_find(rack, h->node);

		if (k < 0)
			continue;
		snprintf(held[n_held].id, sizeof(held[0].id), "%s", h->id);
		held[n_held].node = k;
		held[n_held++].port = h->port;
	}
	p = rdm_plan_rebase(rack, spec, counts, down, keep, s->n_replicas, held, n_held, err,
			    errlen);
out:
	free(counts);
	free(down);
	free(keep);
	free(held);
	return p;
}
