/* tag: writes a fixed identity (tenant, user, groups) into every frame, for traffic
 * whose identity is known from where it enters (a site's ingress, a tenant's VLAN).
 * Frames that already carry a field keep it. Config:
 *   - name: tag
 *     tenant: acme          # at least one of tenant, user, groups
 *     user: branch-42
 *     groups: [branch, emea] */
#include "services/stage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/yaml.h"

struct tag_conf {
	char *tenant, *user;
	char *groups[RDM_MAX_GROUPS];
	int n_groups;
};

struct tag_rt {
	const struct tag_conf *c;
	uint64_t tagged;
};

static void tag_conf_free(void *p)
{
	struct tag_conf *c = p;

	if (!c)
		return;
	free(c->tenant);
	free(c->user);
	for (int i = 0; i < c->n_groups; i++)
		free(c->groups[i]);
	free(c);
}

/* A string that fits a TLV: 1..255 bytes. */
static int tag_str(const struct rdm_ydoc *d, const struct rdm_ynode *n, char **out, char *err,
		   size_t len)
{
	const char *s;

	if (rdm_yget_str(d, n, &s, err, len) < 0)
		return -EINVAL;
	if (!*s || strlen(s) > RDM_STR_MAX)
		return rdm_yerr(d, n, err, len, "must be 1 to %d bytes", RDM_STR_MAX);
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static void *tag_conf_new(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err,
			  size_t errlen)
{
	static const char *const keys[] = {"name", "tenant", "user", "groups", NULL};
	struct tag_conf *c = calloc(1, sizeof(*c));
	const struct rdm_ynode *v;

	if (!c) {
		snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
		return NULL;
	}
	if (!n) {
		rdm_yerr(d, NULL, err, errlen, "stage tag needs tenant, user or groups");
		goto err;
	}
	if (rdm_ymap_check_keys(d, n, keys, err, errlen) < 0)
		goto err;
	if ((v = rdm_ymap_get(n, "tenant")) && tag_str(d, v, &c->tenant, err, errlen) < 0)
		goto err;
	if ((v = rdm_ymap_get(n, "user")) && tag_str(d, v, &c->user, err, errlen) < 0)
		goto err;
	if ((v = rdm_ymap_get(n, "groups"))) {
		if (rdm_yexpect(d, v, "groups", RDM_YSEQ, err, errlen) < 0)
			goto err;
		if (rdm_yseq_size(v) > RDM_MAX_GROUPS) {
			rdm_yerr(d, v, err, errlen, "at most %d groups", RDM_MAX_GROUPS);
			goto err;
		}
		for (size_t i = 0; i < rdm_yseq_size(v); i++) {
			if (tag_str(d, rdm_yseq_item(v, i), &c->groups[c->n_groups], err, errlen) <
			    0)
				goto err;
			c->n_groups++;
		}
	}
	if (!c->tenant && !c->user && !c->n_groups) {
		rdm_yerr(d, n, err, errlen, "stage tag needs tenant, user or groups");
		goto err;
	}
	return c;
err:
	tag_conf_free(c);
	return NULL;
}

static void *tag_init(const void *conf, const struct rdm_stage_env *env)
{
	struct tag_rt *rt = calloc(1, sizeof(*rt));

	if (rt)
		rt->c = conf;
	return rt;
}

static void tag_deinit(void *rt)
{
	free(rt);
}

static struct rdm_str S(const char *s) {
	return (struct rdm_str){s, (uint8_t)strlen(s)};
}

static void
tag_process(void *p, struct rdm_frame *const *f, int n, int *verdict)
{
	struct tag_rt *rt = p;
	const struct tag_conf *c = rt->c;

	/* The strings live in the conf, which outlives every batch. */
	for (int i = 0; i < n; i++) {
		if (c->tenant && !(f[i]->present & RDM_F_TENANT)) {
			f[i]->tenant = S(c->tenant);
			f[i]->present |= RDM_F_TENANT;
		}
		if (c->user && !(f[i]->present & RDM_F_USER)) {
			f[i]->user = S(c->user);
			f[i]->present |= RDM_F_USER;
		}
		if (c->n_groups && !(f[i]->present & RDM_F_GROUPS)) {
			for (int g = 0; g < c->n_groups; g++)
				f[i]->groups[g] = S(c->groups[g]);
			f[i]->n_groups = (uint8_t)c->n_groups;
			f[i]->present |= RDM_F_GROUPS;
		}
		rt->tagged++;
		verdict[i] = RDM_STAGE_PASS;
	}
}

static void tag_report(void *p, rdm_stage_emit emit, void *arg)
{
	emit(arg, "tagged", ((struct tag_rt *)p)->tagged);
}

const struct rdm_stage_ops rdm_stage_tag = {
    .name = "tag",
    .conf_new = tag_conf_new,
    .conf_free = tag_conf_free,
    .init = tag_init,
    .deinit = tag_deinit,
    .process = tag_process,
    .report = tag_report,
};
