/* The policy stage's rule set: parsing a policy (a file, or a mapping inline in the
 * chain) and matching a flow's state against its ordered rules. Kept apart from the
 * stage (services/policy.c), which owns flows, caching, verdicts and replies (built by
 * services/policy_reply.c).
 *
 * A policy:
 *   default: allow          # allow | deny | reject | log: the action when no rule matches
 *   reevaluate: false       # on reload, re-decide flows already decided
 *   pending_packets: 16     # packets a flow may pass while its decision waits for L7
 *   rules:
 *     - name: block-x       # unique, 1..255 bytes
 *       match: {...}        # tenant user group app category dst port proto host
 *       action: reject
 *
 * Every given match field must match (AND); a list matches when any item does (OR).
 * A rule without match keys matches everything. Relative list files ({file: x}) are
 * resolved against the directory of the YAML file that names them. */
#ifndef RDM_POLICY_RULES_H
#define RDM_POLICY_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "transport/frame.h"

struct rdm_ydoc;
struct rdm_ynode;

enum rdm_pol_action { RDM_POL_ALLOW = 0, RDM_POL_DENY, RDM_POL_REJECT, RDM_POL_LOG };

/* Bits of rdm_pol_rule.fields: which match keys a rule has. */
enum {
	RDM_PM_TENANT = 1u << 0,
	RDM_PM_USER = 1u << 1,
	RDM_PM_GROUP = 1u << 2,
	RDM_PM_APP = 1u << 3,
	RDM_PM_CATEGORY = 1u << 4,
	RDM_PM_DST = 1u << 5,
	RDM_PM_PORT = 1u << 6,
	RDM_PM_PROTO = 1u << 7,
	RDM_PM_HOST = 1u << 8,
};
/* The fields that need DPI's state; a rule with one of them can be undecidable. */
#define RDM_PM_L7 (RDM_PM_APP | RDM_PM_CATEGORY | RDM_PM_HOST)

struct rdm_pol_cidr {
	uint8_t family; /* 4 or 6 */
	uint8_t bits;
	uint8_t addr[16]; /* host bits zero */
};

struct rdm_pol_ports {
	uint16_t lo, hi;
};

/* An open-addressed set of lowercase host names (or suffixes, without the "*."). */
struct rdm_pol_hset {
	char **slot;
	size_t cap, n; /* cap is 0 or a power of two */
};

struct rdm_pol_strs {
	char **v;
	size_t n;
};

struct rdm_pol_rule {
	char *name;
	uint8_t name_len;
	uint8_t action;	 /* enum rdm_pol_action */
	uint32_t fields; /* RDM_PM_* */
	struct rdm_pol_strs tenant, user, group, app, category;
	struct rdm_pol_cidr *dst;
	size_t n_dst;
	struct rdm_pol_ports *port;
	size_t n_port;
	uint8_t proto[32]; /* bitmap of IP protocol numbers */
	struct rdm_pol_hset host_exact, host_suffix;
};

struct rdm_policy {
	uint8_t default_action;
	int reevaluate;
	uint32_t pending_packets;
	uint32_t generation; /* unique per loaded policy in this process */
	struct rdm_pol_rule *rules;
	size_t n_rules;
	char *path; /* the file it was read from; NULL when inline */
};

/* What a rule is matched against: the frame's identity and L7 fields, and the flow's
 * key as its initiator sent it (NULL when the packet has none: then dst, port and
 * proto never match). l7_final: a missing L7 field is a non-match even if DPI is not
 * done (the flow's pending budget is spent, or the flow was already decided). */
struct rdm_pol_facts {
	const struct rdm_frame *f;
	const struct rdm_flow_key *key;
	int l7_final;
	/* DPI saw the flow only from its middle (RDM_FF_DPI_LOST): what it says of the
	 * application, category and host may be wrong, so they count as unknown, never
	 * final, and a rule that needs them leaves the flow pending. */
	int l7_untrusted;
};

/* Reads the policy file at path. NULL with errno set and "FILE:LINE:COL: message" (or
 * "FILE: message") in err. The caller owns the result. */
struct rdm_policy *rdm_policy_load(const char *path, char *err, size_t errlen);

/* Builds a policy from the mapping map of document d (a stage's inline policy).
 * extra_keys (NULL-terminated, may be NULL) are keys of map the caller handles and
 * the policy ignores. base_dir resolves relative list files. As rdm_policy_load. */
struct rdm_policy *rdm_policy_from_yaml(const struct rdm_ydoc *d, const struct rdm_ynode *map,
					const char *const extra_keys[], const char *base_dir,
					char *err, size_t errlen);

/* Frees p; accepts NULL. */
void rdm_policy_free(struct rdm_policy *p);

/* Result of rdm_policy_eval. */
#define RDM_POL_DECIDED 0
#define RDM_POL_PENDING 1

/* Runs the rules in order over x. RDM_POL_DECIDED with *rule_id = the index of the
 * first matching rule + 1 (0: no rule matched, the default applies), or
 * RDM_POL_PENDING when a rule that cannot be decided yet (it needs L7 state that has
 * not arrived) comes before the first rule that matches. */
int rdm_policy_eval(const struct rdm_policy *p, const struct rdm_pol_facts *x, uint32_t *rule_id);

/* The action of rule_id (0: the default). */
enum rdm_pol_action rdm_policy_action(const struct rdm_policy *p, uint32_t rule_id);

/* The name of rule_id ("default" for 0), owned by p, and its length. */
const char *rdm_policy_rule_name(const struct rdm_policy *p, uint32_t rule_id, uint8_t *len);

/* "allow", "deny", "reject" or "log". */
const char *rdm_pol_action_name(enum rdm_pol_action a);

#endif
