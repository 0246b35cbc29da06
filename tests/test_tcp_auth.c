/* The TCP backend with opts.tls (protect: auth) over loopback: both ends prove themselves
 * with the rack's certificates before the first frame, and every way of failing to is
 * refused, reported through on_refused and never delivers a frame. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/certs.h"
#include "lib/clock.h"
#include "lib/tls.h"
#include "transport/transport.h"

#define MAXF	  4096
#define SINK_MIN  16
#define SINK_SPAN (MAXF - 16)

#include "tests/lib/sink.h"
#include "tests/lib/loopback.h"

static struct rdm_loop *loop;
static struct sink srv, cli;
#include "tests/lib/auth.h"
static char dir[64];
static struct rdm_tls_ctx *srv_ctx, *cli_ctx;

static int use_encrypt; /* the test's connections keep their TLS session */

static void setup(void)
{
	static const char *const names[] = {"srv", "cli", "stranger"};
	char err[256];

	/* OpenSSL's socket BIO (protect: encrypt, for kernel TLS) writes without
	 * MSG_NOSIGNAL: a process that runs encrypted hops ignores SIGPIPE, as the node does. */
	signal(SIGPIPE, SIG_IGN);
	loop = rdm_loop_new();
	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
	memset(&srv_ref, 0, sizeof(srv_ref));
	memset(&cli_ref, 0, sizeof(cli_ref));
	snprintf(admitted, sizeof(admitted), "cli");
	use_encrypt = 0;
	snprintf(dir, sizeof(dir), "/tmp/rdm-tcpauth.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(rdm_certs_make(dir, names, 3, 1, err, sizeof(err)), 3, "%s", err);
	srv_ctx = ctx(dir, "srv", 1);
	cli_ctx = ctx(dir, "cli", 0);
}

static void teardown(void)
{
	rdm_loop_free(loop);
	rdm_tls_ctx_free(srv_ctx);
	rdm_tls_ctx_free(cli_ctx);
	rm_tree(dir);
}

static struct rdm_conn_opts opts(struct rdm_tls_ctx *x, const char *peer)
{
	struct rdm_conn_opts o = {.queue_bytes = 256 << 10,
				  .max_frame = MAXF,
				  .backoff_min_ms = 10,
				  .backoff_max_ms = 100,
				  .batch = 32,
				  .tls = x,
				  .peer_name = peer,
				  .encrypt = use_encrypt,
				  .spin_us = 1000};
	return o;
}

static struct rdm_listener *listen_at(const struct rdm_addr *a, uint32_t handshake_ms)
{
	struct rdm_conn_opts o = opts(srv_ctx, NULL);
	struct rdm_conn_cbs cb = {.on_frames = on_frames,
				  .on_state = on_state,
				  .admit = admit,
				  .on_refused = on_refused,
				  .arg = &srv};

	o.handshake_ms = handshake_ms;
	return rdm_listen(&rdm_tcp_ops, loop, a, &o, &cb);
}

static struct rdm_conn *dial(const struct rdm_addr *a, struct rdm_tls_ctx *x, const char *peer)
{
	struct rdm_conn_opts o = opts(x, peer);
	struct rdm_conn_cbs cb = {.on_frames = on_frames,
				  .on_writable = on_writable,
				  .on_state = on_state,
				  .on_refused = on_refused,
				  .arg = &cli};

	return rdm_connect(&rdm_tcp_ops, loop, a, &o, &cb);
}

/* A plain socket connected to a, as an attacker's would be. */
static int raw_connect(const struct rdm_addr *a)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	cr_assert_geq(fd, 0);
	cr_assert(connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ||
		  errno == EINPROGRESS);
	return fd;
}

TestSuite(tcp_auth, .init = setup, .fini = teardown, .timeout = 30);

Test(tcp_auth, proven_both_ends_then_frames_in_the_clear_both_ways)
{
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = listen_at(&a, 0);
	struct rdm_conn *c = dial(&a, cli_ctx, "srv");
	uint32_t next = 0, back = 0;

	cr_assert_not_null(l);
	cr_assert_not_null(c);
	RUN_UNTIL(c->up && srv.ups, 5000);
	cr_assert(c->up && srv.ups == 1, "client up %d, server ups %d (%s / %s)", c->up, srv.ups,
		  cli_ref.why, srv_ref.why);
	cr_assert_str_eq(c->peer_id, "srv");
	cr_assert_str_eq(srv.last->peer_id, "cli");
	/* The server speaks first once up: nothing of TLS may be left between them. */
	send_some(srv.last, &back, 500);
	while (srv.got < 5000 || cli.got < 500) {
		send_some(c, &next, 5000);
		send_some(srv.last, &back, 500);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(cli.bad, 0);
	cr_assert_eq(srv_ref.n + cli_ref.n, 0);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
}

Test(tcp_auth, a_name_the_listener_does_not_admit_is_refused_on_both_sides)
{
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = listen_at(&a, 0);
	struct rdm_conn *c;

	snprintf(admitted, sizeof(admitted), "someone-else");
	c = dial(&a, cli_ctx, "srv");
	RUN_UNTIL(srv_ref.n && cli_ref.n, 5000);
	cr_assert_eq(srv.ups, 0);
	cr_assert_eq(c->up, 0);
	cr_assert(strstr(srv_ref.why, "refused 'cli': 'cli' is not my upstream"), "%s",
		  srv_ref.why);
	cr_assert(strstr(cli_ref.why, "refused us: 'cli' is not my upstream"), "%s", cli_ref.why);
	cr_assert_geq(c->stats.connect_fails, 1);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
}

Test(tcp_auth, a_certificate_from_another_ca_is_refused)
{
	static const char *const names[] = {"cli"};
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = listen_at(&a, 0);
	char other[96], err[256], ca[128], cert[128], key[128];
	struct rdm_tls_ctx *x;
	struct rdm_conn *c;

	/* Trusts the rack's CA, but holds a certificate of another. */
	snprintf(other, sizeof(other), "%s/other", dir);
	cr_assert_eq(rdm_certs_make(other, names, 1, 1, err, sizeof(err)), 1, "%s", err);
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(cert, sizeof(cert), "%s/cli.pem", other);
	snprintf(key, sizeof(key), "%s/cli.key", other);
	x = rdm_tls_ctx_new(ca, cert, key, 0, err, sizeof(err));
	cr_assert_not_null(x, "%s", err);
	c = dial(&a, x, "srv");
	RUN_UNTIL(srv_ref.n, 5000);
	cr_assert_eq(srv.ups, 0);
	cr_assert(strstr(srv_ref.why, "certificate verify failed"), "%s", srv_ref.why);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
	rdm_tls_ctx_free(x);
}

Test(tcp_auth, a_server_that_is_not_the_expected_peer_is_refused)
{
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = listen_at(&a, 0);
	struct rdm_conn *c = dial(&a, cli_ctx, "stranger");

	RUN_UNTIL(cli_ref.n, 5000);
	cr_assert_eq(c->up, 0);
	cr_assert_eq(srv.ups, 0);
	cr_assert(strstr(cli_ref.why, "hostname mismatch: expected 'stranger', the certificate "
				      "names 'srv'"),
		  "%s", cli_ref.why);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
}

Test(tcp_auth, plaintext_frames_are_refused_before_delivery)
{
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = listen_at(&a, 0);
	int fd = raw_connect(&a);
	uint8_t frame[64] = {0, 0, 0, 60};

	RUN_UNTIL(0, 50);
	cr_assert_eq(send(fd, frame, sizeof(frame), MSG_NOSIGNAL), (ssize_t)sizeof(frame));
	RUN_UNTIL(srv_ref.n, 5000);
	cr_assert_eq(srv_ref.n, 1);
	cr_assert_eq(srv.got, 0);
	cr_assert_eq(srv.ups, 0);
	cr_assert(strstr(srv_ref.why, "client 127.0.0.1:"), "%s", srv_ref.why);
	close(fd);
	rdm_listener_close(&rdm_tcp_ops, l);
}

Test(tcp_auth, a_silent_connection_is_closed_at_the_deadline)
{
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = listen_at(&a, 200);
	int fd = raw_connect(&a);
	char b;

	RUN_UNTIL(srv_ref.n, 5000);
	cr_assert(strstr(srv_ref.why, "not proven within 200 ms"), "%s", srv_ref.why);
	cr_assert_eq(recv(fd, &b, 1, 0), 0, "the node closed the connection");
	close(fd);
	rdm_listener_close(&rdm_tcp_ops, l);
}

Test(tcp_auth, unproven_connections_are_capped_per_source)
{
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = listen_at(&a, 5000);
	int fds[RDM_TCP_HALF_OPEN_PER_SOURCE + 1];

	for (int i = 0; i <= RDM_TCP_HALF_OPEN_PER_SOURCE; i++) {
		fds[i] = raw_connect(&a);
		RUN_UNTIL(0, 20); /* accepted in order */
	}
	RUN_UNTIL(srv_ref.n, 2000);
	cr_assert_eq(srv_ref.n, 1, "only the connection past the cap is refused at once");
	cr_assert(strstr(srv_ref.why, "8 connections from this address are still proving"), "%s",
		  srv_ref.why);
	for (int i = 0; i <= RDM_TCP_HALF_OPEN_PER_SOURCE; i++)
		close(fds[i]);
	rdm_listener_close(&rdm_tcp_ops, l);
}

/* ---- protect: encrypt ---- */

/* Encrypted frames both ways; busy: both ends in a loop that never blocks, where a
 * connection that got bytes reads (and decrypts) on every turn, not when epoll says. */
static void encrypted_both_ways(int busy)
{
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l;
	struct rdm_conn *c;
	uint32_t next = 0, back = 0;

	use_encrypt = 1;
	if (busy)
		rdm_loop_set_poll(loop, RDM_POLL_BUSY, 20);
	l = listen_at(&a, 0);
	c = dial(&a, cli_ctx, "srv");
	RUN_UNTIL(c->up && srv.ups, 5000);
	cr_assert(c->up && srv.ups == 1, "%s / %s", cli_ref.why, srv_ref.why);
	send_some(srv.last, &back, 500);
	while (srv.got < 5000 || cli.got < 500) {
		send_some(c, &next, 5000);
		send_some(srv.last, &back, 500);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(cli.bad, 0);
	cr_assert_eq(c->stats.handshakes, 1);
	if (busy)
		cr_assert_gt(srv.last->stats.rx_polled + c->stats.rx_polled, 0);
	else
		cr_assert_eq(srv.last->stats.rx_polled + c->stats.rx_polled, 0);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_tcp_ops, l);
}

Test(tcp_auth, encrypted_frames_arrive_intact_both_ways)
{
	encrypted_both_ways(0);
}

Test(tcp_auth, encrypted_frames_arrive_intact_both_ways_in_a_busy_loop)
{
	encrypted_both_ways(1);
}

/* A relay that changes one byte of what the client sends, past the handshake. */
struct relay {
	int lfd, to_port;
	uint64_t flip_at;
};

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int cfd = accept(r->lfd, NULL, NULL), sfd = socket(AF_INET, SOCK_STREAM, 0);
	uint64_t seen = 0;
	char buf[4096];

	sa.sin_port = htons((uint16_t)r->to_port);
	if (cfd < 0 || connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return NULL;
	for (;;) {
		struct pollfd p[2] = {{cfd, POLLIN, 0}, {sfd, POLLIN, 0}};
		ssize_t n;

		if (poll(p, 2, 5000) <= 0)
			break;
		if (p[0].revents) {
			n = read(cfd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (seen <= r->flip_at && r->flip_at < seen + (uint64_t)n)
				buf[r->flip_at - seen] ^= 0x01;
			seen += (uint64_t)n;
			if (write(sfd, buf, (size_t)n) != n)
				break;
		}
		if (p[1].revents) {
			n = read(sfd, buf, sizeof(buf));
			if (n <= 0 || write(cfd, buf, (size_t)n) != n)
				break;
		}
	}
	close(cfd);
	close(sfd);
	return NULL;
}

Test(tcp_auth, a_byte_changed_on_the_wire_fails_the_connection_and_delivers_nothing_bad)
{
	int port = free_port(), rport;
	struct rdm_addr a = addr_of(port), ra;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	struct relay r = {.to_port = port, .flip_at = 40000};
	struct rdm_listener *l;
	struct rdm_conn *c;
	pthread_t t;
	uint32_t next = 0;
	int one = 1;

	use_encrypt = 1;
	l = listen_at(&a, 0);
	r.lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(r.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(r.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(r.lfd, 1), 0);
	getsockname(r.lfd, (struct sockaddr *)&sa, &sl);
	rport = ntohs(sa.sin_port);
	ra = addr_of(rport);
	cr_assert_eq(pthread_create(&t, NULL, relay_main, &r), 0);
	c = dial(&ra, cli_ctx, "srv");
	RUN_UNTIL(c->up && srv.ups, 5000);
	cr_assert(c->up, "%s / %s", cli_ref.why, srv_ref.why);
	/* Past byte 40000 of the stream a record is changed: the server must drop the
	 * connection at that record, having delivered only what was intact before it. */
	while (srv.downs == 0) {
		if (c->up)
			send_some(c, &next, 20000);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_eq(srv.bad, 0, "no changed frame was delivered");
	cr_assert_gt(srv.got, 0);
	cr_assert_lt(srv.got, next, "the frames after the changed record never arrived");
	rdm_conn_close(c);
	pthread_join(t, NULL);
	close(r.lfd);
	rdm_listener_close(&rdm_tcp_ops, l);
}
