/* The per-worker flow table that stateful stages keep (dpi, policy, flowlog). A flow is
 * keyed by its 5-tuple in either direction: the first packet seen fixes the initiator,
 * and both directions find the one entry. Memory is allocated once, for max_flows
 * entries; a full table evicts its least recently used flow (closed TCP flows first), or,
 * when told to refuse new flows (flows.when_full: refuse-new), takes no new flow until
 * one ends.
 * Idle flows expire by protocol: TCP after tcp_idle_ms, or tcp_closed_ms once RST or a
 * FIN each way was seen; UDP after udp_idle_ms; anything else after other_idle_ms.
 * A packet refreshes its flow's clock, but moves the flow to the back of its class's
 * queue only when the last move was at least 1/64 of the class's timeout ago: a busy
 * flow costs no list work per packet. So a flow may end up to 1/64 of its timeout after
 * it went idle (about 4.7 s of TCP's default 300 s), and eviction takes the least
 * recently used flow to within as much.
 * Not thread-safe: each worker owns its tables. */
#ifndef RDM_FLOWTABLE_H
#define RDM_FLOWTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "transport/frame.h"

/* The chain's `flows:` settings; zero fields take the defaults below. */
struct rdm_flow_conf {
	uint32_t max_flows;	/* default 65536 */
	uint32_t tcp_idle_ms;	/* default 300000 */
	uint32_t tcp_closed_ms; /* default 5000 */
	uint32_t udp_idle_ms;	/* default 60000 */
	uint32_t other_idle_ms; /* default 30000 */
	uint8_t refuse_new;	/* full: refuse new flows instead of evicting (default 0) */
};

enum rdm_flow_end {
	RDM_FLOW_END_TIMEOUT = 0, /* idle past its timeout */
	RDM_FLOW_END_CLOSED,	  /* TCP ended (RST, or FIN both ways) and its linger passed */
	RDM_FLOW_END_EVICTED,	  /* the table was full and a new flow needed the entry */
	RDM_FLOW_END_SHUTDOWN,	  /* the table is being freed */
};

#define RDM_IPPROTO_TCP 6

/* TCP flags tracked per direction (the TCP header's bits). */
#define RDM_TCP_FIN 0x01
#define RDM_TCP_SYN 0x02
#define RDM_TCP_RST 0x04
#define RDM_TCP_ACK 0x10

struct rdm_flow {
	struct rdm_flow_key key;       /* as the initiator sent it: src is the client */
	uint64_t hash;		       /* rdm_flow_hash(&key), same for both directions */
	uint64_t first_ns, last_ns;    /* the caller's clock (CLOCK_MONOTONIC) */
	uint64_t packets[2], bytes[2]; /* [0] initiator to responder, [1] back */
	uint8_t tcp_flags[2];	       /* every TCP flag seen each way, ORed */
	/* Private to the table. */
	uint64_t gen; /* unique in the process; 0 while the entry is free */
	uint8_t cls;
	uint32_t next_hash, prev_lru, next_lru;
	uint64_t moved_ns; /* when it last moved to the back of its queue */
};

/* Called once for every flow that leaves the table, before its entry is reused. The
 * flow and its data are valid during the call. */
typedef void (*rdm_flow_end_cb)(void *arg, struct rdm_flow *f, enum rdm_flow_end why);

struct rdm_flowtab_stats {
	uint64_t flows; /* in the table now */
	uint64_t max;	/* its bound */
	uint64_t peak;	/* most flows at once */
	uint64_t created;
	uint64_t timeouts; /* RDM_FLOW_END_TIMEOUT */
	uint64_t closed;   /* RDM_FLOW_END_CLOSED */
	uint64_t evicted;  /* RDM_FLOW_END_EVICTED */
	uint64_t refused;  /* new flows refused by a full table (refuse_new) */
};

struct rdm_flowtab;

/* Defaults for the zero fields of c, in place. */
void rdm_flow_conf_defaults(struct rdm_flow_conf *c);

/* A table for c->max_flows flows (defaults applied to a copy of c), each with
 * data_size bytes of caller data, zeroed when the flow is created. end may be NULL.
 * NULL with errno set. */
struct rdm_flowtab *rdm_flowtab_new(const struct rdm_flow_conf *c, size_t data_size,
				    rdm_flow_end_cb end, void *arg);

/* Ends every flow (RDM_FLOW_END_SHUTDOWN) and frees the table; accepts NULL. */
void rdm_flowtab_free(struct rdm_flowtab *t);

/* The flow of k without counting or creating anything; NULL if absent. */
struct rdm_flow *rdm_flowtab_find(struct rdm_flowtab *t, const struct rdm_flow_key *k,
				  uint64_t hash, int *dir);

/* Remembers flow f (NULL: nothing), in direction dir, as this table's hint in hints (NULL:
 * nothing). */
void rdm_flowtab_hint(const struct rdm_flowtab *t, struct rdm_flow_hint *hints,
		      const struct rdm_flow *f, int dir);

/* What the look-up by hint reads of a table, inline: every table starts with it. */
struct rdm_flowtab_base {
	uint8_t *mem; /* the entries, stride bytes each */
	size_t stride;
	uint32_t max_flows;
	uint32_t id;	     /* unique in the process, from 1 */
	unsigned hint;	     /* which of a frame's hints (rdm_frame.hints) is this table's */
	uint64_t move_ns[4]; /* per timeout class (rdm_flow.cls): how often a flow moves */
};

/* rdm_flowtab_find_hinted's look-up when the hint does not hold; and, in sanitized
 * builds, its check of a hint that does (a mismatch aborts). */
struct rdm_flow *rdm_flowtab__find_miss(struct rdm_flowtab *t, const struct rdm_flow_key *k,
					uint64_t hash, int *dir, struct rdm_flow_hint *hints);
void rdm_flowtab__hint_check(struct rdm_flowtab *t, const struct rdm_flow_key *k, uint64_t hash,
			     const struct rdm_flow *f, int dir);

/* rdm_flowtab_find, first trying the frame's hint for this table (hints: a frame's
 * rdm_frame.hints, or NULL): the entry it names while that still holds the flow it was
 * given for; else it looks the flow up and hints it. The caller passes hints only with
 * the key they were given for. Sanitized builds (make unit-san) check every hint taken
 * against the look-up it saves: a frame that kept hints after its key changed stops the
 * tests. */
static inline __attribute__((always_inline)) struct rdm_flow *
rdm_flowtab_find_hinted(struct rdm_flowtab *t, const struct rdm_flow_key *k, uint64_t hash,
			int *dir, struct rdm_flow_hint *hints)
{
	const struct rdm_flowtab_base *b = (const struct rdm_flowtab_base *)t;
	const struct rdm_flow_hint *h = hints ? &hints[b->hint] : NULL;

	if (h && h->tab == b->id && h->idx < b->max_flows) {
		struct rdm_flow *f = (struct rdm_flow *)(b->mem + (size_t)h->idx * b->stride);

		if (f->gen == h->gen) {
			*dir = h->dir;
#ifdef __SANITIZE_ADDRESS__
			rdm_flowtab__hint_check(t, k, hash, f, *dir);
#endif
			return f;
		}
	}
	return rdm_flowtab__find_miss(t, k, hash, dir, hints);
}

/* rdm_flowtab_track_found in full: what the inline common case leaves. */
struct rdm_flow *rdm_flowtab__track_slow(struct rdm_flowtab *t, struct rdm_flow *f,
					 const struct rdm_flow_key *k, uint64_t hash,
					 uint32_t bytes, uint8_t tcp_flags, uint64_t now_ns,
					 int *dir, int *created);

/* rdm_flowtab_track for a caller that has looked first: f and *dir are what
 * rdm_flowtab_find(t, k, hash, dir) returned, with nothing changed in t since. Inline
 * for most packets: one of a known flow that adds no TCP flag (nor is a SYN) while its
 * flow need not move in its queue is counted here, as the full call would count it. */
static inline __attribute__((always_inline)) struct rdm_flow *
rdm_flowtab_track_found(struct rdm_flowtab *t, struct rdm_flow *f, const struct rdm_flow_key *k,
			uint64_t hash, uint32_t bytes, uint8_t tcp_flags, uint64_t now_ns, int *dir,
			int *created)
{
	const struct rdm_flowtab_base *b = (const struct rdm_flowtab_base *)t;

	if (!f ||
	    (k->proto == RDM_IPPROTO_TCP &&
	     ((tcp_flags & RDM_TCP_SYN) ||
	      (f->tcp_flags[*dir] | tcp_flags) != f->tcp_flags[*dir])) ||
	    now_ns - f->moved_ns >= b->move_ns[f->cls])
		return rdm_flowtab__track_slow(t, f, k, hash, bytes, tcp_flags, now_ns, dir,
					       created);
	if (created)
		*created = 0;
	f->last_ns = now_ns;
	f->packets[*dir]++;
	f->bytes[*dir] += bytes;
	return f;
}

/* Finds the flow of a packet with key k and hash (rdm_flow_hash(k)), creating it when
 * absent (*created = 1), evicting when the table is full. Counts the packet (bytes,
 * TCP flags) in its direction, refreshes the idle timer, and sets *dir to 0 when k is
 * the initiator's direction and 1 when it is the reply's. created may be NULL. A SYN
 * (without ACK) on a closed TCP flow ends it and starts a new one. NULL only for a new
 * flow when the table is full and refuses new flows (counted in refused). Inline: the
 * call of a wrapper with eight arguments costs as much as the look-up it wraps. */
static inline __attribute__((always_inline)) struct rdm_flow *
rdm_flowtab_track(struct rdm_flowtab *t, const struct rdm_flow_key *k, uint64_t hash,
		  uint32_t bytes, uint8_t tcp_flags, uint64_t now_ns, int *dir, int *created)
{
	return rdm_flowtab_track_found(t, rdm_flowtab_find(t, k, hash, dir), k, hash, bytes,
				       tcp_flags, now_ns, dir, created);
}

/* rdm_flowtab_track_found after rdm_flowtab_find_hinted: a flow it creates (or starts
 * anew) is hinted in hints too. */
static inline __attribute__((always_inline)) struct rdm_flow *
rdm_flowtab_track_found_hinted(struct rdm_flowtab *t, struct rdm_flow *f,
			       const struct rdm_flow_key *k, uint64_t hash, uint32_t bytes,
			       uint8_t tcp_flags, uint64_t now_ns, int *dir, int *created,
			       struct rdm_flow_hint *hints)
{
	struct rdm_flow *g =
	    rdm_flowtab_track_found(t, f, k, hash, bytes, tcp_flags, now_ns, dir, created);

	if (g != f)
		rdm_flowtab_hint(t, hints, g, *dir);
	return g;
}

/* rdm_flowtab_track with the frame's hints (rdm_flowtab_find_hinted); a flow it creates
 * is hinted too. */
static inline __attribute__((always_inline)) struct rdm_flow *
rdm_flowtab_track_hinted(struct rdm_flowtab *t, const struct rdm_flow_key *k, uint64_t hash,
			 uint32_t bytes, uint8_t tcp_flags, uint64_t now_ns, int *dir, int *created,
			 struct rdm_flow_hint *hints)
{
	return rdm_flowtab_track_found_hinted(t, rdm_flowtab_find_hinted(t, k, hash, dir, hints), k,
					      hash, bytes, tcp_flags, now_ns, dir, created, hints);
}

/* Ends flows idle past their timeout at now_ns, at most budget of them (0: no limit).
 * Returns how many ended. */
int rdm_flowtab_expire(struct rdm_flowtab *t, uint64_t now_ns, int budget);

/* Calls fn for every flow in the table (timeout class by class, least recently moved
 * first within each). fn must not add or remove flows. */
void rdm_flowtab_foreach(struct rdm_flowtab *t, void (*fn)(void *arg, struct rdm_flow *f),
			 void *arg);

/* The caller's data of a flow (data_size bytes, 16-byte aligned). */
void *rdm_flow_data(struct rdm_flow *f);

void rdm_flowtab_get_stats(const struct rdm_flowtab *t, struct rdm_flowtab_stats *s);

#endif
