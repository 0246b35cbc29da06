/* The RDMA backend over Soft-RoCE: both ends run in one event loop in the test process,
 * the client bound to the first rxe address and the listener on the second, so traffic
 * really goes rxe0 -> veth -> bridge -> veth -> rxe1. These need an RDMA device: they run
 * in the QEMU guest (tests/softroce/guest.sh) and skip anywhere else. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transport/frame.h"
#include "transport/rdma.h"
#include "transport/transport.h"

#define MAXF 4096
#define MINF 64
/* 64 .. MAXF inclusive; about one in eight fits the 512 inline bytes rxe grants. */
#define SINK_MIN  MINF
#define SINK_SPAN (MAXF - MINF + 1)

#include "tests/lib/raw.h"
#include "tests/lib/sink.h"
#define SKIP_WHY "no RDMA device here: these run in the Soft-RoCE guest (make test-rdma)"

static struct rdm_loop *loop;
static struct sink srv, cli;
static char rxe[3][32]; /* the guest's rxe addresses, from RDM_RXE_ADDRS */

/* ---- environment -------------------------------------------------------------------- */

static int rdma_here(void)
{
	const char *env = getenv("RDM_RXE_ADDRS");
	struct ibv_device **devs;
	int n = 0;

	if (!env || sscanf(env, "%31s %31s %31s", rxe[0], rxe[1], rxe[2]) != 3)
		return 0;
	devs = ibv_get_device_list(&n);
	if (devs)
		ibv_free_device_list(devs);
	return devs && n > 0;
}

#define NEED_RDMA()                                                                                \
	do {                                                                                       \
		if (!rdma_here())                                                                  \
			cr_skip_test(SKIP_WHY);                                                    \
	} while (0)

static void setup(void)
{
	loop = rdm_loop_new();
	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
}

static void teardown(void)
{
	rdm_loop_free(loop);
}

/* rxe address i (0..2) with a port. */
static struct rdm_addr addr_of(int i, int port)
{
	struct rdm_addr a;
	char text[64];

	snprintf(text, sizeof(text), "%s:%d", rxe[i], port);
	cr_assert_eq(rdm_addr_parse(&a, text), 0, "bad address %s", text);
	return a;
}

/* Open file descriptors of this process. */
static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own */
}

/* Lines of `rdma resource show WHAT` that belong to this process ("... pid N comm X"). */
static int res_count(const char *what)
{
	char cmd[96], line[1024], needle[32];
	FILE *p;
	int n = 0;

	snprintf(cmd, sizeof(cmd), "rdma resource show %s 2>&1", what);
	snprintf(needle, sizeof(needle), " pid %d ", (int)getpid());
	p = popen(cmd, "r");
	cr_assert_not_null(p, "popen rdma");
	while (fgets(line, sizeof(line), p))
		if (strstr(line, needle))
			n++;
	cr_assert_eq(pclose(p), 0, "`%s` failed", cmd);
	return n;
}

/* ---- frames --------------------------------------------------------------------------- */

/* 2 MiB of 4 KiB frames is 512 send slots. Non-inline frames hold a send slot until their
 * completion, and up to sq_depth (2 * credits + 16 = 144) can be posted and not yet
 * completed, on top of the half of the slots that may wait before `congested`: smaller
 * queues see queue_full (small_send_queue_congests_before_refusing). */
static struct rdm_conn_opts opts(void)
{
	struct rdm_conn_opts o = {.queue_bytes = 2 << 20,
				  .max_frame = MAXF,
				  .backoff_min_ms = 10,
				  .backoff_max_ms = 100,
				  .batch = 32,
				  .inline_max = 512};
	return o;
}

#define RUN_UNTIL(cond, ms)                                                                        \
	do {                                                                                       \
		uint64_t end_ = rdm_now_ns() + (uint64_t)(ms)*1000000ull;                          \
		while (!(cond) && rdm_now_ns() < end_)                                             \
			rdm_loop_run_once(loop, 5);                                                \
	} while (0)

/* Runs the loop for ms whatever happens. */
#define RUN_FOR(ms) RUN_UNTIL(0, ms)

/* Fills frame idx (index in the first 4 bytes, then the pattern) into b. */
/* Streams frames [*next, upto) and waits until the receiver has them all. */
static void stream(struct rdm_conn *c, uint32_t *next, uint32_t upto, uint32_t ms)
{
	uint64_t end = rdm_now_ns() + (uint64_t)ms * 1000000ull;

	while (srv.got < upto && rdm_now_ns() < end) {
		send_some(c, next, upto);
		rdm_loop_run_once(loop, 5);
	}
}

/* A listener on rxe address #2 and a client bound to #1, both up. */
struct pair {
	struct rdm_addr a, local;
	struct rdm_conn_opts o;
	struct rdm_listener *l;
	struct rdm_conn *c;
};

static void pair_open(struct pair *p, int port, const struct rdm_conn_opts *o)
{
	struct rdm_conn_cbs scb = {on_frames, NULL, on_state, &srv};
	struct rdm_conn_cbs ccb = {on_frames, on_writable, on_state, &cli};

	p->o = *o;
	p->a = addr_of(1, port);
	p->local = addr_of(0, 1);
	p->l = rdm_listen(&rdm_rdma_ops, loop, &p->a, &p->o, &scb);
	cr_assert_not_null(p->l, "listen on %s: %s", p->a.text, strerror(errno));
	p->o.local = &p->local;
	p->c = rdm_connect(&rdm_rdma_ops, loop, &p->a, &p->o, &ccb);
	cr_assert_not_null(p->c, "connect: %s", strerror(errno));
	RUN_UNTIL(p->c->up && srv.ups, 10000);
	cr_assert(p->c->up, "connection up (connect_fails %lu)",
		  (unsigned long)p->c->stats.connect_fails);
	cr_assert_eq(srv.ups, 1);
	cr_assert_not_null(srv.last);
}

/* Closes everything and lets the deferred frees run. */
static void pair_close(struct pair *p)
{
	if (p->c)
		rdm_conn_close(p->c);
	if (p->l)
		rdm_listener_close(&rdm_rdma_ops, p->l);
	p->c = NULL;
	p->l = NULL;
	RUN_FOR(20);
}

TestSuite(rdma, .init = setup, .fini = teardown, .timeout = 120);

/* ---- tests ---------------------------------------------------------------------------- */

Test(rdma, connect_teardown_100_times_no_leaks, .timeout = 300)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a, local;
	struct rdm_conn_cbs scb = {on_frames, NULL, on_state, &srv};
	struct rdm_conn_cbs ccb = {on_frames, on_writable, on_state, &cli};
	struct rdm_listener *l;
	int fds0 = 0, qp0 = 0, mr0 = 0, cm0 = 0, srq0 = 0;

	NEED_RDMA();
	a = addr_of(1, 18501);
	local = addr_of(0, 1);
	l = rdm_listen(&rdm_rdma_ops, loop, &a, &o, &scb);
	cr_assert_not_null(l, "listen: %s", strerror(errno));
	o.local = &local;
	for (int i = 0; i < 100; i++) {
		struct rdm_conn *c = rdm_connect(&rdm_rdma_ops, loop, &a, &o, &ccb);
		uint32_t next = 0;

		cr_assert_not_null(c);
		RUN_UNTIL(c->up && srv.ups == i + 1, 10000);
		cr_assert(c->up, "cycle %d: up", i);
		cr_assert_eq(srv.ups, i + 1, "cycle %d: accepted", i);
		cr_assert_eq(c->stats.connects, 1, "cycle %d", i);
		cr_assert_eq(c->stats.connect_fails, 0, "cycle %d", i);
		cr_assert_eq(c->epoch, 1);
		if (i % 10 == 0) { /* now and then, traffic on it too */
			srv.expect_next = 0;
			srv.got = 0;
			stream(c, &next, 50, 10000);
			cr_assert_eq(srv.got, 50, "cycle %d", i);
			cr_assert_eq(srv.bad, 0);
		}
		rdm_conn_close(c);
		RUN_UNTIL(srv.downs == i + 1, 10000);
		cr_assert_eq(srv.downs, i + 1, "cycle %d: the accepted side sees the close", i);
		cr_assert_eq(cli.downs, 0, "closing is not a down call on the closing side");
		RUN_FOR(2); /* deferred frees */
		if (i == 0) {
			/* What the first cycle leaves is the per-device contexts (PD, CQ and its
			 * channel, SRQ, one receive MR per device) and the listener's cm_id. */
			fds0 = fd_count();
			qp0 = res_count("qp");
			mr0 = res_count("mr");
			cm0 = res_count("cm_id");
			srq0 = res_count("srq");
			cr_assert_eq(qp0, 0, "no QP left after a close");
			cr_assert_eq(mr0, 2, "one receive MR per device (rxe0, rxe1), got %d", mr0);
			cr_assert_eq(cm0, 1, "only the listener's cm_id, got %d", cm0);
		}
	}
	cr_assert_eq(fd_count(), fds0, "fds: %d after 100 cycles, %d after the first", fd_count(),
		     fds0);
	cr_assert_eq(res_count("qp"), qp0);
	cr_assert_eq(res_count("mr"), mr0);
	cr_assert_eq(res_count("cm_id"), cm0);
	cr_assert_eq(res_count("srq"), srq0);
	rdm_listener_close(&rdm_rdma_ops, l);
	RUN_FOR(20);
	/* The last user gone, the worker frees its contexts too. */
	cr_assert_eq(res_count("qp"), 0);
	cr_assert_eq(res_count("mr"), 0);
	cr_assert_eq(res_count("cm_id"), 0);
	cr_assert_eq(res_count("srq"), 0);
}

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

Test(rdma, peer_close_detected_and_reconnect, .timeout = 200)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs scb = {on_frames, NULL, on_state, &srv};
	struct pair p;
	struct rdm_txframe tx;
	uint8_t b[64] = {0};
	uint32_t next = 0;
	uint64_t t0;

	NEED_RDMA();
	pair_open(&p, 18504, &o);
	stream(p.c, &next, 100, 10000);
	cr_assert_eq(srv.got, 100);
	cr_assert_eq(p.c->epoch, 1);

	t0 = rdm_now_ns();
	rdm_listener_close(&rdm_rdma_ops, p.l); /* the peer goes away, its connections with it */
	p.l = NULL;
	RUN_UNTIL(!p.c->up, 5000);
	cr_assert_eq(p.c->up, 0, "the client sees the peer's close");
	cr_assert_eq(cli.downs, 1);
	cr_assert_eq(p.c->stats.disconnects, 1);
	cr_log_info("down detected after %.0f ms", (double)(rdm_now_ns() - t0) / 1e6);
	tx = (struct rdm_txframe){b, 8, NULL, 0};
	cr_assert_eq(rdm_conn_send(p.c, &tx, 1), -ENOTCONN, "sending while down is refused");

	RUN_UNTIL(p.c->stats.connect_fails >= 2, 5000);
	cr_assert_geq(p.c->stats.connect_fails, 2, "it keeps retrying with backoff");
	cr_assert_eq(rdm_conn_send(p.c, &tx, 1), -ENOTCONN);
	srv.expect_next = 100;
	p.l = rdm_listen(&rdm_rdma_ops, loop, &p.a, &o, &scb); /* the peer is back */
	cr_assert_not_null(p.l, "listen again: %s", strerror(errno));
	RUN_UNTIL(p.c->up && srv.ups == 2, 10000);
	cr_assert(p.c->up, "reconnected");
	cr_assert_eq(srv.ups, 2);
	cr_assert_eq(p.c->epoch, 2);
	cr_assert_eq(p.c->stats.connects, 2);
	cr_assert_eq(cli.ups, 2);
	stream(p.c, &next, 300, 10000);
	cr_assert_eq(srv.got, 300);
	cr_assert_eq(srv.bad, 0);
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

Test(rdma, unreachable_peer_retries_with_backoff, .timeout = 60)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs ccb = {on_frames, on_writable, on_state, &cli};
	struct rdm_addr a, local;
	struct rdm_conn *c;
	uint64_t t[64], t0, end;
	int nf = 0;

	NEED_RDMA();
	a = addr_of(2, 18508); /* rxe2's address: a device, but nobody listens */
	local = addr_of(0, 1);
	o.local = &local;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 400;
	c = rdm_connect(&rdm_rdma_ops, loop, &a, &o, &ccb);
	cr_assert_not_null(c);
	t0 = rdm_now_ns();
	end = t0 + 4000000000ull;
	/* Note when each failure is counted. */
	while (rdm_now_ns() < end) {
		rdm_loop_run_once(loop, 2);
		while ((uint64_t)nf < c->stats.connect_fails && nf < 64)
			t[nf++] = rdm_now_ns();
	}
	cr_log_info("%d connect failures in 4 s", nf);
	cr_assert_eq(c->up, 0);
	cr_assert_eq(cli.ups, 0);
	cr_assert_eq(c->stats.connects, 0);
	cr_assert_geq(nf, 4, "it keeps retrying: %d failures", nf);
	cr_assert_lt(nf, 40, "not in a tight loop: %d failures", nf);
	/* Failure k+1 comes at least the k-th backoff after failure k: 50, 100, 200, 400, 400 */
	for (int k = 0; k + 1 < nf; k++) {
		uint64_t want = 50u << (k < 3 ? k : 3);
		double gap = (double)(t[k + 1] - t[k]) / 1e6;

		cr_assert_geq(gap, (double)want * 0.9, "gap %d: %.0f ms, backoff %lu ms", k, gap,
			      (unsigned long)want);
	}
	cr_assert_eq(rdm_conn_send(c, &(struct rdm_txframe){(const uint8_t *)"x", 1, NULL, 0}, 1),
		     -ENOTCONN);
	rdm_conn_close(c);
	RUN_FOR(20);
}

Test(rdma, keepalive_idle_connection_stays_up, .timeout = 60)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint32_t next = 0;

	NEED_RDMA();
	o.keepalive_ms = 300;
	pair_open(&p, 18509, &o);
	RUN_FOR(2000); /* idle */
	cr_assert(p.c->up, "an idle connection stays up");
	cr_assert_not_null(srv.last);
	cr_assert_eq(srv.downs, 0);
	cr_assert_eq(cli.downs, 0);
	cr_assert_eq(p.c->stats.disconnects, 0);
	cr_assert_gt(p.c->stats.keepalives, 0, "the client sends keepalives");
	cr_assert_gt(srv.last->stats.keepalives, 0, "the server sends keepalives");
	cr_log_info("keepalives in 2 s: client %lu, server %lu",
		    (unsigned long)p.c->stats.keepalives,
		    (unsigned long)srv.last->stats.keepalives);
	stream(p.c, &next, 500, 10000);
	cr_assert_eq(srv.got, 500, "and still carries frames");
	cr_assert_eq(srv.bad, 0);
	pair_close(&p);
}

/* A receiver that pauses for many keepalive periods holds the sender's credits; neither
 * side may call the other dead, and traffic must resume without a deadlock. */
Test(rdma, long_pause_with_keepalive_no_timeout_no_deadlock, .timeout = 60)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint32_t next = 0, held;

	NEED_RDMA();
	o.keepalive_ms = 300;
	o.credits = 8;
	pair_open(&p, 18510, &o);
	srv.pause = 1;
	for (int i = 0; i < 2000 && !p.c->congested; i++) {
		send_some(p.c, &next, 1000000);
		rdm_loop_run_once(loop, 2);
	}
	cr_assert(p.c->congested);
	held = next;
	RUN_FOR(4000); /* more than 13 keepalive periods, more than the 8 credits */
	cr_assert(p.c->up, "the paused side's peer is not declared dead");
	cr_assert_eq(srv.downs, 0, "the paused side is not declared dead");
	cr_assert_eq(srv.got, 0);
	srv.pause = 0;
	rdm_conn_resume_rx(srv.last);
	RUN_UNTIL(srv.got == held, 10000);
	cr_assert_eq(srv.got, held, "all held frames arrive after the pause: %u of %u", srv.got,
		     held);
	stream(p.c, &next, held + 1000, 20000);
	cr_assert_eq(srv.got, held + 1000);
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(p.c->stats.disconnects, 0);
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
		uint32_t idx = f[i].len >= 4 ? get32(f[i].data) : 0xFFFFFFFFu;

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
	struct rdm_conn_cbs scb = {on_mix_frames, NULL, on_state, &srv};
	struct rdm_conn_cbs ccb = {on_frames, on_writable, on_state, &cli};
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
	struct rdm_conn_cbs scb = {on_mix_frames, NULL, on_state, &srv};
	struct rdm_conn_cbs ccb = {on_frames, on_writable, on_state, &cli};
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
	struct rdm_conn_cbs mcb = {on_fwd_frames, NULL, on_state, &srv};
	struct rdm_conn_cbs fcb = {on_frames, NULL, on_state, &fin};
	struct rdm_conn_cbs ocb = {on_frames, on_fwd_writable, on_state, &mid};
	struct rdm_conn_cbs ccb = {on_frames, on_writable, on_state, &cli};
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

/* ---- a peer in another process ----------------------------------------------------- */

/* The child: connects from rxe address #1 once told to, then just runs its loop. */
static void child_client(int port, int go)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs ccb = {on_frames, on_writable, on_state, &cli};
	struct rdm_addr a = addr_of(1, port), local = addr_of(0, 1);
	struct rdm_loop *cl;
	char b;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (read(go, &b, 1) != 1)
		_exit(1);
	cl = rdm_loop_new();
	o.keepalive_ms = 300;
	o.local = &local;
	if (!rdm_connect(&rdm_rdma_ops, cl, &a, &o, &ccb))
		_exit(2);
	for (;;)
		rdm_loop_run_once(cl, 100);
}

/* A peer that goes silent (stopped, its QP still answering in the kernel) is declared dead
 * after about keepalive_ms. */
Test(rdma, keepalive_detects_silent_peer, .timeout = 60)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs scb = {on_frames, NULL, on_state, &srv};
	struct rdm_addr a;
	struct rdm_listener *l;
	int pfd[2], st;
	pid_t pid;
	uint64_t t0;
	double ms;

	NEED_RDMA();
	cr_assert_eq(pipe(pfd), 0);
	pid = fork(); /* before this process owns any RDMA resource */
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pfd[1]);
		child_client(18515, pfd[0]);
	}
	close(pfd[0]);
	o.keepalive_ms = 300;
	a = addr_of(1, 18515);
	l = rdm_listen(&rdm_rdma_ops, loop, &a, &o, &scb);
	cr_assert_not_null(l);
	cr_assert_eq(write(pfd[1], "g", 1), 1);
	RUN_UNTIL(srv.ups == 1, 10000);
	cr_assert_eq(srv.ups, 1, "the child connected");
	RUN_FOR(1000);
	cr_assert_eq(srv.downs, 0, "a live peer is not declared dead");
	cr_assert_gt(srv.last->stats.keepalives, 0);

	kill(pid, SIGSTOP);
	t0 = rdm_now_ns();
	RUN_UNTIL(srv.downs == 1, 10000);
	ms = (double)(rdm_now_ns() - t0) / 1e6;
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(pfd[1]);
	cr_log_info("silent peer declared dead after %.0f ms", ms);
	cr_assert_eq(srv.downs, 1, "the silent peer is declared dead");
	cr_assert_geq(ms, 50, "not at once");
	cr_assert_lt(ms, 3000, "about keepalive_ms after it went silent: %.0f ms", ms);
	rdm_listener_close(&rdm_rdma_ops, l);
	RUN_FOR(20);
}
