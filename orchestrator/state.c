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

#include "node/yaml.h"
#include "orchestrator/plan.h"

int rdm_state_add_op(struct rdm_orch_state *s, const char *op)
{
	char **ops, *dup;

	if (s->n_ops >= RDM_STATE_MAX_OPS)
		return -E2BIG;
	ops = realloc(s->ops, sizeof(*ops) * (size_t)(s->n_ops + 1));
	if (!ops)
		return -ENOMEM;
	s->ops = ops;
	dup = strdup(op);
	if (!dup)
		return -ENOMEM;
	s->ops[s->n_ops++] = dup;
	return 0;
}

void rdm_state_clear_ops(struct rdm_orch_state *s)
{
	for (int i = 0; i < s->n_ops; i++)
		free(s->ops[i]);
	free(s->ops);
	s->ops = NULL;
	s->n_ops = 0;
}

void rdm_state_free(struct rdm_orch_state *s)
{
	rdm_state_clear_ops(s);
	free(s->chain);
	memset(s, 0, sizeof(*s));
}

/* An op is a verb and its words, each a plain name or number: checked when loaded so
 * that a hand-edited file fails at load with its position, not halfway through replay. */
static int op_ok(const char *op)
{
	char verb[16], a[80], b[16], extra[2];
	int n = sscanf(op, "%15s %79s %15s %1s", verb, a, b, extra);

	if (!strcmp(verb, "scale"))
		return n == 3 && strspn(b, "0123456789") == strlen(b);
	if (!strcmp(verb, "dead") || !strcmp(verb, "drain") || !strcmp(verb, "up"))
		return n == 2;
	return 0;
}

int rdm_state_load(const char *path, struct rdm_orch_state *s, char *err, size_t errlen)
{
	static const char *const keys[] = {"version", "epoch", "chain", "ops", NULL};
	struct rdm_ydoc *d;
	const struct rdm_ynode *root, *ops;
	const char *chain;
	uint64_t v;
	int rc;

	memset(s, 0, sizeof(*s));
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		snprintf(err, errlen, "%s: no such file", path);
		return -ENOENT;
	}
	d = rdm_ydoc_load(path, err, errlen);
	if (!d)
		return -EINVAL;
	root = rdm_ydoc_root(d);
	rc = rdm_yexpect(d, root, "state", RDM_YMAP, err, errlen);
	if (!rc)
		rc = rdm_ymap_check_keys(d, root, keys, err, errlen);
	if (!rc)
		rc = rdm_ymap_u64(d, root, "version", 1, UINT32_MAX, 0, &v, err, errlen);
	if (!rc && v != RDM_STATE_VERSION)
		rc = rdm_yerr(d, rdm_ymap_get(root, "version"), err, errlen,
			      "state version %" PRIu64 " (this orchestrator reads %d)", v,
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
	ops = rdm_ymap_get(root, "ops");
	if (!rc && ops && !rdm_ynode_is_null(ops))
		rc = rdm_yexpect(d, ops, "ops", RDM_YSEQ, err, errlen);
	for (size_t i = 0; !rc && ops && !rdm_ynode_is_null(ops) && i < rdm_yseq_size(ops); i++) {
		const struct rdm_ynode *it = rdm_yseq_item(ops, i);
		const char *op;

		rc = rdm_yget_str(d, it, &op, err, errlen);
		if (!rc && !op_ok(op))
			rc = rdm_yerr(d, it, err, errlen,
				      "'%s' is not an operation (scale STAGE N, dead NODE, drain "
				      "NODE, up NODE)",
				      op);
		if (!rc)
			rc = rdm_state_add_op(s, op);
	}
	rdm_ydoc_free(d);
	if (rc) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "%s: out of memory", path);
		rdm_state_free(s);
	}
	return rc;
}

/* A YAML double-quoted scalar: every byte but '"', '\\' and printable ASCII escaped. */
static void put_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

int rdm_state_save(const char *path, const struct rdm_orch_state *s, char *err, size_t errlen)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	FILE *f;
	int fd, rc = 0;

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
	fprintf(f,
		"# rdmesh orchestrator state: written by `rdmesh orch` (to .tmp, then renamed),\n"
		"# read when it starts. Edit only with the orchestrator stopped.\n"
		"version: %d\nepoch: %" PRIu64 "\nchain: ",
		RDM_STATE_VERSION, s->epoch);
	put_quoted(f, s->chain);
	fputs("\nops:", f);
	if (!s->n_ops)
		fputs(" []", f);
	fputc('\n', f);
	for (int i = 0; i < s->n_ops; i++) {
		fputs("  - ", f);
		put_quoted(f, s->ops[i]);
		fputc('\n', f);
	}
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

struct rdm_plan *rdm_state_apply_op(const struct rdm_plan *p, const char *op, char *err,
				    size_t errlen)
{
	char verb[16], a[80];
	int n = 0;

	if (sscanf(op, "%15s %79s %d", verb, a, &n) < 2) {
		snprintf(err, errlen, "'%s' is not an operation", op);
		errno = EINVAL;
		return NULL;
	}
	if (!strcmp(verb, "scale"))
		return rdm_plan_scale(p, a, n, err, errlen);
	if (!strcmp(verb, "dead") || !strcmp(verb, "drain"))
		return rdm_plan_node_down(p, a, err, errlen);
	if (!strcmp(verb, "up"))
		return rdm_plan_node_up(p, a, err, errlen);
	snprintf(err, errlen, "'%s' is not an operation", op);
	errno = EINVAL;
	return NULL;
}
