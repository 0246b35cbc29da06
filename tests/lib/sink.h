/* The frame sink and source the transport tests share. Frame i carries i in its first 4
 * bytes, then pattern(i, offset) up to size_of(i) bytes, so the receiver checks content,
 * length and order without keeping what was sent. Include after criterion.h, with
 * SINK_MIN and SINK_SPAN defined: frame sizes are SINK_MIN + (i * 97) % SINK_SPAN, and
 * MAXF (the largest frame) for the sender's buffers. */
#ifndef RDM_TESTS_SINK_H
#define RDM_TESTS_SINK_H

#include <stdint.h>

#include "transport/frame.h"
#include "transport/transport.h"
#include "lib/byteorder.h"

#if !defined(SINK_MIN) || !defined(SINK_SPAN) || !defined(MAXF)
#error "define SINK_MIN, SINK_SPAN and MAXF before including tests/lib/sink.h"
#endif

struct sink {
	uint32_t got;	      /* frames received */
	uint32_t expect_next; /* frames carry their index in the first 4 bytes */
	uint32_t bad;
	int pause; /* when set, take nothing (backpressure) */
	int ups, downs, writable;
	struct rdm_conn *last;
	/* decode mode (malformed_frames...): rdm_frame_decode's result per frame */
	int decode;
	int rc[64];
	uint32_t seq[64];
};

static uint32_t size_of(uint32_t idx)
{
	return SINK_MIN + (idx * 97) % SINK_SPAN;
}

static uint8_t pattern(uint32_t idx, uint32_t off)
{
	return (uint8_t)(idx * 31 + off * 7);
}

static int on_frames(struct rdm_conn *c, const struct rdm_rxframe *f, int n, void *arg)
{
	struct sink *s = arg;

	if (s->pause)
		return 0;
	for (int i = 0; i < n; i++) {
		if (s->decode) {
			struct rdm_frame fr;
			int rc = rdm_frame_decode(&fr, f[i].data, f[i].len);

			if (s->got < 64) {
				s->rc[s->got] = rc;
				s->seq[s->got] =
				    rc == 0 && (fr.present & RDM_F_SEQ) ? (uint32_t)fr.seq : 0;
			}
			s->got++;
			continue;
		}
		uint32_t idx = f[i].len >= 4 ? rdm_get_be32(f[i].data) : 0xFFFFFFFFu;

		if (idx != s->expect_next || f[i].len != size_of(idx))
			s->bad++;
		for (uint32_t o = 4; o < f[i].len; o++)
			if (f[i].data[o] != pattern(idx, o)) {
				s->bad++;
				break;
			}
		s->expect_next = idx + 1;
		s->got++;
	}
	return n;
}

static void on_state(struct rdm_conn *c, int up, void *arg)
{
	struct sink *s = arg;

	if (up)
		s->ups++;
	else
		s->downs++;
	s->last = up ? c : NULL;
}

static void on_writable(struct rdm_conn *c, void *arg)
{
	((struct sink *)arg)->writable++;
}

/* Writes frame idx of len bytes into b: its index, then its pattern. Returns len. */
static uint32_t fill_len(uint8_t *b, uint32_t idx, uint32_t len)
{
	b[0] = (uint8_t)(idx >> 24);
	b[1] = (uint8_t)(idx >> 16);
	b[2] = (uint8_t)(idx >> 8);
	b[3] = (uint8_t)idx;
	for (uint32_t o = 4; o < len; o++)
		b[o] = pattern(idx, o);
	return len;
}

static inline uint32_t fill(uint8_t *b, uint32_t idx)
{
	return fill_len(b, idx, size_of(idx));
}

/* Sends frames [*next, upto), sized by sizer, in batches of at most batch (<= 32) as long
 * as the connection takes them and is not congested. */
static void send_sized(struct rdm_conn *c, uint32_t *next, uint32_t upto, int batch,
		       uint32_t (*sizer)(uint32_t idx))
{
	static uint8_t bufs[32][MAXF];
	struct rdm_txframe tx[32];

	while (*next < upto && !c->congested && c->up) {
		int n = 0, rc;

		for (; n < batch && *next + (uint32_t)n < upto; n++) {
			uint32_t idx = *next + (uint32_t)n;
			uint32_t len = fill_len(bufs[n], idx, sizer(idx));

			/* header and packet as two pieces, as the node sends them */
			tx[n] = (struct rdm_txframe){bufs[n], 16, bufs[n] + 16, len - 16};
		}
		rc = rdm_conn_send(c, tx, n);
		cr_assert_eq(rc, n, "send_batch took %d of %d (queue_full %lu)", rc, n,
			     (unsigned long)c->stats.queue_full);
		*next += (uint32_t)n;
	}
}

static void send_some(struct rdm_conn *c, uint32_t *next, uint32_t upto)
{
	send_sized(c, next, upto, 16, size_of);
}

#endif
