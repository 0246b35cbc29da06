/* Flow contexts (transport/framectx.h): the sender's and the receiver's slots of one
 * connection, and the frames that keep them in step. */
#include "transport/framectx.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/byteorder.h"
#include "lib/mem.h"
#include "transport/frame_int.h"

#define CTX_TLV	 8 /* the CTX TLV: header and its 4-byte value */
#define PART_HDR (RDM_NSH_BASE_LEN + CTX_TLV)

/* A slot's state: the TLVs as they travel (b), and decoded once (f: its state's fields,
 * strings pointing into b; nodes: how many hops' nodes it names), so that a frame that
 * uses it costs a copy of fields, not a decode. */
struct state {
	struct rdm_frame f;
	uint64_t id;  /* unique in the process: frames name the state they took (state_src) */
	uint64_t src; /* sender: the received state the frame that set it had taken, or 0 */
	struct rdm_flow_hint hints[RDM_FLOW_HINTS]; /* receiver: for the frames taking it */
	uint8_t nodes;
	uint8_t split; /* sender: the hops went split when it was set */
	uint32_t len;
	uint8_t b[];
};

#define STICKY_BITS                                                                                \
	(RDM_F_FLOW_KEY | RDM_F_FLOW_ID | RDM_F_TENANT | RDM_F_USER | RDM_F_GROUPS |               \
	 RDM_F_APP_ID | RDM_F_APP_NAME | RDM_F_CATEGORY | RDM_F_HOST | RDM_F_VERDICT |             \
	 RDM_F_FLAGS | RDM_F_RULE | RDM_F_RISK)
/* The state as transport/frame.h keeps it: key to user (EARLY_LEN bytes), then
 * master_proto to n_groups (LATE_LEN, these fields: LATE_BITS), then the groups. */
#define EARLY_LEN (offsetof(struct rdm_frame, master_proto) - offsetof(struct rdm_frame, key))
#define LATE_LEN  (offsetof(struct rdm_frame, groups) - offsetof(struct rdm_frame, master_proto))
_Static_assert(offsetof(struct rdm_frame, user) < offsetof(struct rdm_frame, master_proto) &&
		   offsetof(struct rdm_frame, n_groups) < offsetof(struct rdm_frame, groups),
	       "transport/frame.h keeps the state's fields together, groups last");
#define LATE_BITS                                                                                  \
	(RDM_F_GROUPS | RDM_F_APP_ID | RDM_F_APP_NAME | RDM_F_CATEGORY | RDM_F_HOST |              \
	 RDM_F_VERDICT | RDM_F_FLAGS | RDM_F_RULE | RDM_F_RISK)

struct rdm_ctx_tx {
	struct state *slot[RDM_CTX_SLOTS];
	unsigned used; /* slots holding a state: a reset of none costs nothing */
	uint8_t scratch[RDM_CTX_STATE_MAX];
	struct rdm_ctx_tx_stats own, *st;
};

struct rdm_ctx_rx {
	struct state *slot[RDM_CTX_SLOTS];
	uint8_t pend[RDM_CTX_STATE_MAX]; /* the state PART frames brought so far */
	unsigned pend_len, pend_slot;
	struct state **grave; /* states replaced since the last release */
	unsigned n_grave, cap_grave;
	struct rdm_ctx_rx_stats own, *st;
};

/* A state of the TLVs b[0..len), decoded; NULL with no memory or when they do not
 * decode (*rc then says why). */
static struct state *state_new(const uint8_t *b, unsigned len, int *rc)
{
	struct state *s = calloc(1, sizeof(*s) + len);
	struct rdm_walk wk = {0};

	*rc = -RDM_FERR_CTX;
	if (!s)
		return NULL;
	s->len = len;
	memcpy(s->b, b, len);
	s->f.present = 0;
	s->f.n_groups = 0;
	s->f.n_hops = 0;
	*rc = rdm_frame__walk(&s->f, s->b, 0, len, &wk);
	if (*rc < 0 || (s->f.present & RDM_F_HOPS)) {
		/* A state names hops' nodes; their times are the packet's. */
		if (*rc >= 0)
			*rc = -RDM_FERR_TLV_VALUE;
		free(s);
		return NULL;
	}
	s->nodes = wk.hop_nodes;
	s->split = 0;
	s->id = rdm_frame_state_id();
	s->src = 0;
	return s;
}

/* Two strings are the same: by pointer when they are one, else a word at a time (the
 * last word overlapping the one before), with no library call per packet. */
static inline int str_eq(struct rdm_str a, struct rdm_str b)
{
	const uint8_t *x = (const uint8_t *)a.p, *y = (const uint8_t *)b.p;
	uint32_t i;

	if (a.len != b.len)
		return 0;
	if (x == y || a.len == 0)
		return 1;
	if (a.len < 4) /* its first, middle and last byte are every byte of it */
		return x[0] == y[0] && x[a.len / 2] == y[a.len / 2] && x[a.len - 1] == y[a.len - 1];
	if (a.len < 8)
		return rdm_get_word32(x) == rdm_get_word32(y) &&
		       rdm_get_word32(x + a.len - 4) == rdm_get_word32(y + a.len - 4);
	for (i = 0; i + 8 < a.len; i += 8)
		if (rdm_get_word(x + i) != rdm_get_word(y + i))
			return 0;
	return rdm_get_word(x + a.len - 8) == rdm_get_word(y + a.len - 8);
}

/* 1 when frame f's state is exactly state s's (split: f's hops go split). */
static int same_state(const struct rdm_frame *f, const struct state *s, unsigned split)
{
	const struct rdm_frame *g = &s->f;
	uint32_t pr = f->present & STICKY_BITS;

	if (pr != g->present || s->split != split || (split && s->nodes != f->n_hops))
		return 0;
	if ((pr & RDM_F_FLOW_KEY) && !rdm_flow_key_eq(&f->key, &g->key))
		return 0;
	if ((pr & RDM_F_FLOW_ID) && f->flow_id != g->flow_id)
		return 0;
	for (unsigned i = 0; split && i < s->nodes; i++)
		if (f->hops[i].node != g->hops[i].node)
			return 0;
	if (!(pr & ~(uint32_t)(RDM_F_FLOW_KEY | RDM_F_FLOW_ID)))
		return 1; /* the common case of a bare hop: nothing more to compare */
	if (((pr & RDM_F_TENANT) && !str_eq(f->tenant, g->tenant)) ||
	    ((pr & RDM_F_USER) && !str_eq(f->user, g->user)) ||
	    ((pr & RDM_F_APP_NAME) && !str_eq(f->app_name, g->app_name)) ||
	    ((pr & RDM_F_HOST) && !str_eq(f->host, g->host)) ||
	    ((pr & RDM_F_RULE) && !str_eq(f->rule, g->rule)))
		return 0;
	if ((pr & RDM_F_GROUPS) && f->n_groups != g->n_groups)
		return 0;
	for (unsigned i = 0; (pr & RDM_F_GROUPS) && i < f->n_groups; i++)
		if (!str_eq(f->groups[i], g->groups[i]))
			return 0;
	if ((pr & RDM_F_APP_ID) &&
	    (f->master_proto != g->master_proto || f->app_proto != g->app_proto))
		return 0;
	if ((pr & RDM_F_CATEGORY) &&
	    (f->category_id != g->category_id || !str_eq(f->category, g->category)))
		return 0;
	if ((pr & RDM_F_VERDICT) &&
	    (f->verdict != g->verdict || f->verdict_flags != g->verdict_flags ||
	     f->rule_id != g->rule_id))
		return 0;
	if ((pr & RDM_F_FLAGS) && f->flags != g->flags)
		return 0;
	if ((pr & RDM_F_RISK) && f->risk != g->risk)
		return 0;
	return 1;
}

/* 1 when frame f's state is known to be state s's without comparing fields: f took it
 * unchanged from the received state s was set from, and the hops added since name the
 * same nodes. 0 says nothing (same_state then compares). */
static int same_src(const struct rdm_frame *f, const struct state *s, unsigned split)
{
	if (!f->state_src || f->state_src != s->src || s->split != split ||
	    (f->present & STICKY_BITS) != s->f.present)
		return 0;
	if (split && s->nodes != f->n_hops)
		return 0;
	for (unsigned i = f->state_src_nodes; split && i < s->nodes; i++)
		if (f->hops[i].node != s->f.hops[i].node)
			return 0;
	return 1;
}

/* state_is when f does not name s's source: the fields compared, out of line so that the
 * inline test stays small. */
static __attribute__((noinline)) int state_is_slow(const struct rdm_frame *f, struct state *s,
						   unsigned split)
{
	if (!same_state(f, s, split))
		return 0;
	s->src = f->state_src;
	return 1;
}

/* The sender's test: f's state is s's. A state found the same by its fields makes s
 * known by f's source from then on. With the sanitizers (make unit-san), a state known
 * the same by its source is compared field by field as well, so that a writer that
 * changed a state but kept state_src fails the tests instead of sending a stale state. */
static inline int state_is(const struct rdm_frame *f, struct state *s, unsigned split)
{
	if (same_src(f, s, split)) {
#if defined(__SANITIZE_ADDRESS__)
		if (!same_state(f, s, split)) {
			fprintf(stderr, "framectx: a frame's state changed but kept its source\n");
			abort();
		}
#endif
		return 1;
	}
	return state_is_slow(f, s, split);
}

/* Gives frame f state s's fields, and its flow tables' hints when its key is s's;
 * *nodes says how many hops' nodes it named. */
static void take_state(struct rdm_frame *f, struct state *s, uint8_t *nodes)
{
	const uint32_t kid = RDM_F_FLOW_KEY | RDM_F_FLOW_ID;
	const struct rdm_frame *g = &s->f;
	uint32_t pr = g->present;
	size_t from;

	/* Named only when all of f's state is s's: a frame may carry state TLVs of its own
	 * beside its CTX (no rdmesh sender writes them). Past its key and id, such a frame's
	 * state is s's alone, fields and presence both: a field only the frame had is gone,
	 * never left present with s's empty value (which no encoder can write again). */
	f->state_src = (f->present & STICKY_BITS) ? 0 : s->id;
	f->hints = (pr & RDM_F_FLOW_KEY) ? s->hints : NULL; /* s's key is f's, below */
	f->state_src_nodes = s->nodes;
	f->present = (f->present & ~(STICKY_BITS & ~kid)) | pr;
	for (unsigned i = 0; i < s->nodes; i++)
		f->hops[i].node = g->hops[i].node;
	*nodes = s->nodes;
	if ((pr & kid) == kid && (pr & ~kid)) {
		/* The common case, a flow with more than its key and id: the state from key
		 * to groups (transport/frame.h keeps it together), copied in fixed-size
		 * blocks. The block after the user only when s has a field of it, and of
		 * the groups those used. */
		memcpy(&f->key, &g->key, EARLY_LEN);
		if (pr & LATE_BITS & ~RDM_F_GROUPS)
			memcpy(&f->master_proto, &g->master_proto, LATE_LEN);
		else
			f->n_groups = g->n_groups;
		for (unsigned i = 0; i < g->n_groups; i++)
			f->groups[i] = g->groups[i];
		return;
	}
	if (pr & RDM_F_FLOW_KEY)
		f->key = g->key;
	if (pr & RDM_F_FLOW_ID)
		f->flow_id = g->flow_id;
	if (!(pr & ~kid))
		return; /* a flow's key and id alone */
	/* A state without a flow key or id (no flow of its own): the rest in one copy. */
	from = offsetof(struct rdm_frame, tenant);
	memcpy((uint8_t *)f + from, (const uint8_t *)g + from,
	       offsetof(struct rdm_frame, groups) - from +
		   (size_t)g->n_groups * sizeof(g->groups[0]));
}

struct rdm_ctx_tx *rdm_ctx_tx_new(struct rdm_ctx_tx_stats *st)
{
	struct rdm_ctx_tx *t = rdm_calloc_touched(1, sizeof(*t));

	if (t)
		t->st = st ? st : &t->own;
	return t;
}

void rdm_ctx_tx_reset(struct rdm_ctx_tx *t)
{
	for (unsigned i = 0; t && t->used && i < RDM_CTX_SLOTS; i++) {
		t->used -= t->slot[i] != NULL;
		free(t->slot[i]);
		t->slot[i] = NULL;
	}
}

void rdm_ctx_tx_free(struct rdm_ctx_tx *t)
{
	rdm_ctx_tx_reset(t);
	free(t);
}

static void put_ctx(uint8_t *q, unsigned slot, uint8_t op, uint8_t first)
{
	rdm_put_be16(q, RDM_MD_CLASS);
	q[2] = RDM_TLV_CTX;
	q[3] = 4;
	rdm_put_be16(q + 4, (uint16_t)slot);
	q[6] = op;
	q[7] = first;
}

static void count(struct rdm_ctx_tx *t, uint32_t hdr_len)
{
	t->st->hdr_bytes += hdr_len;
	t->st->hdr_over += hdr_len > RDM_NSH_RFC_HDR;
	if (hdr_len > t->st->hdr_max)
		t->st->hdr_max = hdr_len;
}

static int whole(struct rdm_ctx_tx *t, const struct rdm_frame *f, uint8_t *buf, size_t cap,
		 struct rdm_txframe *out)
{
	int len = rdm_frame_encode_hdr(f, buf, cap);

	if (len < 0)
		return len;
	out[0] = (struct rdm_txframe){buf, (uint32_t)len, f->pkt, f->pkt_len};
	if (t) {
		t->st->whole++;
		count(t, (uint32_t)len);
	}
	return 1;
}

/* Writes a frame of f's fixed header, a CTX TLV (slot, op, first) and the state bytes
 * st[0..n) at q; then the packet's TLVs (sel) when op is not PART. Returns its header's
 * length. */
static int put_frame(const struct rdm_frame *f, unsigned slot, uint8_t op, uint8_t first,
		     const uint8_t *st, unsigned n, unsigned sel, uint8_t *q, size_t cap)
{
	int pl = 0;

	if (cap < PART_HDR + (size_t)n)
		return -EMSGSIZE;
	put_ctx(q + RDM_NSH_BASE_LEN, slot, op, first);
	if (n)
		memcpy(q + PART_HDR, st, n);
	if (op != RDM_CTX_PART) {
		pl = rdm_frame__put_tlvs(f, sel, q + PART_HDR + n, cap - PART_HDR - n);
		if (pl < 0)
			return pl;
	}
	/* A state-only frame carries no packet: its next protocol says none (0). */
	rdm_frame__put_base(f, q, PART_HDR + n + (unsigned)pl,
			    op == RDM_CTX_PART ? 0 : f->next_proto);
	return (int)(PART_HDR + n) + pl;
}

/* Writes the frame of f that uses slot (USE) at q: the fixed header, CTX, SEQ and the
 * hops' times (HOP_NS), written directly: the path every packet but a flow's first
 * takes. Returns the header's length, or -ERANGE when f's hops do not go split (a time
 * more than 2^31 ns from the first: rdm_frame__split_ok). */
static int put_use(const struct rdm_frame *f, unsigned slot, uint8_t *q, size_t cap)
{
	unsigned nh = (f->present & RDM_F_HOPS) ? f->n_hops : 0;
	uint8_t *p = q + PART_HDR;

	if (cap < PART_HDR + 16 + 12 + 4 * (size_t)RDM_MAX_HOPS)
		return -EMSGSIZE;
	put_ctx(q + RDM_NSH_BASE_LEN, slot, RDM_CTX_USE, 0);
	if (f->present & RDM_F_SEQ) {
		rdm_put_be16(p, RDM_MD_CLASS);
		p[2] = RDM_TLV_SEQ;
		p[3] = 12;
		rdm_put_be32(p + 4, f->origin);
		rdm_put_be64(p + 8, f->seq);
		p += 16;
	}
	if (nh) {
		rdm_put_be16(p, RDM_MD_CLASS);
		p[2] = RDM_TLV_HOP_NS;
		p[3] = (uint8_t)(8 + 4 * (nh - 1));
		rdm_put_be64(p + 4, f->hops[0].ns);
		for (unsigned i = 1; i < nh; i++) {
			int64_t d = (int64_t)(f->hops[i].ns - f->hops[0].ns);

			if (d > INT32_MAX || d < INT32_MIN)
				return -ERANGE;
			rdm_put_be32(p + 8 + 4 * i, (uint32_t)d);
		}
		p += 12 + 4 * (nh - 1);
	}
	rdm_frame__put_base(f, q, (unsigned)(p - q), f->next_proto);
	return (int)(p - q);
}

/* Reads a USE frame's SEQ and then HOP_NS at buf[off..hlen) directly, when they come
 * first and well formed (as put_use writes them); returns where the generic walk goes
 * on, which decodes anything else (and refuses what is malformed). */
static unsigned get_use(struct rdm_frame *f, const uint8_t *buf, unsigned off, unsigned hlen,
			struct rdm_walk *wk)
{
	const uint8_t *p = buf + off;
	unsigned vlen, n;

	if (off + 16 <= hlen && rdm_get_be16(p) == RDM_MD_CLASS && p[2] == RDM_TLV_SEQ &&
	    p[3] == 12) {
		f->origin = rdm_get_be32(p + 4);
		f->seq = rdm_get_be64(p + 8);
		f->present |= RDM_F_SEQ;
		off += 16;
		p += 16;
	}
	if (off + 12 > hlen || rdm_get_be16(p) != RDM_MD_CLASS || p[2] != RDM_TLV_HOP_NS)
		return off;
	vlen = p[3];
	n = vlen >= 8 && vlen % 4 == 0 ? (vlen - 8) / 4 + 1 : 0;
	if (n == 0 || n > RDM_MAX_HOPS || off + 4 + vlen > hlen)
		return off; /* the walk says what is wrong with it */
	f->hops[0].ns = rdm_get_be64(p + 4);
	for (unsigned i = 1; i < n; i++)
		f->hops[i].ns =
		    f->hops[0].ns + (uint64_t)(int64_t)(int32_t)rdm_get_be32(p + 8 + 4 * i);
	f->n_hops = (uint8_t)n;
	f->present |= RDM_F_HOPS;
	wk->hop_ns = (uint8_t)n;
	return off + 4 + vlen;
}

/* The bytes of the whole TLVs at st[off..n) that fit in room (at least one). */
static unsigned take_tlvs(const uint8_t *st, unsigned off, unsigned n, unsigned room)
{
	unsigned take = 0;

	while (off + take < n) {
		unsigned size = RDM_TLV_HDR + RDM_PAD4(st[off + take + 3]);

		if (take && take + size > room)
			break;
		take += size;
	}
	return take;
}

/* A flow's slot: each direction its own (their keys differ, so they would take the
 * slot from each other on every turn), from the flow's symmetric hash. */
static unsigned slot_of(const struct rdm_frame *f)
{
	const struct rdm_flow_key *k = &f->key;
	uint64_t s0 = rdm_get_be64(k->src), d0 = rdm_get_be64(k->dst);
	uint64_t s1 = rdm_get_be64(k->src + 8), d1 = rdm_get_be64(k->dst + 8);
	uint64_t back = s0 != d0 ? s0 > d0 : s1 != d1 ? s1 > d1 : k->sport > k->dport;

	return (unsigned)((rdm_frame_flow_hash(f, k) * 2 + back) % RDM_CTX_SLOTS);
}

/* Frame f went as one USE frame whose header is buf[0..len): its tx frame, counted; 1.
 * A negative len (an error) is returned as it is. */
static inline int went_use(struct rdm_ctx_tx *t, const struct rdm_frame *f, uint8_t *buf, int len,
			   struct rdm_txframe *out)
{
	if (len < 0)
		return len;
	out[0] = (struct rdm_txframe){buf, (uint32_t)len, f->pkt, f->pkt_len};
	t->st->uses++;
	count(t, (uint32_t)len);
	return 1;
}

/* rdm_ctx_encode past its common case: f of a flow whose slot is slot (state s, or
 * NULL) did not go as a USE frame of split hops (the slot holds another state, or none,
 * or f's hops do not go split: put_use said -ERANGE). */
static __attribute__((noinline)) int encode_rest(struct rdm_ctx_tx *t, const struct rdm_frame *f,
						 uint8_t *buf, size_t cap, struct rdm_txframe *out,
						 unsigned slot, struct state *s)
{
	unsigned split = rdm_frame__split_ok(f) ? RDM_SEL_SPLIT : 0, off = 0, room, n_pkt;
	int slen, len, k = 0;
	uint8_t *q = buf;

	if (s && !split && state_is(f, s, 0))
		return went_use(
		    t, f, buf,
		    put_frame(f, slot, RDM_CTX_USE, 0, NULL, 0, RDM_SEL_PACKET, buf, cap), out);
	slen = rdm_frame__put_tlvs(f, RDM_SEL_STICKY | split, t->scratch, sizeof(t->scratch));
	if (slen == -EMSGSIZE)
		return whole(t, f, buf, cap, out);
	if (slen < 0)
		return slen;
	/* A new state for the slot: PART frames while the rest would not fit one header with
	 * the packet's own TLVs, then the SET. */
	len = rdm_frame__put_tlvs(f, RDM_SEL_PACKET | split, buf, cap);
	if (len < 0)
		return len;
	n_pkt = (unsigned)len;
	room = RDM_NSH_RFC_HDR - PART_HDR;
	while ((unsigned)slen - off > (n_pkt < room ? room - n_pkt : 0) &&
	       k < RDM_CTX_OUT_MAX - 1) {
		unsigned take = take_tlvs(t->scratch, off, (unsigned)slen, room);

		len = put_frame(f, slot, RDM_CTX_PART, k == 0, t->scratch + off, take, 0, q,
				cap - (size_t)(q - buf));
		if (len < 0)
			return len;
		out[k++] = (struct rdm_txframe){q, (uint32_t)len, NULL, 0};
		count(t, (uint32_t)len);
		q += len;
		off += take;
	}
	len = put_frame(f, slot, RDM_CTX_SET, k == 0, t->scratch + off, (unsigned)slen - off,
			RDM_SEL_PACKET | split, q, cap - (size_t)(q - buf));
	if (len < 0)
		return len;
	out[k++] = (struct rdm_txframe){q, (uint32_t)len, f->pkt, f->pkt_len};
	count(t, (uint32_t)len);
	/* Only now the slot: a frame that could not be written leaves it as it was. Without
	 * memory to remember the state, the next frame sends it again. */
	s = state_new(t->scratch, (unsigned)slen, &len);
	if (s) {
		s->split = split != 0;
		s->src = f->state_src;
	}
	t->used += (s != NULL) - (t->slot[slot] != NULL);
	free(t->slot[slot]);
	t->slot[slot] = s;
	t->st->sets++;
	t->st->parts += (uint64_t)(k - 1);
	return k;
}

/* Always inline (with LTO, into the node's loop that encodes a batch): what is left of
 * the common case is smaller than a call's saving and restoring of registers. */
inline __attribute__((always_inline)) int rdm_ctx_encode(struct rdm_ctx_tx *t,
							 const struct rdm_frame *f, uint8_t *buf,
							 size_t cap, struct rdm_txframe *out)
{
	unsigned slot;
	struct state *s;
	int len;

	if (!t || !(f->present & RDM_F_FLOW_KEY))
		return whole(t, f, buf, cap, out);
	slot = slot_of(f);
	s = t->slot[slot];
	/* The common case, small enough to go inline: the slot's state, its hops split,
	 * written as a USE frame that checks the hops' times as it writes them
	 * (rdm_frame__split_ok's test). */
	if (!s || !s->split || !state_is(f, s, 1))
		return encode_rest(t, f, buf, cap, out, slot, s);
	len = put_use(f, slot, buf, cap);
	if (len == -ERANGE)
		return encode_rest(t, f, buf, cap, out, slot, s);
	return went_use(t, f, buf, len, out);
}

struct rdm_ctx_rx *rdm_ctx_rx_new(struct rdm_ctx_rx_stats *st)
{
	struct rdm_ctx_rx *r = rdm_calloc_touched(1, sizeof(*r));

	if (r)
		r->st = st ? st : &r->own;
	return r;
}

void rdm_ctx_rx_release(struct rdm_ctx_rx *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->n_grave; i++)
		free(r->grave[i]);
	r->n_grave = 0;
}

void rdm_ctx_rx_reset(struct rdm_ctx_rx *r)
{
	if (!r)
		return;
	rdm_ctx_rx_release(r);
	for (unsigned i = 0; i < RDM_CTX_SLOTS; i++) {
		free(r->slot[i]);
		r->slot[i] = NULL;
	}
	r->pend_len = 0;
}

void rdm_ctx_rx_free(struct rdm_ctx_rx *r)
{
	if (!r)
		return;
	rdm_ctx_rx_reset(r);
	free(r->grave);
	free(r);
}

/* Slot i takes state s; the one it held stays readable until the next release. */
static int slot_set(struct rdm_ctx_rx *r, unsigned i, struct state *s)
{
	if (r->slot[i]) {
		if (r->n_grave == r->cap_grave) {
			unsigned cap = r->cap_grave ? 2 * r->cap_grave : 64;
			struct state **g = realloc(r->grave, cap * sizeof(*g));

			if (!g)
				return -ENOMEM;
			r->grave = g;
			r->cap_grave = cap;
		}
		r->grave[r->n_grave++] = r->slot[i];
	}
	r->slot[i] = s;
	return 0;
}

int rdm_ctx_decode(struct rdm_ctx_rx *r, struct rdm_frame *f, const uint8_t *buf, size_t len)
{
	struct rdm_walk wk = {0};
	unsigned hlen, slot, op, off;
	struct state *s;
	int rc = rdm_frame__get_base(f, buf, len, &hlen);

	if (rc < 0)
		return rc;
	if (hlen < PART_HDR || rdm_get_be16(buf + 8) != RDM_MD_CLASS || buf[10] != RDM_TLV_CTX)
		return rdm_frame_decode(f, buf, len); /* a frame with its whole state */
	if (!r)
		return -RDM_FERR_CTX;
	slot = rdm_get_be16(buf + 12);
	op = buf[14];
	if (buf[11] != 4 || slot >= RDM_CTX_SLOTS || op > RDM_CTX_PART)
		return -RDM_FERR_TLV_VALUE;
	if (op != RDM_CTX_USE) {
		if (buf[15] & 1) {
			r->pend_len = 0; /* the first frame of a state */
			r->pend_slot = slot;
		} else if (!r->pend_len || r->pend_slot != slot) {
			/* A state whose first part never came here: none of it is taken, and
			 * the slot forgets what it held, so nothing uses a stale state. */
			r->st->parts_dropped++;
			r->pend_len = 0;
			if (slot_set(r, slot, NULL) < 0)
				r->slot[slot] = NULL;
			return -RDM_FERR_CTX;
		}
		wk.keep = r->pend;
		wk.keep_len = r->pend_len;
		wk.keep_cap = sizeof(r->pend);
	}
	off = op == RDM_CTX_USE ? get_use(f, buf, PART_HDR, hlen, &wk) : PART_HDR;
	rc = off < hlen ? rdm_frame__walk(f, buf, off, hlen, &wk) : 0;
	if (rc < 0) {
		if (wk.keep)
			r->pend_len = 0;
		return rc;
	}
	if (op == RDM_CTX_PART) {
		r->pend_len = wk.keep_len;
		r->st->parts++;
		return 1;
	}
	if (op == RDM_CTX_SET) {
		r->pend_len = 0;
		s = state_new(r->pend, wk.keep_len, &rc);
		if (!s || slot_set(r, slot, s) < 0) {
			/* A state that does not decode, or no memory: the slot forgets what it
			 * held (a state no frame can still point at is freed; one that may be,
			 * kept), so the frames that use it are refused rather than given the
			 * flow's previous state. */
			if (s) {
				free(s);
				rc = -RDM_FERR_CTX;
			}
			if (slot_set(r, slot, NULL) < 0)
				r->slot[slot] = NULL;
			return rc;
		}
		r->st->sets++;
	} else {
		s = r->slot[slot];
		if (!s)
			return -RDM_FERR_CTX;
		r->st->uses++;
	}
	take_state(f, s, &wk.hop_nodes);
	rc = rdm_frame__hops_check(&wk);
	if (rc < 0)
		return rc;
	f->pkt = buf + hlen;
	f->pkt_len = (uint32_t)(len - hlen);
	return 0;
}
