/* The per-worker flow table of stateful stages (services/flowtable.h). */
#include "services/flowtable.h"

#include <errno.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NIL	   UINT32_MAX
#define ALIGN16(n) (((n) + 15u) & ~(size_t)15u)

/* Timeout classes: one LRU list each, in the order flows last moved to its back. A flow
 * moves there when it is created, changes class, or is touched at least move_ns after its
 * last move; a touch in between only sets last_ns. So a list's flows moved in order, and
 * each was touched at most move_ns after its move: a flow behind the head was last
 * touched at most move_ns before the head was, and expires at most that late. */
enum { CLS_TCP, CLS_TCP_CLOSED, CLS_UDP, CLS_OTHER, CLS_COUNT };
_Static_assert(CLS_COUNT == sizeof(((struct rdm_flowtab_base *)0)->move_ns) / sizeof(uint64_t),
	       "one move_ns per class");
_Static_assert(RDM_IPPROTO_TCP == IPPROTO_TCP, "TCP's protocol number");

struct lru {
	uint32_t head, tail;
};

struct rdm_flowtab {
	struct rdm_flowtab_base b; /* first: the inline look-up by hint reads it */
	struct rdm_flow_conf c;
	uint64_t timeout_ns[CLS_COUNT];
	uint32_t *bucket;
	uint32_t mask;
	uint32_t free_head;
	struct lru lru[CLS_COUNT];
	uint64_t due_ns; /* no flow's deadline is earlier: nothing to expire before it */
	rdm_flow_end_cb end;
	void *arg;
	struct rdm_flowtab_stats st;
};

void rdm_flow_conf_defaults(struct rdm_flow_conf *c)
{
	if (!c->max_flows)
		c->max_flows = 65536;
	if (!c->tcp_idle_ms)
		c->tcp_idle_ms = 300000;
	if (!c->tcp_closed_ms)
		c->tcp_closed_ms = 5000;
	if (!c->udp_idle_ms)
		c->udp_idle_ms = 60000;
	if (!c->other_idle_ms)
		c->other_idle_ms = 30000;
}

/* Tables made, and flows created, in the process: flows' generations (rdm_flow_hint) are
 * never given twice, so a hint from a table or flow that is gone never matches. */
static atomic_uint tables_made;
static atomic_uint_fast64_t flows_made;

static inline struct rdm_flow *at(const struct rdm_flowtab *t, uint32_t i)
{
	return (struct rdm_flow *)(t->b.mem + (size_t)i * t->b.stride);
}

static inline uint32_t idx(const struct rdm_flowtab *t, const struct rdm_flow *f)
{
	return (uint32_t)(((const uint8_t *)f - t->b.mem) / t->b.stride);
}

void *rdm_flow_data(struct rdm_flow *f)
{
	return (uint8_t *)f + ALIGN16(sizeof(*f));
}

struct rdm_flowtab *rdm_flowtab_new(const struct rdm_flow_conf *c, size_t data_size,
				    rdm_flow_end_cb end, void *arg)
{
	struct rdm_flowtab *t = calloc(1, sizeof(*t));
	uint32_t nb = 1;

	if (!t)
		return NULL;
	t->c = *c;
	rdm_flow_conf_defaults(&t->c);
	/* A worker makes its tables one after the other: each takes its own hint. */
	t->b.id = atomic_fetch_add(&tables_made, 1) + 1;
	t->b.hint = t->b.id % RDM_FLOW_HINTS;
	if (t->c.max_flows > (1u << 26)) {
		free(t);
		errno = EINVAL;
		return NULL;
	}
	t->timeout_ns[CLS_TCP] = (uint64_t)t->c.tcp_idle_ms * 1000000ull;
	t->timeout_ns[CLS_TCP_CLOSED] = (uint64_t)t->c.tcp_closed_ms * 1000000ull;
	t->timeout_ns[CLS_UDP] = (uint64_t)t->c.udp_idle_ms * 1000000ull;
	t->timeout_ns[CLS_OTHER] = (uint64_t)t->c.other_idle_ms * 1000000ull;
	for (int k = 0; k < CLS_COUNT; k++)
		t->b.move_ns[k] = t->timeout_ns[k] / 64;
	while (nb < t->c.max_flows)
		nb <<= 1;
	t->mask = nb - 1;
	t->b.stride = ALIGN16(sizeof(struct rdm_flow)) + ALIGN16(data_size);
	t->b.max_flows = t->c.max_flows;
	t->b.mem = calloc(t->c.max_flows, t->b.stride);
	t->bucket = malloc((size_t)nb * sizeof(*t->bucket));
	if (!t->b.mem || !t->bucket) {
		free(t->b.mem);
		free(t->bucket);
		free(t);
		errno = ENOMEM;
		return NULL;
	}
	memset(t->bucket, 0xff, (size_t)nb * sizeof(*t->bucket));
	for (uint32_t i = 0; i < t->c.max_flows; i++)
		at(t, i)->next_hash = i + 1 < t->c.max_flows ? i + 1 : NIL;
	t->free_head = 0;
	for (int k = 0; k < CLS_COUNT; k++)
		t->lru[k].head = t->lru[k].tail = NIL;
	t->end = end;
	t->arg = arg;
	t->st.max = t->c.max_flows;
	return t;
}

static uint64_t deadline(const struct rdm_flowtab *t, const struct rdm_flow *f)
{
	return f->last_ns + t->timeout_ns[f->cls];
}

static void lru_unlink(struct rdm_flowtab *t, struct rdm_flow *f)
{
	struct lru *l = &t->lru[f->cls];

	if (f->prev_lru != NIL)
		at(t, f->prev_lru)->next_lru = f->next_lru;
	else
		l->head = f->next_lru;
	if (f->next_lru != NIL)
		at(t, f->next_lru)->prev_lru = f->prev_lru;
	else
		l->tail = f->prev_lru;
}

static void lru_append(struct rdm_flowtab *t, struct rdm_flow *f)
{
	struct lru *l = &t->lru[f->cls];
	uint32_t i = idx(t, f);

	f->moved_ns = f->last_ns;
	f->next_lru = NIL;
	f->prev_lru = l->tail;
	if (l->tail != NIL)
		at(t, l->tail)->next_lru = i;
	else
		l->head = i;
	l->tail = i;
	if (deadline(t, f) < t->due_ns)
		t->due_ns = deadline(t, f);
}

/* Takes f out of the table, telling the owner first. */
static void flow_end(struct rdm_flowtab *t, struct rdm_flow *f, enum rdm_flow_end why)
{
	uint32_t i = idx(t, f), *pp = &t->bucket[f->hash & t->mask];

	if (t->end)
		t->end(t->arg, f, why);
	switch (why) {
	case RDM_FLOW_END_TIMEOUT:
		t->st.timeouts++;
		break;
	case RDM_FLOW_END_CLOSED:
		t->st.closed++;
		break;
	case RDM_FLOW_END_EVICTED:
		t->st.evicted++;
		break;
	case RDM_FLOW_END_SHUTDOWN:
		break;
	}
	while (*pp != i)
		pp = &at(t, *pp)->next_hash;
	*pp = f->next_hash;
	lru_unlink(t, f);
	f->gen = 0; /* hints to it hold no more */
	f->next_hash = t->free_head;
	t->free_head = i;
	t->st.flows--;
}

void rdm_flowtab_free(struct rdm_flowtab *t)
{
	if (!t)
		return;
	for (int k = 0; k < CLS_COUNT; k++)
		while (t->lru[k].head != NIL)
			flow_end(t, at(t, t->lru[k].head), RDM_FLOW_END_SHUTDOWN);
	free(t->b.mem);
	free(t->bucket);
	free(t);
}

struct rdm_flow *rdm_flowtab_find(struct rdm_flowtab *t, const struct rdm_flow_key *k,
				  uint64_t hash, int *dir)
{
	for (uint32_t i = t->bucket[hash & t->mask]; i != NIL; i = at(t, i)->next_hash) {
		struct rdm_flow *f = at(t, i);

		if (f->hash != hash)
			continue;
		if (rdm_flow_key_eq(&f->key, k)) {
			*dir = 0;
			return f;
		}
		if (rdm_flow_key_rev(&f->key, k)) {
			*dir = 1;
			return f;
		}
	}
	return NULL;
}

struct rdm_flow *rdm_flowtab__find_miss(struct rdm_flowtab *t, const struct rdm_flow_key *k,
					uint64_t hash, int *dir, struct rdm_flow_hint *hints)
{
	struct rdm_flow *f = rdm_flowtab_find(t, k, hash, dir);

	rdm_flowtab_hint(t, hints, f, *dir);
	return f;
}

void rdm_flowtab__hint_check(struct rdm_flowtab *t, const struct rdm_flow_key *k, uint64_t hash,
			     const struct rdm_flow *f, int dir)
{
	int d;

	if (rdm_flowtab_find(t, k, hash, &d) != f || d != dir) {
		fprintf(stderr, "flowtable: a hint named another flow than the key's\n");
		abort();
	}
}

void rdm_flowtab_hint(const struct rdm_flowtab *t, struct rdm_flow_hint *hints,
		      const struct rdm_flow *f, int dir)
{
	if (hints && f)
		hints[t->b.hint] = (struct rdm_flow_hint){t->b.id, idx(t, f), f->gen, dir};
}

/* The flow to give up for a new one: a closed TCP flow if any, else the one nearest
 * its deadline (to within move_ns: the lists' heads). */
static struct rdm_flow *victim(struct rdm_flowtab *t)
{
	struct rdm_flow *best = NULL;

	if (t->lru[CLS_TCP_CLOSED].head != NIL)
		return at(t, t->lru[CLS_TCP_CLOSED].head);
	for (int k = 0; k < CLS_COUNT; k++) {
		struct rdm_flow *f;

		if (t->lru[k].head == NIL)
			continue;
		f = at(t, t->lru[k].head);
		if (!best || deadline(t, f) < deadline(t, best))
			best = f;
	}
	return best;
}

static uint8_t cls_of(const struct rdm_flow *f)
{
	if (f->key.proto == IPPROTO_TCP) {
		if ((f->tcp_flags[0] | f->tcp_flags[1]) & RDM_TCP_RST)
			return CLS_TCP_CLOSED;
		if ((f->tcp_flags[0] & RDM_TCP_FIN) && (f->tcp_flags[1] & RDM_TCP_FIN))
			return CLS_TCP_CLOSED;
		return CLS_TCP;
	}
	return f->key.proto == IPPROTO_UDP ? CLS_UDP : CLS_OTHER;
}

struct rdm_flow *rdm_flowtab__track_slow(struct rdm_flowtab *t, struct rdm_flow *f,
					 const struct rdm_flow_key *k, uint64_t hash,
					 uint32_t bytes, uint8_t tcp_flags, uint64_t now_ns,
					 int *dir, int *created)
{
	uint32_t i, *b;

	/* A new connection on the 5-tuple of one that closed moments ago (a client reusing
	 * its port) is a new flow, not the old one's tail. */
	if (f && f->cls == CLS_TCP_CLOSED &&
	    (tcp_flags & (RDM_TCP_SYN | RDM_TCP_ACK)) == RDM_TCP_SYN) {
		flow_end(t, f, RDM_FLOW_END_CLOSED);
		f = NULL;
	}
	if (created)
		*created = !f;
	if (f) {
		uint8_t was = f->tcp_flags[*dir], cls = f->cls;

		f->last_ns = now_ns;
		f->packets[*dir]++;
		f->bytes[*dir] += bytes;
		/* A packet that adds no TCP flag cannot change the flow's class. */
		if (k->proto == IPPROTO_TCP && (was | tcp_flags) != was) {
			f->tcp_flags[*dir] = was | tcp_flags;
			cls = cls_of(f);
		}
		if (cls == f->cls && now_ns - f->moved_ns < t->b.move_ns[cls])
			return f; /* touched, not moved: the list stays in order (above) */
		lru_unlink(t, f);
		f->cls = cls;
		lru_append(t, f);
		return f;
	}
	if (t->free_head == NIL && t->c.refuse_new) {
		t->st.refused++;
		return NULL;
	}
	if (t->free_head == NIL)
		flow_end(t, victim(t), RDM_FLOW_END_EVICTED);
	i = t->free_head;
	f = at(t, i);
	t->free_head = f->next_hash;
	memset(f, 0, t->b.stride);
	f->key = *k;
	f->hash = hash;
	f->gen = atomic_fetch_add(&flows_made, 1) + 1;
	f->first_ns = now_ns;
	b = &t->bucket[hash & t->mask];
	f->next_hash = *b;
	*b = i;
	*dir = 0;
	t->st.created++;
	if (++t->st.flows > t->st.peak)
		t->st.peak = t->st.flows;
	f->last_ns = now_ns;
	f->packets[0] = 1;
	f->bytes[0] = bytes;
	if (k->proto == IPPROTO_TCP)
		f->tcp_flags[0] = tcp_flags;
	f->cls = cls_of(f);
	lru_append(t, f);
	return f;
}

int rdm_flowtab_expire(struct rdm_flowtab *t, uint64_t now_ns, int budget)
{
	int n = 0;

	/* Called with every batch: most calls have nothing to do, and say so at once. */
	if (now_ns < t->due_ns)
		return 0;
	for (int k = 0; k < CLS_COUNT; k++) {
		while (t->lru[k].head != NIL && (budget <= 0 || n < budget)) {
			struct rdm_flow *f = at(t, t->lru[k].head);

			if (deadline(t, f) > now_ns)
				break;
			flow_end(t, f,
				 k == CLS_TCP_CLOSED ? RDM_FLOW_END_CLOSED : RDM_FLOW_END_TIMEOUT);
			n++;
		}
	}
	/* Each list's head has its class's earliest deadline, to within move_ns (the order
	 * above); touching a flow only moves its deadline later, and lru_append lowers
	 * due_ns for one that comes earlier. */
	t->due_ns = UINT64_MAX;
	for (int k = 0; k < CLS_COUNT; k++)
		if (t->lru[k].head != NIL && deadline(t, at(t, t->lru[k].head)) < t->due_ns)
			t->due_ns = deadline(t, at(t, t->lru[k].head));
	return n;
}

void rdm_flowtab_foreach(struct rdm_flowtab *t, void (*fn)(void *arg, struct rdm_flow *f),
			 void *arg)
{
	for (int k = 0; k < CLS_COUNT; k++)
		for (uint32_t i = t->lru[k].head; i != NIL;) {
			struct rdm_flow *f = at(t, i);

			i = f->next_lru;
			fn(arg, f);
		}
}

void rdm_flowtab_get_stats(const struct rdm_flowtab *t, struct rdm_flowtab_stats *s)
{
	*s = t->st;
}
