/* The shared-memory ring of the shm backend (transport/shm.c): one producer, one
 * consumer, in memory both processes map (a memfd). Records are [u32 len][frame] padded
 * to 8 bytes; a record that would cross the end is preceded by a wrap marker and starts
 * at the beginning again, so every frame is contiguous and is read where it was written.
 *
 * head (the consumer's) and tail (the producer's) are byte counters that only grow; a
 * position is counter % cap. The producer writes records, then publishes them by storing
 * tail (release); the consumer reads tail (acquire), reads records, then frees them by
 * storing head (release). Each side may be hostile to the other: every value read from
 * the shared page is read once into a local and checked before it is used, so a peer
 * that writes nonsense gets its connection closed, never a read outside the ring. */
#ifndef RDM_SHM_RING_H
#define RDM_SHM_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RDM_SHM_HDR	  256	      /* the ring's control block, before its data */
#define RDM_SHM_WRAP	  0xFFFFFFFFu /* record length: go on at the ring's start */
#define RDM_SHM_CAP_MIN	  (64u << 10)
#define RDM_SHM_CAP_MAX	  (256u << 20)
#define RDM_SHM_REC_ALIGN 8

/* The control block; fields on their own cache lines. */
struct rdm_shm_ctl {
	_Atomic uint64_t tail; /* producer: bytes published */
	uint8_t pad0[56];
	_Atomic uint64_t head; /* consumer: bytes freed */
	uint8_t pad1[56];
	_Atomic uint32_t rx_waiting; /* consumer sleeps on its eventfd: wake it */
	uint8_t pad2[60];
	_Atomic uint32_t tx_waiting; /* producer waits for room: wake it */
	uint8_t pad3[60];
};

/* One side's view of a ring. */
struct rdm_shm_ring {
	struct rdm_shm_ctl *ctl;
	uint8_t *data;
	uint32_t cap;	/* a power of two */
	uint64_t pos;	/* producer: tail written so far (published or not); consumer: head
			 * read so far (freed or not) */
	uint64_t peer;	/* the other side's counter as last read (head, or tail) */
	uint64_t freed; /* consumer: head as it stored it (never read back from the page) */
};

/* The ring at base (RDM_SHM_HDR + cap bytes), as producer or consumer: pos and peer from
 * the shared counters. */
void rdm_shm_ring_init(struct rdm_shm_ring *r, void *base, uint32_t cap, int producer);

/* Bytes a record of len frame bytes takes, padded. */
static inline uint32_t rdm_shm_rec_size(uint32_t len)
{
	return (4 + len + RDM_SHM_REC_ALIGN - 1) & ~(uint32_t)(RDM_SHM_REC_ALIGN - 1);
}

/* Producer: room for a record of len bytes (a wrap included), re-reading head when the
 * last one read is not enough. Returns a pointer to write the frame at, or NULL when
 * there is no room; -1 in *bad when head is impossible (the peer is broken). */
uint8_t *rdm_shm_reserve(struct rdm_shm_ring *r, uint32_t len, int *bad);

/* Producer: the record reserved last is written (len bytes of frame). */
void rdm_shm_commit(struct rdm_shm_ring *r, uint32_t len);

/* Producer: publishes what was committed; returns the bytes now in the ring. */
uint64_t rdm_shm_publish(struct rdm_shm_ring *r);

/* Consumer: the next published record: 1 with *data and *len, 0 when there is none, -1
 * when the ring holds something no correct producer writes (a length over max_frame or
 * zero, a record past tail or across the end, a tail behind head or a lap ahead). Wrap
 * markers are skipped. Advances the consumer's read position, not head. */
int rdm_shm_next(struct rdm_shm_ring *r, uint32_t max_frame, const uint8_t **data, uint32_t *len);

/* Consumer: frees everything read so far (stores head). */
void rdm_shm_release(struct rdm_shm_ring *r);

/* Consumer: goes back to read position pos (records read but not taken). */
static inline void rdm_shm_rewind(struct rdm_shm_ring *r, uint64_t pos)
{
	r->pos = pos;
}

#endif
