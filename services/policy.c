/* policy: the chain's firewall, deciding each flow by identity (tenant, user, groups),
 * by what DPI found (app, category, host) and by its 5-tuple, with ordered rules where
 * the first match wins (services/policy_rules.h has the format). Config:
 *   - name: policy
 *     file: policy.yaml      # relative to this chain file's directory; SIGHUP re-reads it
 * or, for a tiny chain, the policy inline (then a reload has nothing to re-read):
 *   - name: policy
 *     default: allow
 *     rules:
 *       - {name: no-telnet, match: {port: 23}, action: reject}
 *
 * Each worker keeps a flow table whose entries hold the flow's decision and a signature
 * of the state it was decided on; a flow is evaluated again only when new state arrives
 * (an L7 field, identity, DPI finishing) or a reload says reevaluate: true.
 *
 * A flow whose decision needs L7 state that has not arrived yet (a rule on app,
 * category or host comes before the first rule that surely matches) is pending: its
 * packets pass, up to pending_packets of them, and it is decided once the state
 * arrives, on that very packet (so a denied SNI stops the ClientHello). After the
 * budget, missing L7 fields count as non-matching. A flow once decided is never
 * pending again; later evaluations treat missing L7 fields the same way.
 *
 * Verdicts: allow and log pass the frame with the VERDICT and RULE TLVs; deny drops
 * it; reject turns it into a reply to its sender (TCP RST, or ICMP administratively
 * prohibited) and drops the rest of the flow, answering the client's later TCP
 * segments with one RST per 100 ms.
 *
 * Fail closed. A refusal (deny, reject) is sticky: new state that arrives later (DPI
 * starting over on a flow it lost) does not decide the flow again; only a reload with
 * reevaluate: true does. When a flow leaves the table before it ends (evicted by a full
 * table, or idle past its timeout) its refusal is kept in a verdict cache sized well
 * above the table (services/vcache.h), and so is a flow still pending its L7 state: the
 * flow coming back mid-stream is refused again from the cache (refused_from_cache), and
 * a pending one, whose inspection was cut off, is denied (undecidable_denied), since
 * DPI would now see it from the middle; so is a flow still waiting for L7 state whose
 * frames say DPI lost it the same way (RDM_FF_DPI_LOST). A TCP SYN starts a new connection and
 * clears what the cache held for its 5-tuple. With flows.when_full: refuse-new a full table takes
 * no new flow: its packets are dropped (flows_refused). */
#include "services/stage.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/byteorder.h"
#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "services/policy_int.h"
#include "services/policy_rules.h"
#include "services/vcache.h"
#include "lib/clock.h"

#define POL_NAME_MAX	  256
#define POL_RST_GAP_NS	  (100ull * 1000000ull)
#define POL_EXPIRE_BUDGET 16
#define POL_TICK_BUDGET	  4096

struct policy_conf {
	struct rdm_policy *pol;
	char *path;  /* the policy file, resolved; NULL when the rules are inline */
	char *where; /* "CHAIN:LINE:COL" of an inline policy, for reload's message */
};

/* A rule's name kept once its policy was replaced, shared by the flows it decided
 * (reload with reevaluate: false keeps their verdict, and frames still name the rule). */
struct pol_name {
	uint32_t refs;
	uint8_t len;
	char s[];
};

enum { PF_NEW = 0, PF_PENDING, PF_DECIDED };

/* Per-flow data in the flow table. */
struct pol_flow {
	uint8_t state;	   /* PF_* */
	uint8_t action;	   /* enum rdm_pol_action, when decided */
	uint8_t stale;	   /* decide again on the next packet (reload with reevaluate) */
	uint8_t cached;	   /* refused again from the verdict cache: no state to decide on */
	uint16_t pending;  /* packets passed while pending */
	uint16_t sig_pres; /* the state it was last evaluated on: which fields */
	uint64_t sig_hash; /* ... and their values */
	uint32_t rule_id;  /* index + 1 in the policy of generation gen; 0 default */
	uint32_t gen;
	uint64_t last_reply_ns; /* 0: never replied */
	struct pol_name *name;	/* set when the policy of gen was replaced */
	/* Per direction, the state id (transport/frame.h state_src) of frames whose state
	 * has the fields and values it was last evaluated on (sig_pres, sig_hash). */
	uint64_t sig_src[2];
	/* The decision last written (pol_token), and the ids of the states it made. */
	uint32_t tok_rule, tok_gen;
	uint8_t tok_action;
	struct rdm_state_memo ids;
};

struct policy_stats {
	uint64_t frames, evaluations, cache_hits, pending_pass, allowed, logged, denied, rejected,
	    replies_tcp_rst, replies_icmp, reply_suppressed, no_key, reloads, refused_new,
	    from_cache, undecidable;
};

struct policy_rt {
	const struct policy_conf *c;
	int worker;
	struct rdm_flowtab *ft;
	struct rdm_vcache *vc; /* refusals and undecided flows that left the table */
	/* Replies and copied rule names of the current batch; reset by each process(). */
	uint8_t *arena;
	size_t arena_cap, arena_used;
	uint64_t *hits; /* [0] default, [i] rule i, of the current policy */
	size_t n_hits;
	struct policy_stats st;
};

/* ---- conf --------------------------------------------------------------------------- */

static void policy_conf_free(void *p)
{
	struct policy_conf *c = p;

	if (!c)
		return;
	rdm_policy_free(c->pol);
	free(c->path);
	free(c->where);
	free(c);
}

/* The directory of the chain file d came from ("." when it names none); caller frees. */
static char *doc_dir(const struct rdm_ydoc *d)
{
	char *dir = strdup(rdm_ydoc_name(d)), *slash;

	if (!dir)
		return NULL;
	if ((slash = strrchr(dir, '/')))
		slash[slash == dir ? 1 : 0] = '\0';
	else
		strcpy(dir, ".");
	return dir;
}

static void *policy_conf_new(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err,
			     size_t errlen)
{
	static const char *const keys[] = {
	    "name", "file", "default", "reevaluate", "pending_packets", "rules", NULL};
	static const char *const extra[] = {"name", NULL};
	struct policy_conf *c = calloc(1, sizeof(*c));
	const struct rdm_ynode *file;
	const char *s;
	char *dir = NULL;

	if (!c || !(dir = doc_dir(d))) {
		snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
		goto err;
	}
	if (!n) {
		rdm_yerr(d, NULL, err, errlen,
			 "stage policy needs 'file' (a policy file) or inline 'rules'");
		goto err;
	}
	if (rdm_ymap_check_keys(d, n, keys, err, errlen) < 0)
		goto err;
	if ((file = rdm_ymap_get(n, "file"))) {
		/* One source of truth: with a file, everything else lives in it. */
		for (size_t i = 2; keys[i]; i++)
			if (rdm_ymap_get(n, keys[i])) {
				for (size_t k = 0; k < rdm_ymap_size(n); k++)
					if (!strcmp(rdm_ynode_scalar(rdm_ymap_key(n, k)), keys[i]))
						rdm_yerr(d, rdm_ymap_key(n, k), err, errlen,
							 "%s: goes in the policy file when 'file' "
							 "is given",
							 keys[i]);
				goto err;
			}
		if (rdm_yget_str(d, file, &s, err, errlen) < 0)
			goto err;
		if (!*s) {
			rdm_yerr(d, file, err, errlen, "file: must not be empty");
			goto err;
		}
		if (s[0] == '/' || !strcmp(dir, "."))
			c->path = strdup(s);
		else if (asprintf(&c->path, "%s/%s", dir, s) < 0)
			c->path = NULL;
		if (!c->path) {
			snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
			goto err;
		}
		if (!(c->pol = rdm_policy_load(c->path, err, errlen)))
			goto err;
	} else {
		if (!rdm_ymap_get(n, "rules") && !rdm_ymap_get(n, "default")) {
			rdm_yerr(d, n, err, errlen,
				 "stage policy needs 'file' (a policy file) or inline 'rules'");
			goto err;
		}
		if (asprintf(&c->where, "%s:%d:%d", rdm_ydoc_name(d), rdm_ynode_line(n),
			     rdm_ynode_col(n)) < 0) {
			c->where = NULL;
			snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
			goto err;
		}
		if (!(c->pol = rdm_policy_from_yaml(d, n, extra, dir, err, errlen)))
			goto err;
	}
	free(dir);
	return c;
err:
	free(dir);
	policy_conf_free(c);
	return NULL;
}

static void *policy_conf_reload(const void *old, char *err, size_t errlen)
{
	const struct policy_conf *o = old;
	struct policy_conf *c;

	if (!o->path) {
		snprintf(err, errlen,
			 "%s: the policy is inline in the chain file: nothing to reload (move it "
			 "to a policy file to reload it)",
			 o->where ? o->where : "policy");
		errno = EOPNOTSUPP;
		return NULL;
	}
	if (!(c = calloc(1, sizeof(*c))) || !(c->path = strdup(o->path))) {
		snprintf(err, errlen, "%s: out of memory", o->path);
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	if (!(c->pol = rdm_policy_load(c->path, err, errlen))) {
		int e = errno;

		policy_conf_free(c);
		errno = e;
		return NULL;
	}
	return c;
}

/* ---- runtime ------------------------------------------------------------------------ */

static void name_put(struct pol_name *nm)
{
	if (nm && --nm->refs == 0)
		free(nm);
}

/* What the verdict cache holds for a flow still pending when it left the table. */
#define VC_PENDING 0xFF

static void on_flow_end(void *arg, struct rdm_flow *fl, enum rdm_flow_end why)
{
	struct policy_rt *rt = arg;
	struct pol_flow *pf = rdm_flow_data(fl);

	/* A flow that may come back (evicted, or idle past its timeout) keeps a refusal,
	 * or the fact that it was never decided; one that ended (RST, FIN) or a table
	 * being freed keeps nothing. */
	if (why == RDM_FLOW_END_EVICTED || why == RDM_FLOW_END_TIMEOUT) {
		if (pf->state == PF_DECIDED &&
		    (pf->action == RDM_POL_DENY || pf->action == RDM_POL_REJECT))
			rdm_vcache_put(rt->vc, fl->hash, pf->action);
		else if (pf->state == PF_PENDING)
			rdm_vcache_put(rt->vc, fl->hash, VC_PENDING);
	}

	name_put(pf->name);
	pf->name = NULL;
}

static void policy_deinit(void *p)
{
	struct policy_rt *rt = p;

	if (!rt)
		return;
	rdm_flowtab_free(rt->ft);
	rdm_vcache_free(rt->vc);
	free(rt->arena);
	free(rt->hits);
	free(rt);
}

static void *policy_init(const void *conf, const struct rdm_stage_env *env)
{
	const struct policy_conf *c = conf;
	struct policy_rt *rt = calloc(1, sizeof(*rt));
	struct rdm_flow_conf fc = {0};

	if (!rt)
		return NULL;
	if (env && env->flows)
		fc = *env->flows;
	rt->c = c;
	rt->worker = env ? env->worker : 0;
	rt->n_hits = c->pol->n_rules + 1;
	rt->hits = calloc(rt->n_hits, sizeof(*rt->hits));
	rt->ft = rdm_flowtab_new(&fc, sizeof(struct pol_flow), on_flow_end, rt);
	rdm_flow_conf_defaults(&fc);
	rt->vc = rdm_vcache_new(fc.max_flows);
	if (!rt->hits || !rt->ft || !rt->vc) {
		int e = rt->ft && rt->vc ? ENOMEM : errno;

		policy_deinit(rt);
		errno = e ? e : ENOMEM;
		return NULL;
	}
	return rt;
}

/* Makes room for n frames' replies and names; on failure the arena stays as it was and
 * arena_take fails for the frames past it. */
static void arena_reset(struct policy_rt *rt, int n)
{
	size_t need = (size_t)n * (POL_REPLY_MAX + POL_NAME_MAX);

	rt->arena_used = 0;
	if (need > rt->arena_cap) {
		uint8_t *a = realloc(rt->arena, need);

		if (a) {
			rt->arena = a;
			rt->arena_cap = need;
		}
	}
}

static uint8_t *arena_take(struct policy_rt *rt, size_t n)
{
	uint8_t *p;

	if (rt->arena_cap - rt->arena_used < n)
		return NULL;
	p = rt->arena + rt->arena_used;
	rt->arena_used += n;
	return p;
}

/* ---- signatures ----------------------------------------------------------------------- */

/* Presence bits of the state rules look at; DPI being done is state too. */
#define SIG_DPI_DONE (1u << 15)

/* Tenant, user, groups, app id, app name, category and host: seven bits in a row. */
_Static_assert(RDM_F_USER == RDM_F_TENANT << 1 && RDM_F_GROUPS == RDM_F_TENANT << 2 &&
		   RDM_F_APP_ID == RDM_F_TENANT << 3 && RDM_F_APP_NAME == RDM_F_TENANT << 4 &&
		   RDM_F_CATEGORY == RDM_F_TENANT << 5 && RDM_F_HOST == RDM_F_TENANT << 6,
	       "sig_pres takes the state's presence bits as one run");

static uint16_t sig_pres(const struct rdm_frame *f)
{
	uint16_t b = (uint16_t)((f->present / RDM_F_TENANT) & 0x7F);

	if ((f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_DPI_DONE))
		b |= SIG_DPI_DONE;
	return b;
}

/* One FNV-1a style step per 8 bytes (the last word overlapping the one before; 4 to 7
 * bytes as two overlapping halves; 1 to 3 as their first, middle and last byte), each
 * word folded down after its multiply: every byte of p[0..n) lands in the hash, at an
 * eighth of the byte-wise form's multiplies. Callers mix lengths in first, so overlaps
 * never alias. */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	if (n == 0)
		return h;
	if (n < 4) { /* its first, middle and last byte are every byte of it */
		h = (h ^ (b[0] | (uint32_t)b[n / 2] << 8 | (uint32_t)b[n - 1] << 16)) *
		    0x100000001b3ull;
		return h ^ h >> 32;
	}
	if (n < 8) {
		h = (h ^ (rdm_get_word32(b) | (uint64_t)rdm_get_word32(b + n - 4) << 32)) *
		    0x100000001b3ull;
		return h ^ h >> 32;
	}
	for (i = 0; i + 8 < n; i += 8) {
		h = (h ^ rdm_get_word(b + i)) * 0x100000001b3ull;
		h ^= h >> 32;
	}
	h = (h ^ rdm_get_word(b + n - 8)) * 0x100000001b3ull;
	return h ^ h >> 32;
}

static uint64_t mix_str(uint64_t h, struct rdm_str s)
{
	h = (h ^ s.len) * 0x100000001b3ull; /* the length first: mix() of its one byte */
	return s.len ? mix(h, s.p, s.len) : h;
}

/* A hash of the values of the fields sig_pres names. */
static uint64_t sig_hash(const struct rdm_frame *f)
{
	uint64_t h = 0xcbf29ce484222325ull;

	if (f->present & RDM_F_TENANT)
		h = mix_str(h, f->tenant);
	if (f->present & RDM_F_USER)
		h = mix_str(h, f->user);
	if (f->present & RDM_F_GROUPS)
		for (int g = 0; g < f->n_groups && g < RDM_MAX_GROUPS; g++)
			h = mix_str(h, f->groups[g]);
	if (f->present & RDM_F_APP_ID) {
		h = mix(h, &f->master_proto, sizeof(f->master_proto));
		h = mix(h, &f->app_proto, sizeof(f->app_proto));
	}
	if (f->present & RDM_F_APP_NAME)
		h = mix_str(h, f->app_name);
	if (f->present & RDM_F_CATEGORY) {
		h = mix(h, &f->category_id, sizeof(f->category_id));
		h = mix_str(h, f->category);
	}
	if (f->present & RDM_F_HOST)
		h = mix_str(h, f->host);
	return h;
}

/* Whether the frame brings state the flow was not evaluated on: a field it lacked, or
 * other values for the same fields. A frame with fewer fields (the reply direction
 * often carries less) is not news. */
static int sig_news(const struct pol_flow *pf, uint16_t pres, uint64_t hash)
{
	if (pres & ~pf->sig_pres)
		return 1;
	return pres == pf->sig_pres && hash != pf->sig_hash;
}

/* Turns f into the reply to its packet; RDM_STAGE_DROP when it gets none. */
static int reply(struct policy_rt *rt, struct rdm_frame *f, struct pol_flow *pf, uint64_t now)
{
	uint8_t *buf = arena_take(rt, POL_REPLY_MAX);
	struct rdm_flow_key k = f->key;
	uint32_t len;
	uint16_t port;
	int rst = 0;

	if (!buf || !f->pkt || !(len = rdm_policy__build_reply(f->pkt, f->pkt_len, buf, &rst))) {
		rt->st.reply_suppressed++;
		return RDM_STAGE_DROP;
	}
	if (pf)
		pf->last_reply_ns = now;
	if (rst)
		rt->st.replies_tcp_rst++;
	else
		rt->st.replies_icmp++;
	if (!(f->present & RDM_F_FLOW_KEY))
		rdm_pkt_flow_key(f->pkt, f->pkt_len, &k);
	/* The reply travels the flow the other way; it still belongs to the same flow. */
	memcpy(f->key.src, k.dst, 16);
	memcpy(f->key.dst, k.src, 16);
	port = k.sport;
	f->key.sport = k.dport;
	f->key.dport = port;
	f->key.family = k.family;
	f->key.proto = k.proto;
	f->present |= RDM_F_FLOW_KEY;
	f->state_src = 0; /* its key turned round */
	f->hints = NULL;
	f->pkt = buf;
	f->pkt_len = len;
	f->tcp_known = 0;
	return RDM_STAGE_REPLY;
}

/* ---- deciding ------------------------------------------------------------------------ */

static uint8_t tlv_verdict(enum rdm_pol_action a)
{
	switch (a) {
	case RDM_POL_ALLOW:
		return RDM_V_ALLOW;
	case RDM_POL_DENY:
		return RDM_V_DENY;
	case RDM_POL_REJECT:
		return RDM_V_REJECT;
	case RDM_POL_LOG:
		return RDM_V_LOG;
	}
	return RDM_V_NONE;
}

/* The state id (transport/frame.h) of a frame whose state was in, once apply wrote
 * decision (a, rule_id) of the current policy into it going in direction dir of flow
 * pf. The same state in and the same decision give the same state out: one id for it
 * per direction, kept while both stay. 0 (unknown) for a packet without a flow, for a
 * rule of a replaced policy (its name is a copy, or another name without memory), or
 * when in is. */
static uint64_t pol_token(const struct policy_rt *rt, struct pol_flow *pf, int dir, uint64_t in,
			  enum rdm_pol_action a, uint32_t rule_id)
{
	uint32_t gen = rt->c->pol->generation;

	if (!in || !pf || pf->name)
		return 0;
	if (pf->tok_action != a || pf->tok_rule != rule_id || pf->tok_gen != gen) {
		pf->tok_action = (uint8_t)a;
		pf->tok_rule = rule_id;
		pf->tok_gen = gen;
		pf->ids = (struct rdm_state_memo){{0, 0}, {0, 0}};
	}
	return rdm_state_memo_id(&pf->ids, dir, in);
}

/* Carries out a decision on f. pf is the flow's data (NULL for a packet without a
 * flow), dir its direction, fresh whether the flow just became rejected (its first
 * rejected packet always gets a reply). */
static int apply(struct policy_rt *rt, struct rdm_frame *f, struct pol_flow *pf, int dir,
		 uint8_t proto, uint32_t rule_id, enum rdm_pol_action a, int fresh, uint64_t now)
{
	const struct rdm_policy *pol = rt->c->pol;
	uint64_t in = f->state_src;
	const char *name;
	uint8_t nlen;

	if (pf && pf->name) {
		/* Decided under a replaced policy: the name's memory may go with the flow
		 * before the batch is sent, so the frame gets its own copy. */
		char *copy = (char *)arena_take(rt, pf->name->len);

		name = copy ? memcpy(copy, pf->name->s, pf->name->len) : "replaced-rule";
		nlen = copy ? pf->name->len : (uint8_t)strlen(name);
	} else {
		name = rdm_policy_rule_name(pol, rule_id, &nlen);
		if (rule_id < rt->n_hits)
			rt->hits[rule_id]++;
	}
	f->verdict = tlv_verdict(a);
	f->verdict_flags = 0;
	f->rule_id = rule_id;
	f->rule = (struct rdm_str){name, nlen};
	f->present |= RDM_F_VERDICT | RDM_F_RULE;
	if (a == RDM_POL_DENY || a == RDM_POL_REJECT) {
		/* The packet stops here; its state goes on as a notice, so the flow log
		 * downstream records the decision and egress accounting sees no loss. */
		rdm_frame_add_flags(f, RDM_FF_NOTICE);
	}
	f->state_src = pol_token(rt, pf, dir, in, a, rule_id);
	switch (a) {
	case RDM_POL_ALLOW:
		rt->st.allowed++;
		return RDM_STAGE_PASS;
	case RDM_POL_LOG:
		rt->st.logged++;
		return RDM_STAGE_PASS;
	case RDM_POL_DENY:
		rt->st.denied++;
		return RDM_STAGE_DROP;
	case RDM_POL_REJECT:
		break;
	}
	rt->st.rejected++;
	if (!fresh && pf) {
		/* Later packets: only the client's TCP segments get RSTs (it may not have
		 * seen one), at a bounded rate; the rest are dropped quietly. */
		if (proto != IPPROTO_TCP || dir != 0)
			return RDM_STAGE_DROP;
		if (pf->last_reply_ns && now - pf->last_reply_ns < POL_RST_GAP_NS) {
			rt->st.reply_suppressed++;
			return RDM_STAGE_DROP;
		}
	}
	return reply(rt, f, pf, now);
}

/* A new entry for a flow the cache knows: refused again, or denied when it left the
 * table undecided. syn: the packet opens a new TCP connection, which clears the cache.
 * 1 when pf is now decided. */
static int from_cache(struct policy_rt *rt, struct rdm_flow *fl, struct pol_flow *pf, int syn)
{
	int action;

	if (syn) {
		rdm_vcache_del(rt->vc, fl->hash);
		return 0;
	}
	action = rdm_vcache_get(rt->vc, fl->hash);
	if (action < 0)
		return 0;
	pf->state = PF_DECIDED;
	pf->cached = 1;
	pf->gen = rt->c->pol->generation;
	pf->rule_id = 0; /* the cache keeps what was decided, not which rule decided it */
	if (action == VC_PENDING) {
		rt->st.undecidable++;
		pf->action = RDM_POL_DENY;
	} else {
		rt->st.from_cache++;
		pf->action = (uint8_t)action;
	}
	return 1;
}

static int decide(struct policy_rt *rt, struct rdm_frame *f, uint64_t now)
{
	const struct rdm_policy *pol = rt->c->pol;
	struct rdm_pol_facts x = {.f = f, .key = NULL, .l7_final = 1};
	struct rdm_flow_key key;
	struct rdm_flow *fl;
	struct pol_flow *pf;
	uint32_t rule;
	uint16_t pres;
	uint64_t hash;
	int dir, eval, fresh, created;
	enum rdm_pol_action a;
	uint8_t tcp;

	rt->st.frames++;
	if (f->present & RDM_F_FLOW_KEY)
		key = f->key;
	else if (!f->pkt || rdm_pkt_flow_key(f->pkt, f->pkt_len, &key) < 0) {
		/* Not IP: no flow to remember, so decide on what the frame says. */
		rt->st.no_key++;
		rt->st.evaluations++;
		rdm_policy_eval(pol, &x, &rule);
		return apply(rt, f, NULL, 0, 0, rule, rdm_policy_action(pol, rule), 1, now);
	}
	tcp = rdm_frame_tcp_flags(f);
	fl = rdm_flowtab_track_hinted(
	    rt->ft, &key,
	    (f->present & RDM_F_FLOW_KEY) ? rdm_frame_flow_hash(f, &f->key) : rdm_flow_hash(&key),
	    f->pkt_len, tcp, now, &dir, &created, (f->present & RDM_F_FLOW_KEY) ? f->hints : NULL);
	if (!fl) {
		rt->st.refused_new++; /* full, and refusing new flows: fail closed */
		rt->st.denied++;
		return RDM_STAGE_DROP;
	}
	pf = rdm_flow_data(fl);
	if (created &&
	    from_cache(rt, fl, pf,
		       key.proto == IPPROTO_TCP && (tcp & RDM_TCP_SYN) && !(tcp & RDM_TCP_ACK)))
		return apply(rt, f, pf, dir, key.proto, pf->rule_id,
			     (enum rdm_pol_action)pf->action, pf->action == RDM_POL_REJECT, now);
	if (f->state_src && f->state_src == pf->sig_src[dir]) {
		pres = pf->sig_pres; /* the state it was evaluated on, known by its id */
		hash = pf->sig_hash;
	} else {
		pres = sig_pres(f);
		hash = sig_hash(f);
		if (pres == pf->sig_pres && hash == pf->sig_hash)
			pf->sig_src[dir] = f->state_src;
	}
	switch (pf->state) {
	case PF_PENDING:
		eval = sig_news(pf, pres, hash) || pf->pending >= pol->pending_packets;
		break;
	case PF_DECIDED:
		/* A refusal is sticky (fail closed): only a reload may decide it again, and
		 * one restored from the cache has no state to be decided on at all. */
		if (pf->action == RDM_POL_DENY || pf->action == RDM_POL_REJECT)
			eval = pf->stale && !pf->cached;
		else
			eval = pf->stale || sig_news(pf, pres, hash);
		break;
	default:
		eval = 1;
	}
	if (!eval) {
		rt->st.cache_hits++;
		if (pf->state == PF_PENDING) {
			pf->pending++;
			rt->st.pending_pass++;
			return RDM_STAGE_PASS;
		}
		return apply(rt, f, pf, dir, key.proto, pf->rule_id,
			     (enum rdm_pol_action)pf->action, 0, now);
	}
	rt->st.evaluations++;
	/* Rules match the flow as its initiator sent it, whichever way this packet goes. */
	x.key = &fl->key;
	x.l7_final = pf->state == PF_DECIDED || pf->pending >= pol->pending_packets;
	x.l7_untrusted = (f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_DPI_LOST);
	pf->sig_pres = pres;
	pf->sig_hash = hash;
	pf->sig_src[dir] = f->state_src;
	pf->sig_src[!dir] = 0;
	if (rdm_policy_eval(pol, &x, &rule) == RDM_POL_PENDING) {
		if ((f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_DPI_LOST)) {
			/* DPI lost this flow before it was final and now sees it from the
			 * middle: what the decision waits for may never come. */
			rt->st.undecidable++;
			pf->state = PF_DECIDED;
			pf->cached = 1;
			pf->action = RDM_POL_DENY;
			pf->rule_id = 0;
			pf->gen = pol->generation;
			return apply(rt, f, pf, dir, key.proto, 0, RDM_POL_DENY, 0, now);
		}
		pf->state = PF_PENDING;
		if (pf->pending < UINT16_MAX)
			pf->pending++;
		rt->st.pending_pass++;
		return RDM_STAGE_PASS;
	}
	a = rdm_policy_action(pol, rule);
	fresh = a == RDM_POL_REJECT && !(pf->state == PF_DECIDED && pf->action == RDM_POL_REJECT);
	pf->state = PF_DECIDED;
	pf->action = (uint8_t)a;
	pf->rule_id = rule;
	pf->gen = pol->generation;
	pf->stale = 0;
	name_put(pf->name);
	pf->name = NULL;
	return apply(rt, f, pf, dir, key.proto, rule, a, fresh, now);
}

static void policy_process(void *p, struct rdm_frame *const *f, int n, int *verdict)
{
	struct policy_rt *rt = p;
	uint64_t now = rdm_now_ns();

	arena_reset(rt, n);
	rdm_flowtab_expire(rt->ft, now, POL_EXPIRE_BUDGET);
	for (int i = 0; i < n; i++) {
		/* A notice from an earlier policy stage: its decision stands. One that
		 * carries a packet is no notice, whatever its flags say. */
		if ((f[i]->present & RDM_F_FLAGS) && (f[i]->flags & RDM_FF_NOTICE) &&
		    f[i]->pkt_len == 0)
			verdict[i] = RDM_STAGE_PASS;
		else
			verdict[i] = decide(rt, f[i], now);
	}
}

/* ---- reload -------------------------------------------------------------------------- */

struct swap_arg {
	const struct rdm_policy *old;
	int reevaluate;
	struct pol_name **names; /* [rule_id] of old, made on first use; NULL: none made */
};

static void swap_flow(void *arg, struct rdm_flow *fl)
{
	struct swap_arg *s = arg;
	struct pol_flow *pf = rdm_flow_data(fl);

	if (pf->state != PF_DECIDED)
		return; /* pending and new flows simply go on under the new rules */
	if (s->reevaluate)
		pf->stale = 1;
	if (pf->name || pf->rule_id == 0 || pf->rule_id > s->old->n_rules)
		return;
	if (s->names && !s->names[pf->rule_id]) {
		const struct rdm_pol_rule *r = &s->old->rules[pf->rule_id - 1];
		struct pol_name *nm = malloc(sizeof(*nm) + r->name_len);

		if (nm) {
			nm->refs = 0;
			nm->len = r->name_len;
			memcpy(nm->s, r->name, r->name_len);
			s->names[pf->rule_id] = nm;
		}
	}
	if (s->names && s->names[pf->rule_id]) {
		pf->name = s->names[pf->rule_id];
		pf->name->refs++;
	} else {
		pf->stale = 1; /* out of memory for its name: decide it again instead */
	}
}

static void policy_conf_swap(void *p, const void *conf)
{
	struct policy_rt *rt = p;
	const struct policy_conf *c = conf;
	struct swap_arg s = {rt->c->pol, c->pol->reevaluate, NULL};
	uint64_t *hits;

	/* The old conf lives until every worker has switched, so its names can be copied
	 * now for the flows that keep their verdicts. */
	s.names = calloc(s.old->n_rules + 1, sizeof(*s.names));
	rdm_flowtab_foreach(rt->ft, swap_flow, &s);
	free(s.names);
	rt->c = c;
	hits = calloc(c->pol->n_rules + 1, sizeof(*hits));
	if (hits) {
		free(rt->hits);
		rt->hits = hits;
		rt->n_hits = c->pol->n_rules + 1;
	} else {
		memset(rt->hits, 0, rt->n_hits * sizeof(*rt->hits));
		if (rt->n_hits > c->pol->n_rules + 1)
			rt->n_hits = c->pol->n_rules + 1;
	}
	rt->st.reloads++;
}

static void policy_tick(void *p, uint64_t now_ns)
{
	struct policy_rt *rt = p;

	rdm_flowtab_expire(rt->ft, now_ns, POL_TICK_BUDGET);
}

static void policy_report(void *p, rdm_stage_emit emit, void *arg)
{
	struct policy_rt *rt = p;
	struct rdm_flowtab_stats fs;
	char name[48];

	emit(arg, "frames", rt->st.frames);
	emit(arg, "evaluations", rt->st.evaluations);
	emit(arg, "cache_hits", rt->st.cache_hits);
	emit(arg, "pending_pass", rt->st.pending_pass);
	emit(arg, "allowed", rt->st.allowed);
	emit(arg, "logged", rt->st.logged);
	emit(arg, "denied", rt->st.denied);
	emit(arg, "rejected", rt->st.rejected);
	emit(arg, "replies_tcp_rst", rt->st.replies_tcp_rst);
	emit(arg, "replies_icmp", rt->st.replies_icmp);
	emit(arg, "reply_suppressed", rt->st.reply_suppressed);
	emit(arg, "no_key", rt->st.no_key);
	emit(arg, "flows_refused", rt->st.refused_new);
	emit(arg, "refused_from_cache", rt->st.from_cache);
	emit(arg, "undecidable_denied", rt->st.undecidable);
	{
		struct rdm_vcache_stats vs;

		rdm_vcache_get_stats(rt->vc, &vs);
		emit(arg, "verdict_cache_active", vs.entries);
		emit(arg, "verdict_cache_forgotten", vs.forgotten);
	}
	if (rt->worker == 0) /* a fact of the policy, not a per-worker count */
		emit(arg, "rules", rt->c->pol->n_rules);
	emit(arg, "reloads", rt->st.reloads);
	rdm_flowtab_get_stats(rt->ft, &fs);
	emit(arg, "flows", fs.flows);
	emit(arg, "flows_evicted", fs.evicted);
	emit(arg, "default_hits", rt->hits[0]);
	for (size_t i = 1; i < rt->n_hits; i++) {
		snprintf(name, sizeof(name), "rule_%zu_hits", i);
		emit(arg, name, rt->hits[i]);
	}
}

const struct rdm_stage_ops rdm_stage_policy = {
    .name = "policy",
    .conf_new = policy_conf_new,
    .conf_free = policy_conf_free,
    .init = policy_init,
    .deinit = policy_deinit,
    .process = policy_process,
    .report = policy_report,
    .conf_reload = policy_conf_reload,
    .conf_swap = policy_conf_swap,
    .tick = policy_tick,
    .keeps_state = 1, /* apply gives frames their state's id (pol_token); replies lose it */
};
