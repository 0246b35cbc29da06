/* The shared-memory ring (transport/shm_ring.h): records written once by the producer,
 * read in place by the consumer, every shared value checked before it is used. */
#include "transport/shm_ring.h"

#include <string.h>

void rdm_shm_ring_init(struct rdm_shm_ring *r, void *base, uint32_t cap, int producer)
{
	r->ctl = base;
	r->data = (uint8_t *)base + RDM_SHM_HDR;
	r->cap = cap;
	if (producer) {
		r->pos = atomic_load_explicit(&r->ctl->tail, memory_order_relaxed);
		r->peer = atomic_load_explicit(&r->ctl->head, memory_order_acquire);
	} else {
		r->pos = atomic_load_explicit(&r->ctl->head, memory_order_relaxed);
		r->peer = atomic_load_explicit(&r->ctl->tail, memory_order_acquire);
	}
	r->freed = r->pos;
}

/* The record length at position p, read once. */
static uint32_t len_at(const struct rdm_shm_ring *r, uint32_t p)
{
	uint32_t v;

	memcpy(&v, (const void *)(r->data + p), 4);
	__atomic_signal_fence(__ATOMIC_SEQ_CST); /* one read, not one per use */
	return v;
}

uint8_t *rdm_shm_reserve(struct rdm_shm_ring *r, uint32_t len, int *bad)
{
	uint32_t need = rdm_shm_rec_size(len), p = (uint32_t)(r->pos & (r->cap - 1));
	uint32_t left = r->cap - p, total = need > left ? left + need : need;

	*bad = 0;
	if (r->pos < r->peer || r->pos - r->peer > r->cap) {
		*bad = -1;
		return NULL;
	}
	if (need > r->cap / 2)
		return NULL;
	if (r->cap - (r->pos - r->peer) < total) {
		uint64_t h = atomic_load_explicit(&r->ctl->head, memory_order_acquire);

		if (h < r->peer || h > r->pos) {
			*bad = -1; /* head went back, or past what we wrote */
			return NULL;
		}
		r->peer = h;
		if (r->cap - (r->pos - r->peer) < total)
			return NULL;
	}
	if (need > left) {
		uint32_t wrap = RDM_SHM_WRAP;

		memcpy(r->data + p, &wrap, 4);
		r->pos += left;
		p = 0;
	}
	return r->data + p + 4;
}

void rdm_shm_commit(struct rdm_shm_ring *r, uint32_t len)
{
	memcpy(r->data + (r->pos & (r->cap - 1)), &len, 4);
	r->pos += rdm_shm_rec_size(len);
}

uint64_t rdm_shm_publish(struct rdm_shm_ring *r)
{
	atomic_store_explicit(&r->ctl->tail, r->pos, memory_order_release);
	return r->pos - r->peer;
}

int rdm_shm_next(struct rdm_shm_ring *r, uint32_t max_frame, const uint8_t **data, uint32_t *len)
{
	for (;;) {
		uint32_t p, l, need;

		if (r->peer < r->pos || r->peer - r->pos > r->cap)
			return -1; /* counters no correct producer leaves */
		if (r->pos == r->peer) {
			uint64_t t = atomic_load_explicit(&r->ctl->tail, memory_order_acquire);

			if (t < r->peer || t - r->freed > r->cap)
				return -1; /* tail went back, or more than a ring ahead */
			r->peer = t;
			if (r->pos == t)
				return 0;
		}
		p = (uint32_t)(r->pos & (r->cap - 1));
		l = len_at(r, p);
		if (l == RDM_SHM_WRAP) {
			if (r->peer - r->pos < r->cap - p)
				return -1; /* a wrap past what was published */
			r->pos += r->cap - p;
			continue;
		}
		need = rdm_shm_rec_size(l);
		if (l == 0 || l > max_frame || need > r->cap - p || need > r->peer - r->pos)
			return -1;
		*data = r->data + p + 4;
		*len = l;
		r->pos += need;
		return 1;
	}
}

void rdm_shm_release(struct rdm_shm_ring *r)
{
	r->freed = r->pos;
	atomic_store_explicit(&r->ctl->head, r->pos, memory_order_release);
}
