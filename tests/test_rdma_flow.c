/* The RDMA backend over Soft-RoCE, its frames: 100k intact and in order, credits and
 * backpressure, oversized and malformed frames, congestion, packing small frames into one
 * message (and malformed packed messages), and zero-copy forwarding over three rxe
 * addresses. Both ends run in one event loop in the test process (tests/lib/rdma_pair.h);
 * test_rdma.c has the connections' lifetime. These need an RDMA device: they run in the
 * QEMU guest (tests/softroce/guest.sh) and skip anywhere else. */
#include <criterion/criterion.h>

#include "tests/lib/rdma_pair.h"
#include "tests/lib/raw.h"

TestSuite(rdma, .init = setup, .fini = teardown, .timeout = 120);

Test(rdma, frames_100k_intact_in_order, .timeout = 400)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint32_t next = 0, n = 100000;
	uint64_t t0;

	NEED_RDMA();
	pair_open(&p, 18502, &o);
	t0 = rdm_now_ns();
	stream(p.c, &next, n, 300000);
	cr_log_info("100k frames in %.1f s", (double)(rdm_now_ns() - t0) / 1e9);
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(srv.got, n, "received %u of %u", srv.got, n);
	cr_assert_eq(srv.last->stats.rx_frames, n);
	RUN_UNTIL(rdm_conn_queued(p.c) == 0, 5000);
	cr_assert_eq(rdm_conn_queued(p.c), 0, "every send completed");
	/* A small frame goes inline when alone, packed with its neighbours otherwise (here,
	 * in batches of 16, nearly always packed). */
	cr_assert_gt(p.c->stats.inline_sends + p.c->stats.tx_packed, 0,
		     "small frames go inline or packed");
	cr_assert_lt(p.c->stats.inline_sends, n, "large frames do not");
	cr_assert_lt(p.c->stats.tx_msgs, n, "some frames share a message");
	cr_assert_eq(p.c->stats.queue_full, 0);
	cr_assert_eq(p.c->stats.rnr_errors, 0);
	cr_assert_eq(p.c->stats.retry_errors, 0);
	cr_assert_eq(p.c->stats.wc_errors, 0);
	cr_assert_eq(p.c->stats.disconnects, 0);
	cr_assert_eq(srv.last->stats.rnr_errors, 0);
	cr_assert_eq(srv.last->stats.credit_msgs > 0, 1, "one-way traffic returns credits");
	cr_assert_eq(p.c->stats.lost_on_close, 0);
	pair_close(&p);
}

Test(rdma, credit_exhaustion_backpressure_no_loss, .timeout = 200)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint32_t next = 0, held;

	NEED_RDMA();
	pair_open(&p, 18503, &o);
	srv.pause = 1; /* a stalled receiver: on_frames takes nothing */
	for (int i = 0; i < 2000 && !p.c->congested; i++) {
		send_some(p.c, &next, 1000000);
		rdm_loop_run_once(loop, 2);
	}
	cr_assert(p.c->congested, "the sender must see congestion");
	RUN_FOR(200); /* whatever is in flight lands */
	cr_assert(p.c->up);
	cr_assert_eq(p.c->stats.congested, 1);
	cr_assert_gt(p.c->stats.credit_stalls, 0, "frames waited for credits");
	cr_assert_eq(p.c->stats.queue_full, 0);
	cr_assert_eq(srv.got, 0);
	cr_assert_gt(rdm_conn_queued(p.c), 0, "frames wait on the sender");
	held = next;
	cr_log_info("congested after %u frames (credit_stalls %lu)", held,
		    (unsigned long)p.c->stats.credit_stalls);

	srv.pause = 0;
	rdm_conn_resume_rx(srv.last);
	RUN_UNTIL(srv.got == held && cli.writable > 0, 20000);
	cr_assert_eq(srv.got, held, "every frame taken arrives: %u of %u", srv.got, held);
	cr_assert_gt(cli.writable, 0, "on_writable after the queue drains");
	cr_assert_eq(p.c->congested, 0);
	stream(p.c, &next, held + 2000, 60000);
	cr_assert_eq(srv.got, held + 2000);
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(p.c->stats.queue_full, 0);
	cr_assert_eq(p.c->stats.rnr_errors, 0);
	cr_assert_eq(srv.last->stats.rnr_errors, 0);
	cr_assert_eq(p.c->stats.retry_errors, 0);
	cr_assert_eq(p.c->stats.disconnects, 0);
	pair_close(&p);
}

Test(rdma, oversized_frame_refused_connection_survives)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	static uint8_t big[MAXF + 64];
	struct rdm_txframe tx[2];
	uint32_t next = 0;

	NEED_RDMA();
	pair_open(&p, 18505, &o);
	/* one byte over, as two pieces and as one */
	tx[0] = (struct rdm_txframe){big, 16, big + 16, MAXF + 1 - 16};
	cr_assert_eq(rdm_conn_send(p.c, tx, 1), -EMSGSIZE);
	tx[0] = (struct rdm_txframe){big, MAXF + 1, NULL, 0};
	tx[1] = (struct rdm_txframe){big, 64, NULL, 0};
	cr_assert_eq(rdm_conn_send(p.c, tx, 2), -EMSGSIZE, "refused at the first frame");
	cr_assert(p.c->up);
	cr_assert_eq(rdm_conn_queued(p.c), 0, "nothing of it queued");
	RUN_FOR(100);
	cr_assert(p.c->up, "the connection stays up");
	cr_assert_eq(srv.got, 0, "nothing sent");
	stream(p.c, &next, 2000, 20000);
	cr_assert_eq(srv.got, 2000);
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(p.c->stats.disconnects, 0);
	cr_assert_eq(srv.downs, 0);
	pair_close(&p);
}

/* send_batch takes the frames before an oversized one: they must really go out. */
Test(rdma, oversized_frame_mid_batch_keeps_earlier_frames)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	static uint8_t bufs[4][MAXF + 64];
	struct rdm_txframe tx[4];
	uint32_t next = 0;

	NEED_RDMA();
	pair_open(&p, 18506, &o);
	/* frames 0 and 1 (small: inline; and large), then one too big, then frame 2 */
	for (uint32_t i = 0; i < 2; i++) {
		uint32_t len = fill(bufs[i], i);

		tx[i] = (struct rdm_txframe){bufs[i], 16, bufs[i] + 16, len - 16};
	}
	tx[2] = (struct rdm_txframe){bufs[2], 16, bufs[2] + 16, MAXF + 1 - 16};
	tx[3] = (struct rdm_txframe){bufs[3], 16, bufs[3] + 16, fill(bufs[3], 2) - 16};
	cr_assert_eq(rdm_conn_send(p.c, tx, 4), 2, "taken up to the oversized frame");
	RUN_UNTIL(srv.got == 2, 3000);
	cr_assert_eq(srv.got, 2, "the frames taken before the oversized one arrive (got %u)",
		     srv.got);
	next = 2;
	stream(p.c, &next, 3000, 20000);
	cr_assert_eq(srv.got, 3000, "the connection keeps working (got %u)", srv.got);
	cr_assert_eq(srv.bad, 0);
	RUN_UNTIL(rdm_conn_queued(p.c) == 0, 5000);
	cr_assert_eq(rdm_conn_queued(p.c), 0);
	pair_close(&p);
}

Test(rdma, malformed_frames_counted_connection_survives)
{
	static const uint8_t ipv4[28] = {0x45, 0, 0,  28, 0, 1, 0,    0,    64, 17, 0, 0, 10, 0,
					 0,    1, 10, 0,  0, 2, 0x30, 0x39, 0,	53, 0, 8, 0,  0};
	static const uint8_t tlv_over[] = {0xFF, 0xF6, RDM_TLV_FLOW_ID, 9, 0, 0, 0, 0};
	static const uint8_t tlv_crit[] = {0xFF, 0xF6, 0x80 | 0x55, 0};
	static const uint8_t tlv_val[] = {0xFF, 0xF6, RDM_TLV_FLOW_ID, 4, 1, 2, 3, 4};
	static const int want[] = {-RDM_FERR_SHORT,	  -RDM_FERR_VERSION,
				   -RDM_FERR_MD_TYPE,	  -RDM_FERR_HDR_ZERO,
				   -RDM_FERR_HDR_OVERRUN, -RDM_FERR_TLV_OVERRUN,
				   -RDM_FERR_TLV_VALUE,	  -RDM_FERR_TLV_CRITICAL};
	const int nbad = (int)(sizeof(want) / sizeof(want[0])), ngood = 20;
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint8_t bad[8][64], good[20][512];
	struct rdm_txframe tx[8];
	size_t n;

	NEED_RDMA();
	srv.decode = 1;
	pair_open(&p, 18507, &o);

	n = raw(bad[0], 2, NULL, 0);
	tx[0] = (struct rdm_txframe){bad[0], 5, NULL, 0}; /* short: 5 of 8 bytes */
	n = raw(bad[1], 2, NULL, 0);
	bad[1][0] |= 0x40; /* version 1 */
	tx[1] = (struct rdm_txframe){bad[1], (uint32_t)n, ipv4, sizeof(ipv4)};
	n = raw(bad[2], 2, NULL, 0);
	bad[2][2] = (bad[2][2] & 0xF0) | 1; /* MD type 1 */
	tx[2] = (struct rdm_txframe){bad[2], (uint32_t)n, ipv4, sizeof(ipv4)};
	n = raw(bad[3], 1, NULL, 0); /* header of one word */
	tx[3] = (struct rdm_txframe){bad[3], (uint32_t)n, NULL, 0};
	n = raw(bad[4], 40, NULL, 0); /* 160 bytes claimed, 8 + 28 there */
	tx[4] = (struct rdm_txframe){bad[4], (uint32_t)n, ipv4, sizeof(ipv4)};
	n = raw(bad[5], 4, tlv_over, sizeof(tlv_over));
	tx[5] = (struct rdm_txframe){bad[5], (uint32_t)n, ipv4, sizeof(ipv4)};
	n = raw(bad[6], 4, tlv_val, sizeof(tlv_val));
	tx[6] = (struct rdm_txframe){bad[6], (uint32_t)n, ipv4, sizeof(ipv4)};
	n = raw(bad[7], 3, tlv_crit, sizeof(tlv_crit));
	tx[7] = (struct rdm_txframe){bad[7], (uint32_t)n, ipv4, sizeof(ipv4)};
	cr_assert_eq(rdm_conn_send(p.c, tx, nbad), nbad);
	RUN_UNTIL(srv.got == (uint32_t)nbad, 5000);
	cr_assert_eq(srv.got, nbad);
	for (int i = 0; i < nbad; i++) {
		cr_assert_eq(srv.rc[i], want[i], "frame %d: %d (%s), want %d (%s)", i, srv.rc[i],
			     rdm_frame_strerror(srv.rc[i]), want[i], rdm_frame_strerror(want[i]));
		for (int j = 0; j < i; j++)
			cr_assert_neq(srv.rc[i], srv.rc[j], "each its own error");
	}
	cr_assert(p.c->up, "malformed frames are the application's business");
	cr_assert_eq(srv.downs, 0);

	/* Valid frames on the same connection decode, one at a time and as a batch. */
	for (int i = 0; i < ngood; i++) {
		struct rdm_frame f;
		struct rdm_txframe t;
		int len;

		rdm_frame_init(&f, 0xABCDEF, 200, RDM_NSH_NP_IPV4);
		f.present = RDM_F_SEQ | RDM_F_FLOW_ID;
		f.origin = 7;
		f.seq = 1000 + (uint64_t)i;
		f.flow_id = 0x1122334455667788ull;
		f.pkt = ipv4;
		f.pkt_len = sizeof(ipv4);
		len = rdm_frame_encode(&f, good[i], sizeof(good[i]));
		cr_assert_gt(len, 0);
		t = (struct rdm_txframe){good[i], (uint32_t)len, NULL, 0};
		cr_assert_eq(rdm_conn_send(p.c, &t, 1), 1);
		if (i % 4 == 0)
			rdm_loop_run_once(loop, 0);
	}
	RUN_UNTIL(srv.got == (uint32_t)(nbad + ngood), 5000);
	cr_assert_eq(srv.got, nbad + ngood);
	for (int i = 0; i < ngood; i++) {
		cr_assert_eq(srv.rc[nbad + i], 0, "valid frame %d: %s", i,
			     rdm_frame_strerror(srv.rc[nbad + i]));
		cr_assert_eq(srv.seq[nbad + i], 1000 + (uint32_t)i, "in order");
	}
	cr_assert_eq(srv.last->stats.rx_frames, (uint64_t)(nbad + ngood));
	cr_assert(p.c->up);
	pair_close(&p);
}

/* A caller that stops at `congested` never has frames refused, whatever the sizes: the send
 * slots that non-inline frames hold while in flight count too. 256 KiB of 4 KiB frames is
 * 64 send slots against 64 credits. */
Test(rdma, small_send_queue_congests_before_refusing)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint32_t next = 0;

	NEED_RDMA();
	o.queue_bytes = 256 << 10;
	pair_open(&p, 18511, &o);
	stream(p.c, &next, 20000, 60000); /* send_some asserts each batch is taken whole */
	cr_assert_eq(srv.got, 20000);
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(p.c->stats.queue_full, 0);
	pair_close(&p);
}

/* tx_frames counts frames, as in the TCP backend: not credit returns or keepalives. */
Test(rdma, tx_frames_counts_frames_not_control_messages)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint32_t next = 0;

	NEED_RDMA();
	o.keepalive_ms = 300;
	pair_open(&p, 18512, &o);
	stream(p.c, &next, 5000, 60000); /* one-way: the server only returns credits */
	RUN_FOR(400);			 /* and a keepalive or two */
	cr_assert_eq(srv.got, 5000);
	RUN_UNTIL(rdm_conn_queued(p.c) == 0, 5000);
	cr_assert_gt(srv.last->stats.credit_msgs + srv.last->stats.keepalives, 0);
	cr_assert_eq(p.c->stats.tx_frames, 5000, "client tx_frames %lu (keepalives %lu)",
		     (unsigned long)p.c->stats.tx_frames, (unsigned long)p.c->stats.keepalives);
	cr_assert_eq(srv.last->stats.tx_frames, 0,
		     "the server sent no frames: tx_frames %lu (credit_msgs %lu, keepalives %lu)",
		     (unsigned long)srv.last->stats.tx_frames,
		     (unsigned long)srv.last->stats.credit_msgs,
		     (unsigned long)srv.last->stats.keepalives);
	pair_close(&p);
}

/* ---- packing: several small frames in one message ------------------------------------ */

/* Frames of the size sequence `sz`, indexed like the sink's (index, then pattern), so
 * the sink can check them with its own size: a receiver for other sizes. */
static uint32_t (*mix_size)(uint32_t idx);

static int on_mix_frames(struct rdm_conn *c, const struct rdm_rxframe *f, int n, void *arg)
{
	struct sink *s = arg;

	for (int i = 0; i < n; i++) {
		uint32_t idx = f[i].len >= 4 ? rdm_get_be32(f[i].data) : 0xFFFFFFFFu;

		if (idx != s->expect_next || f[i].len != mix_size(idx))
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

/* Sends frames [*next, upto) of mix_size in batches of 32 while the connection takes them;
 * then runs the loop once. */
static void send_mix(struct rdm_conn *c, uint32_t *next, uint32_t upto)
{
	send_sized(c, next, upto, 32, mix_size);
	rdm_loop_run_once(loop, 5);
}

static uint32_t small_size(uint32_t idx)
{
	return 64 + (idx * 37) % 200; /* 64 .. 263 B */
}

Test(rdma, small_frames_burst_packed_intact_in_order, .timeout = 200)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs scb = {
	    .on_frames = on_mix_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_listener *l;
	struct rdm_conn *c;
	struct rdm_addr a, local;
	uint32_t next = 0, n = 20000;
	uint64_t end;

	NEED_RDMA();
	mix_size = small_size;
	a = addr_of(1, 18516);
	local = addr_of(0, 1);
	l = rdm_listen(&rdm_rdma_ops, loop, &a, &o, &scb);
	cr_assert_not_null(l);
	o.local = &local;
	c = rdm_connect(&rdm_rdma_ops, loop, &a, &o, &ccb);
	cr_assert_not_null(c);
	RUN_UNTIL(c->up && srv.ups, 10000);
	cr_assert(c->up && srv.ups);
	/* A lone frame is never held back to fill a message: it goes at once, inline. */
	send_mix(c, &next, 1);
	RUN_UNTIL(srv.got == 1, 2000);
	cr_assert_eq(srv.got, 1);
	cr_assert_eq(c->stats.inline_sends, 1, "a lone small frame goes inline");
	cr_assert_eq(c->stats.tx_packed, 0, "and unpacked");
	end = rdm_now_ns() + 150000000000ull;
	while (srv.got < n && rdm_now_ns() < end)
		send_mix(c, &next, n);
	RUN_UNTIL(rdm_conn_queued(c) == 0, 5000);
	cr_log_info("%u frames in %lu messages (%lu packed), %lu inline, credit stalls %lu", n,
		    (unsigned long)c->stats.tx_msgs, (unsigned long)c->stats.tx_packed,
		    (unsigned long)c->stats.inline_sends, (unsigned long)c->stats.credit_stalls);
	cr_assert_eq(srv.got, n, "received %u of %u", srv.got, n);
	cr_assert_eq(srv.bad, 0, "intact and in order");
	cr_assert_eq(srv.last->stats.rx_frames, n, "rx_frames counts frames, not messages");
	cr_assert_eq(c->stats.tx_frames, n, "tx_frames counts frames, not messages");
	cr_assert_gt(c->stats.tx_packed, 0);
	cr_assert_leq(c->stats.tx_msgs * 4, c->stats.tx_frames,
		      "packed: %lu messages for %lu frames", (unsigned long)c->stats.tx_msgs,
		      (unsigned long)c->stats.tx_frames);
	cr_assert_eq(srv.last->stats.rx_packed, c->stats.tx_packed);
	cr_assert_eq(srv.last->stats.rx_bad_len, 0);
	cr_assert_eq(c->stats.queue_full + c->stats.disconnects + c->stats.wc_errors, 0);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_rdma_ops, l);
	RUN_FOR(20);
}

/* Small ones to pack, one at the inline limit, ones too large to share a slot, one of the
 * slot size exactly (no room for a record header), and runs that fill a slot. */
static uint32_t mixed_size(uint32_t idx)
{
	static const uint32_t s[] = {64,  100, 3000, 80,   MAXF, 70,   1500, 1500, 1500,     512,
				     513, 90,  2040, 2040, 2041, 4000, 64,   200,  MAXF - 4, 66};

	return s[idx % (sizeof(s) / sizeof(s[0]))];
}

/* Run with plenty of credits (whole batches go at once) and with 4 (most frames wait in
 * the queue and are packed there), each with a receiver that pauses now and then. */
static void mixed_batches(int port, uint32_t credits)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs scb = {
	    .on_frames = on_mix_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_listener *l;
	struct rdm_conn *c;
	struct rdm_addr a, local;
	uint32_t next = 0, n = 6000;
	uint64_t end;

	mix_size = mixed_size;
	o.credits = credits;
	a = addr_of(1, port);
	local = addr_of(0, 1);
	l = rdm_listen(&rdm_rdma_ops, loop, &a, &o, &scb);
	cr_assert_not_null(l);
	o.local = &local;
	c = rdm_connect(&rdm_rdma_ops, loop, &a, &o, &ccb);
	cr_assert_not_null(c);
	RUN_UNTIL(c->up && srv.ups, 10000);
	cr_assert(c->up && srv.ups);
	end = rdm_now_ns() + 150000000000ull;
	for (int r = 0; srv.got < n && rdm_now_ns() < end; r++) {
		send_mix(c, &next, n);
		if (r % 50 == 10 && srv.last) { /* a receiver that stalls for a moment */
			rdm_conn_pause_rx(srv.last);
			for (int k = 0; k < 5; k++)
				send_mix(c, &next, n);
			rdm_conn_resume_rx(srv.last);
		}
	}
	RUN_UNTIL(rdm_conn_queued(c) == 0, 5000);
	cr_log_info("credits %u: %u frames in %lu messages (%lu packed), %lu inline, stalls %lu",
		    credits, n, (unsigned long)c->stats.tx_msgs, (unsigned long)c->stats.tx_packed,
		    (unsigned long)c->stats.inline_sends, (unsigned long)c->stats.credit_stalls);
	cr_assert_eq(srv.got, n, "received %u of %u", srv.got, n);
	cr_assert_eq(srv.bad, 0, "intact and in order");
	cr_assert_eq(c->stats.tx_frames, n);
	cr_assert_gt(c->stats.tx_packed, 0, "small neighbours share a message");
	cr_assert_lt(c->stats.tx_msgs, n);
	cr_assert_eq(srv.last->stats.rx_bad_len, 0);
	cr_assert_eq(c->stats.queue_full + c->stats.disconnects + c->stats.wc_errors, 0);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_rdma_ops, l);
	RUN_FOR(20);
}

Test(rdma, mixed_small_and_large_frames_in_one_batch_stay_in_order, .timeout = 200)
{
	NEED_RDMA();
	mixed_batches(18517, 64);
}

Test(rdma, mixed_frames_packed_while_waiting_for_credits, .timeout = 200)
{
	NEED_RDMA();
	mixed_batches(18518, 4);
}

/* Appends frame idx (the sink's sizes) as a record at *used in m. */
static void add_record(uint8_t *m, uint32_t *used, uint32_t idx)
{
	uint32_t at = RDM_RDMA_REC_ALIGN(*used), len = fill(m + at + 4, idx);

	m[at] = (uint8_t)(len >> 24);
	m[at + 1] = (uint8_t)(len >> 16);
	m[at + 2] = (uint8_t)(len >> 8);
	m[at + 3] = (uint8_t)len;
	*used = at + 4 + len;
}

/* Posts m as one packed message, waiting for a credit if need be. */
static void post_packed(struct rdm_conn *c, const uint8_t *m, uint32_t len)
{
	int rc;

	for (int t = 0;
	     (rc = rdm_rdma__send_raw(c, RDM_RDMA_IMM_PACKED, m, len)) == -EAGAIN && t < 1000; t++)
		rdm_loop_run_once(loop, 2);
	cr_assert_eq(rc, 0, "send_raw: %s", strerror(-rc));
	rdm_loop_run_once(loop, 2);
}

Test(rdma, malformed_packed_message_counted_rest_dropped_connection_survives)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	static uint8_t m[MAXF];
	uint32_t used, next;

	NEED_RDMA();
	pair_open(&p, 18519, &o);
	/* frame 0, then a record claiming 9999 bytes */
	used = 0;
	add_record(m, &used, 0);
	memcpy(m + RDM_RDMA_REC_ALIGN(used),
	       "\0\0\x27\x0f"
	       "abcdefgh",
	       12);
	post_packed(p.c, m, RDM_RDMA_REC_ALIGN(used) + 12);
	/* frame 1, then 2 bytes: too short for a record header */
	used = 0;
	add_record(m, &used, 1);
	m[RDM_RDMA_REC_ALIGN(used)] = 0;
	m[RDM_RDMA_REC_ALIGN(used) + 1] = 1;
	post_packed(p.c, m, RDM_RDMA_REC_ALIGN(used) + 2);
	/* an empty packed message; one whose only record claims 4 GiB - 1 */
	post_packed(p.c, m, 0);
	memset(m, 0xFF, 8);
	post_packed(p.c, m, 8);
	/* frames 2, 3 and 4, well formed, built by hand from the documented layout, the
	 * last one unpadded */
	used = 0;
	for (uint32_t i = 2; i < 5; i++)
		add_record(m, &used, i);
	post_packed(p.c, m, used);
	RUN_UNTIL(srv.got == 5, 5000);
	cr_assert_eq(srv.got, 5, "the whole records arrive: %u of 5", srv.got);
	cr_assert_eq(srv.bad, 0, "intact and in order");
	cr_assert_eq(srv.last->stats.rx_bad_len, 4, "each malformed message counted once: %lu",
		     (unsigned long)srv.last->stats.rx_bad_len);
	cr_assert_eq(srv.last->stats.rx_packed, 5);
	cr_assert(p.c->up, "the connection carries on");
	cr_assert_eq(srv.downs + cli.downs, 0);
	next = 5;
	stream(p.c, &next, 3000, 30000); /* credits came back for every slot */
	cr_assert_eq(srv.got, 3000);
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(srv.last->stats.rx_frames, 3000);
	cr_assert_eq(srv.last->stats.rx_bad_len, 4);
	pair_close(&p);
}

/* ---- forwarding: rxe0 -> rxe1 -> rxe2, the middle hop zero copy ---------------------- */

static struct fwd {
	struct rdm_conn *out; /* the middle hop's outbound connection, on rxe1 */
	uint32_t forwarded, paused;
} fw;
static struct sink fin, mid;

/* The middle hop: every frame goes on with a new header and the packet straight from
 * the receive slot; a congested outbound pauses the inbound. */
static int on_fwd_frames(struct rdm_conn *c, const struct rdm_rxframe *f, int n, void *arg)
{
	struct rdm_txframe tx[64];
	uint8_t hdr[64][16];
	int rc;

	if (!fw.out || !fw.out->up || fw.out->congested) {
		fw.paused++;
		return 0;
	}
	for (int i = 0; i < n && i < 64; i++) {
		memcpy(hdr[i], f[i].data, 16);
		tx[i] = (struct rdm_txframe){hdr[i], 16, f[i].data + 16, f[i].len - 16};
	}
	rc = rdm_conn_send(fw.out, tx, n < 64 ? n : 64);
	if (rc < 0)
		return 0;
	fw.forwarded += (uint32_t)rc;
	return rc;
}

static void on_fwd_writable(struct rdm_conn *c, void *arg)
{
	mid.writable++;
	if (srv.last)
		rdm_conn_resume_rx(srv.last);
}

Test(rdma, forwarding_zero_copy_intact_in_order, .timeout = 300)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs mcb = {
	    .on_frames = on_fwd_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs fcb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &fin};
	struct rdm_conn_cbs ocb = {.on_frames = on_frames,
				   .on_writable = on_fwd_writable,
				   .on_state = on_state,
				   .arg = &mid};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_addr a2, a3, l1, l2;
	struct rdm_listener *lm, *lf;
	struct rdm_conn *c;
	uint32_t next = 0, n = 20000;
	uint64_t end;

	NEED_RDMA();
	memset(&fin, 0, sizeof(fin));
	memset(&mid, 0, sizeof(mid));
	memset(&fw, 0, sizeof(fw));
	a2 = addr_of(1, 18513);
	a3 = addr_of(2, 18514);
	l1 = addr_of(0, 1);
	l2 = addr_of(1, 1);
	lm = rdm_listen(&rdm_rdma_ops, loop, &a2, &o, &mcb);
	lf = rdm_listen(&rdm_rdma_ops, loop, &a3, &o, &fcb);
	cr_assert_not_null(lm);
	cr_assert_not_null(lf);
	o.local = &l2;
	fw.out = rdm_connect(&rdm_rdma_ops, loop, &a3, &o, &ocb);
	o.local = &l1;
	c = rdm_connect(&rdm_rdma_ops, loop, &a2, &o, &ccb);
	cr_assert_not_null(fw.out);
	cr_assert_not_null(c);
	RUN_UNTIL(c->up && fw.out->up && srv.ups && fin.ups, 10000);
	cr_assert(c->up && fw.out->up && srv.ups && fin.ups, "all three hops up");

	end = rdm_now_ns() + 200000000000ull;
	while (fin.got < n && rdm_now_ns() < end) {
		send_some(c, &next, n);
		rdm_loop_run_once(loop, 5);
	}
	cr_log_info("forwarded %u, zero copy %lu, inline %lu, paused %u times", fw.forwarded,
		    (unsigned long)fw.out->stats.zero_copy,
		    (unsigned long)fw.out->stats.inline_sends, fw.paused);
	cr_assert_eq(fin.got, n, "received %u of %u at the end of the chain", fin.got, n);
	cr_assert_eq(fin.bad, 0, "intact and in order");
	cr_assert_gt(fw.out->stats.zero_copy, 0, "the middle hop sends from receive slots");
	cr_assert_eq(fw.out->stats.queue_full, 0);
	cr_assert_eq(c->stats.queue_full, 0);
	cr_assert_eq(c->stats.disconnects + fw.out->stats.disconnects, 0);
	/* The receive slots held by zero-copy sends all came back: the first hop keeps
	 * flowing at full credit after the chain drains. */
	RUN_UNTIL(rdm_conn_queued(fw.out) == 0 && rdm_conn_queued(c) == 0, 5000);
	end = rdm_now_ns() + 60000000000ull;
	while (fin.got < n + 2000 && rdm_now_ns() < end) {
		send_some(c, &next, n + 2000);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_eq(fin.got, n + 2000);
	cr_assert_eq(fin.bad, 0);
	rdm_conn_close(c);
	rdm_conn_close(fw.out);
	fw.out = NULL;
	rdm_listener_close(&rdm_rdma_ops, lm);
	rdm_listener_close(&rdm_rdma_ops, lf);
	RUN_FOR(20);
}
