/* pingpong: round trips of one frame over a transport, to measure the transport alone
 * (no node, no stages). The server echoes every frame back on the same connection.
 *   pingpong server tcp|rdma|shm ADDR:PORT [POLL [SPIN_US]]
 *   pingpong client tcp|rdma|shm ADDR:PORT LOCAL_IP:PORT(ignored) SIZE COUNT [SPIN_US [POLL]]
 * POLL is how both loops wait, as a node's poll: busy (the default: never blocks, as
 * ib_send_lat and sockperf --nonblocked do) or adaptive (polls SPIN_US after traffic, then
 * sleeps; back-to-back round trips keep it polling). SPIN_US (default 20) is also how
 * long the RDMA and shm pollers stay hot. The client prints "p50_us p99_us" of half the
 * round trip. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hist.h"
#include "transport/transport.h"

static int echo(struct rdm_conn *c, const struct rdm_rxframe *f, int n, void *arg)
{
	struct rdm_txframe tx[64];

	for (int i = 0; i < n && i < 64; i++)
		tx[i] = (struct rdm_txframe){f[i].data, f[i].len, NULL, 0};
	return rdm_conn_send(c, tx, n < 64 ? n : 64);
}

static int got;

static int count(struct rdm_conn *c, const struct rdm_rxframe *f, int n, void *arg)
{
	got += n;
	return n;
}

int main(int argc, char **argv)
{
	static struct rdm_hist h;
	const struct rdm_transport_ops *ops;
	struct rdm_conn_opts o = {.max_frame = 16384, .batch = 32, .keepalive_ms = 10000};
	struct rdm_loop *l = rdm_loop_new();
	struct rdm_addr a, local;
	enum rdm_poll_mode mode = RDM_POLL_BUSY;
	const char *spin, *poll;
	int srv, wait;

	if (argc < 4 || !(ops = rdm_transport_find(argv[2])) || rdm_addr_parse(&a, argv[3]) < 0) {
		fprintf(stderr, "usage: see the comment in tests/tools/pingpong.c\n");
		return 2;
	}
	srv = !strcmp(argv[1], "server");
	spin = argc > (srv ? 5 : 7) ? argv[srv ? 5 : 7] : NULL;
	poll = argc > (srv ? 4 : 8) ? argv[srv ? 4 : 8] : NULL;
	o.spin_us = spin ? (uint32_t)atoi(spin) : 20;
	if (poll && rdm_poll_mode_parse(poll, &mode) < 0) {
		fprintf(stderr, "pingpong: poll %s: not sleep, adaptive or busy\n", poll);
		return 2;
	}
	rdm_loop_set_poll(l, mode, o.spin_us);
	/* Busy never blocks; adaptive blocks only once it has spun spin_us idle. */
	wait = mode == RDM_POLL_BUSY ? 0 : -1;
	if (srv) {
		struct rdm_conn_cbs cbs = {.on_frames = echo};

		if (!rdm_listen(ops, l, &a, &o, &cbs)) {
			perror("pingpong: listen");
			return 1;
		}
		for (;;)
			rdm_loop_run_once(l, wait);
	}
	if (argc < 7 || rdm_addr_parse(&local, argv[4]) < 0)
		return 2;
	{
		struct rdm_conn_cbs cbs = {.on_frames = count};
		int size = atoi(argv[5]), n = atoi(argv[6]);
		static uint8_t buf[16384];
		struct rdm_conn *c;
		uint64_t end;

		o.local = &local;
		c = rdm_connect(ops, l, &a, &o, &cbs);
		end = rdm_now_ns() + 10000000000ull;
		while (!c->up && rdm_now_ns() < end)
			rdm_loop_run_once(l, 10);
		if (!c->up) {
			fprintf(stderr, "pingpong: no connection\n");
			return 1;
		}
		rdm_hist_init(&h);
		memset(buf, 0xA5, sizeof(buf));
		for (int i = 0; i < n + 100; i++) {
			struct rdm_txframe tx = {buf, (uint32_t)size, NULL, 0};
			uint64_t t0 = rdm_now_ns();
			int want = got + 1;

			if (rdm_conn_send(c, &tx, 1) != 1)
				return 1;
			while (got < want)
				rdm_loop_run_once(l, wait);
			if (i >= 100) /* warm-up done */
				rdm_hist_add(&h, (rdm_now_ns() - t0) / 2);
		}
		printf("%.1f %.1f\n", rdm_hist_pct(&h, 50) / 1000.0, rdm_hist_pct(&h, 99) / 1000.0);
		fflush(stdout);
		rdm_conn_close(c);
	}
	rdm_loop_free(l); /* runs the deferred frees: nothing is left for LeakSanitizer */
	return 0;
}
