/* Join tokens: what lets a pod that is not in rack.yaml join the mesh (issue I). A token
 * names the stage it may join as, how many pods may use it, and when it expires, and is
 * signed with a key derived from the rack's CA key, so any orchestrator holding the CA
 * (every one that can sign the pod's certificate) checks it without a table of tokens:
 *
 *   rdmj1:STAGE:USES:EXPIRES:ID:MAC
 *
 * USES 1: one pod (a second use is refused; the orchestrator keeps spent ids in its
 * state until they expire); 0: any number of pods until EXPIRES (unix seconds), as a
 * Deployment's pods share one Secret. ID: 16 hex digits, random. MAC: the first 16 bytes,
 * in hex, of HMAC-SHA256 over everything before it, keyed with SHA-256 of a label and
 * the CA's private key (DER). `rdmesh ctl token` makes them from the CA folder. */
#ifndef RDM_JOINTOKEN_H
#define RDM_JOINTOKEN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define RDM_JOIN_TOKEN_MAX 160		/* a token's length, at most */
#define RDM_JOIN_TTL_MAX   (30 * 86400) /* a token lives at most 30 days */
#define RDM_JOIN_ID_LEN	   16

struct rdm_join_token {
	char stage[64];
	int uses; /* 1: one pod; 0: any number until it expires */
	int64_t expires;
	char id[RDM_JOIN_ID_LEN + 1];
};

/* A token for stage (a chain stage's name), uses (0 or 1), valid ttl_s seconds
 * (1..RDM_JOIN_TTL_MAX) from now, signed with the CA in dir (dir/ca.key). Written to out
 * (cap >= RDM_JOIN_TOKEN_MAX + 1). 0, or -errno with the reason in err. */
int rdm_join_token_make(const char *dir, const char *stage, int uses, long ttl_s, char *out,
			size_t cap, char *err, size_t errlen);

/* Checks token (surrounding white space ignored) against the CA in dir at time now: its
 * form, its MAC (compared in constant time), and that it has not expired. 0 with *t
 * filled, or -EACCES (forged, expired), -EINVAL (not a token) or another -errno (the CA
 * key unreadable), with a reason in err that never repeats the token's secret part. */
int rdm_join_token_check(const char *dir, const char *token, time_t now, struct rdm_join_token *t,
			 char *err, size_t errlen);

#endif
