/* The TCP backend over loopback: both ends run in one event loop in the test process,
 * once sleeping in epoll (suite tcp) and once never blocking, as a node's loop with
 * poll: busy (suite tcp_busy), where a connection that got bytes reads its socket on
 * every turn (spin_us) rather than waiting for epoll to report it. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/transport.h"

#define MAXF	  4096
#define SINK_MIN  16
#define SINK_SPAN (MAXF - 16)

#include "tests/lib/sink.h"
#include "tests/lib/loopback.h"

static struct rdm_loop *loop;
static struct sink srv, cli;

static void setup(void)
{
	loop = rdm_loop_new();
	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
}

static void setup_busy(void)
{
	setup();
	rdm_loop_set_poll(loop, RDM_POLL_BUSY, 20);
}

static void teardown(void)
{
	rdm_loop_free(loop);
}

static struct rdm_conn_opts opts(void)
{
	struct rdm_conn_opts o = {.queue_bytes = 256 << 10,
				  .max_frame = MAXF,
				  .backoff_min_ms = 10,
				  .backoff_max_ms = 100,
				  .batch = 32,
				  .spin_us = 1000};
	return o;
}

TestSuite(tcp, .init = setup, .fini = teardown, .timeout = 20);
TestSuite(tcp_busy, .init = setup_busy, .fini = teardown, .timeout = 20);

/* A test of both suites. */
#define TCP_TEST(name)                                                                             \
	static void name(void);                                                                    \
	Test(tcp, name)                                                                            \
	{                                                                                          \
		name();                                                                            \
	}                                                                                          \
	Test(tcp_busy, name)                                                                       \
	{                                                                                          \
		name();                                                                            \
	}                                                                                          \
	static void name(void)

TCP_TEST(frames_arrive_intact_and_in_order)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_listener *l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	struct rdm_conn *c = rdm_connect(&rdm_tcp_ops, loop, &a, &o, &ccb);
	uint32_t next = 0;

	cr_assert_not_null(l);
	cr_assert_not_null(c);
	RUN_UNTIL(c->up && srv.ups, 2000);
	cr_assert(c->up);
	while (srv.got < 20000) {
		send_some(c, &next, 20000);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(srv.got, 20000);
	cr_assert_eq(c->stats.tx_frames, 20000);
	cr_assert_eq(c->stats.lost_on_close, 0);
	/* A busy loop read the hot socket itself; a sleeping one only when epoll said. */
	if (rdm_loop_poll_mode(loop) == RDM_POLL_BUSY)
		cr_assert_gt(srv.last->stats.rx_polled, 0);
	else
		cr_assert_eq(srv.last->stats.rx_polled, 0);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
}

TCP_TEST(partial_writes_keep_frames_whole)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_listener *l;
	struct rdm_conn *c;
	uint32_t next = 0;

	/* A small send buffer: most writes take only part of what is queued. (A tiny
	 * receive window too would only add delayed-ACK stalls.) */
	o.sndbuf = 8192;
	l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	c = rdm_connect(&rdm_tcp_ops, loop, &a, &o, &ccb);
	RUN_UNTIL(c->up && srv.ups, 2000);
	while (srv.got < 3000) {
		send_some(c, &next, 3000);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_gt(c->stats.partial_writes, 0, "the test must exercise partial writes");
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(srv.got, 3000);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
}

TCP_TEST(backpressure_not_loss)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_listener *l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	struct rdm_conn *c = rdm_connect(&rdm_tcp_ops, loop, &a, &o, &ccb);
	uint32_t next = 0;

	RUN_UNTIL(c->up && srv.ups, 2000);
	srv.pause = 1; /* a stalled receiver */
	for (int i = 0; i < 400 && !c->congested; i++) {
		send_some(c, &next, 100000);
		rdm_loop_run_once(loop, 2);
	}
	cr_assert(c->congested, "the sender must see congestion");
	cr_assert_geq(rdm_conn_queued(c), o.queue_bytes);
	cr_assert_eq(c->stats.congested, 1);
	cr_assert_eq(c->stats.queue_full, 0);
	cr_assert_eq(srv.got, 0);

	srv.pause = 0;
	rdm_conn_resume_rx(srv.last);
	RUN_UNTIL(cli.writable > 0, 5000);
	cr_assert_gt(cli.writable, 0, "on_writable after the queue drains");
	while (srv.got < next + 1000) {
		send_some(c, &next, next < 200000 ? next + 16 : next);
		rdm_loop_run_once(loop, 2);
		if (next >= 200000)
			break;
	}
	RUN_UNTIL(srv.got == next, 5000);
	cr_assert_eq(srv.got, next, "every frame taken arrives: %u of %u", srv.got, next);
	cr_assert_eq(srv.bad, 0);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
}

/* Writes frames first..last-1 (their index first, then the pattern) to the plain socket
 * fd, as a peer's TCP backend frames them; returns the bytes written. */
static size_t write_frames(int fd, uint32_t first, uint32_t last)
{
	static uint8_t buf[4 + MAXF];
	size_t total = 0;

	for (uint32_t i = first; i < last; i++) {
		uint32_t len = fill(buf + 4, i);

		buf[0] = (uint8_t)(len >> 24), buf[1] = (uint8_t)(len >> 16);
		buf[2] = (uint8_t)(len >> 8), buf[3] = (uint8_t)len;
		cr_assert_eq(write(fd, buf, 4 + len), (ssize_t)(4 + len));
		total += 4 + len;
	}
	return total;
}

TCP_TEST(frames_buffered_when_the_peer_closes_are_delivered_first)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_listener *l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* A plain socket as the upstream: it writes 60 frames (less than the receive buffer
	 * holds, so the receiver reads them all, and the close, while it holds back) and
	 * exits, as an ingress does once its queue is in the kernel's hands. */
	cr_assert_eq(connect(fd, (struct sockaddr *)&a.ss, a.len), 0);
	RUN_UNTIL(srv.ups, 2000);
	srv.pause = 1; /* the receiver holds back (its next hop is congested) */
	write_frames(fd, 0, 60);
	close(fd);
	for (int i = 0; i < 50; i++)
		rdm_loop_run_once(loop, 2);
	cr_assert_eq(srv.got, 0);
	cr_assert_eq(srv.downs, 0, "paused with frames buffered: not down yet");
	srv.pause = 0;
	rdm_conn_resume_rx(srv.last);
	RUN_UNTIL(srv.downs == 1, 2000);
	cr_assert_eq(srv.got, 60, "every frame sent before the close arrives: %u", srv.got);
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(srv.downs, 1, "then the connection reports down");
	rdm_listener_close(&rdm_tcp_ops, l);
}

TCP_TEST(a_receiver_that_closes_counts_the_frames_it_never_took)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_listener *l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	int fd = socket(AF_INET, SOCK_STREAM, 0), unacked = 1;
	size_t total;

	/* A plain socket as the upstream; the receiver holds back (its next hop is
	 * congested) and reads 20 frames into its buffer, taking none. */
	cr_assert_eq(connect(fd, (struct sockaddr *)&a.ss, a.len), 0);
	RUN_UNTIL(srv.ups, 2000);
	srv.pause = 1;
	total = write_frames(fd, 0, 20);
	RUN_UNTIL(srv.last->stats.rx_bytes == total, 2000);
	cr_assert_eq(srv.last->stats.rx_bytes, total);
	/* 10 more reach its kernel (acknowledged) while its loop does not run. */
	write_frames(fd, 20, 30);
	for (int i = 0; i < 20000 && unacked; i++) {
		cr_assert_eq(ioctl(fd, SIOCOUTQ, &unacked), 0);
		if (unacked)
			usleep(100);
	}
	cr_assert_eq(unacked, 0, "the receiver's kernel holds every byte sent");
	/* It closes (its node stops): the 20 it read and the 10 it reads away at the close
	 * are counted, none taken. */
	rdm_conn_close(srv.last);
	cr_assert_eq(srv.got, 0);
	cr_assert_eq(srv.last->stats.rx_lost_on_close, 30, "30 frames lost and counted: %lu",
		     (unsigned long)srv.last->stats.rx_lost_on_close);
	close(fd);
	rdm_listener_close(&rdm_tcp_ops, l);
}

TCP_TEST(closing_with_unread_frames_from_the_peer_loses_nothing_it_sent)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_listener *l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	struct rdm_conn *c = rdm_connect(&rdm_tcp_ops, loop, &a, &o, &ccb);
	static uint8_t back[64];
	struct rdm_txframe tx = {back, 16, back + 16, 48};
	uint32_t next = 0;

	RUN_UNTIL(c->up && srv.ups, 2000);
	srv.pause = 1; /* frames pile up at the receiver, much of them in its kernel */
	for (int i = 0; i < 200 && next < 400; i++) {
		send_some(c, &next, 400);
		rdm_loop_run_once(loop, 2);
	}
	RUN_UNTIL(rdm_conn_queued(c) == 0, 5000);
	cr_assert_eq(next, 400);
	cr_assert_eq(rdm_conn_queued(c), 0, "everything sent is in the kernels' hands");
	/* The receiver answers (a policy reply going back); the sender closes before it
	 * reads the answer, as an ingress that is done does. */
	fill_len(back, 0, sizeof(back));
	cr_assert_eq(rdm_conn_send(srv.last, &tx, 1), 1);
	rdm_conn_close(c);
	srv.pause = 0;
	rdm_conn_resume_rx(srv.last);
	RUN_UNTIL(srv.downs == 1, 5000);
	cr_assert_eq(srv.got, 400, "all 400 frames arrive: %u", srv.got);
	cr_assert_eq(srv.bad, 0);
	rdm_listener_close(&rdm_tcp_ops, l);
}

TCP_TEST(reconnects_after_peer_restart)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_listener *l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	struct rdm_conn *c = rdm_connect(&rdm_tcp_ops, loop, &a, &o, &ccb);
	struct rdm_txframe tx;
	uint8_t b[64] = {0};
	uint32_t next = 0;

	RUN_UNTIL(c->up && srv.ups, 2000);
	send_some(c, &next, 100);
	RUN_UNTIL(srv.got == 100, 2000);
	cr_assert_eq(c->epoch, 1);

	rdm_listener_close(&rdm_tcp_ops, l); /* the peer goes away */
	RUN_UNTIL(!c->up, 2000);
	cr_assert_eq(c->up, 0);
	cr_assert_eq(cli.downs, 1);
	tx = (struct rdm_txframe){b, 8, NULL, 0};
	cr_assert_eq(rdm_conn_send(c, &tx, 1), -ENOTCONN, "sending while down is refused");

	RUN_UNTIL(c->stats.connect_fails >= 2, 2000);
	cr_assert_geq(c->stats.connect_fails, 2, "it keeps retrying with backoff");
	srv.expect_next = 100;
	l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb); /* the peer is back */
	cr_assert_not_null(l);
	RUN_UNTIL(c->up, 3000);
	cr_assert(c->up);
	cr_assert_eq(c->epoch, 2);
	cr_assert_eq(c->stats.connects, 2);
	send_some(c, &next, 200);
	RUN_UNTIL(srv.got == 200, 2000);
	cr_assert_eq(srv.got, 200);
	cr_assert_eq(srv.bad, 0);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
}

TCP_TEST(oversized_length_resets_only_that_connection)
{
	struct rdm_conn_opts o = opts();
	int port = free_port();
	struct rdm_addr a = addr_of(port);
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_listener *l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint8_t bad[8] = {0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4};
	struct rdm_conn *up;

	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	RUN_UNTIL(srv.ups == 1, 2000);
	up = srv.last;
	cr_assert_not_null(up);
	cr_assert_eq(write(fd, bad, sizeof(bad)), (ssize_t)sizeof(bad));
	RUN_UNTIL(srv.downs == 1, 2000);
	cr_assert_eq(srv.downs, 1, "the stream cannot resynchronise: it is closed");
	cr_assert_eq(srv.got, 0);
	close(fd);

	/* The listener still serves a well-behaved peer. */
	{
		struct rdm_conn_cbs ccb = {.on_frames = on_frames,
					   .on_writable = on_writable,
					   .on_state = on_state,
					   .arg = &cli};
		struct rdm_conn *c = rdm_connect(&rdm_tcp_ops, loop, &a, &o, &ccb);
		uint32_t next = 0;

		RUN_UNTIL(c->up && srv.ups == 2, 2000);
		send_some(c, &next, 10);
		RUN_UNTIL(srv.got == 10, 2000);
		cr_assert_eq(srv.got, 10);
		rdm_conn_close(c);
	}
	rdm_listener_close(&rdm_tcp_ops, l);
}

TCP_TEST(frames_queued_at_failure_are_counted_lost)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_listener *l = rdm_listen(&rdm_tcp_ops, loop, &a, &o, &scb);
	struct rdm_conn *c = rdm_connect(&rdm_tcp_ops, loop, &a, &o, &ccb);
	uint32_t next = 0;
	uint64_t queued_frames;

	RUN_UNTIL(c->up && srv.ups, 2000);
	srv.pause = 1;
	for (int i = 0; i < 400 && !c->congested; i++) {
		send_some(c, &next, 100000);
		rdm_loop_run_once(loop, 2);
	}
	cr_assert(c->congested);
	queued_frames = next - c->stats.tx_frames;
	cr_assert_gt(queued_frames, 0);
	rdm_listener_close(&rdm_tcp_ops, l);
	RUN_UNTIL(!c->up, 3000);
	cr_assert_eq(c->stats.lost_on_close, queued_frames,
		     "every frame still queued is counted: %lu vs %lu", c->stats.lost_on_close,
		     queued_frames);
	cr_assert_eq(c->congested, 0);
	rdm_conn_close(c);
}

Test(tcp, bad_arguments)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs none = {0};
	struct rdm_addr a = addr_of(free_port());

	errno = 0;
	cr_assert_null(rdm_connect(&rdm_tcp_ops, loop, &a, &o, &none));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(rdm_listen(&rdm_tcp_ops, loop, NULL, &o, &none));
	cr_assert_eq(rdm_transport_find("tcp"), &rdm_tcp_ops);
	cr_assert_null(rdm_transport_find("carrier-pigeon"));
	rdm_tcp_ops.close(NULL);
}
