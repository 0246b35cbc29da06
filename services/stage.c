/* The stage registry: every stage by name (services/stage.h). */
#include "services/stage.h"

#include <string.h>

static const struct rdm_stage_ops *const registry[] = {&rdm_stage_stamp,    &rdm_stage_tag,
						       &rdm_stage_identity, &rdm_stage_dpi,
						       &rdm_stage_policy,   &rdm_stage_flowlog};
static const char *const names[] = {"stamp", "tag", "identity", "dpi", "policy", "flowlog", NULL};

_Static_assert(sizeof(registry) / sizeof(registry[0]) + 1 == sizeof(names) / sizeof(names[0]),
	       "every registered stage has a name entry");

const struct rdm_stage_ops *rdm_stage_find(const char *name)
{
	for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++)
		if (!strcmp(registry[i]->name, name))
			return registry[i];
	return NULL;
}

const char *const *rdm_stage_names(void)
{
	return names;
}
