/* The RDMA backend with opts.tls (protect: auth) over Soft-RoCE: the dialler proves both
 * ends on the listener's TCP port (the binding handshake), then its connect request, the
 * accept and its first message prove that the queue pairs are the proven ends'
 * (transport/rdma_bind.c). Every way of failing is refused, reported through on_refused
 * on the listener's side with who and why, and delivers no frame. These need an RDMA
 * device: they run in the QEMU guest (tests/softroce/guest.sh) and skip anywhere else. */
#include <criterion/criterion.h>

#include "lib/certs.h"
#include "lib/tls.h"
#include "tests/lib/rdma_pair.h"
#include "tests/lib/auth.h"

static char dir[64];
static struct rdm_tls_ctx *srv_ctx, *cli_ctx;
static int srv_encrypt, cli_encrypt; /* opts.encrypt of each side */

static void auth_setup(void)
{
	static const char *const names[] = {"srv", "cli", "stranger"};
	char err[256];

	setup();
	memset(&srv_ref, 0, sizeof(srv_ref));
	memset(&cli_ref, 0, sizeof(cli_ref));
	snprintf(admitted, sizeof(admitted), "cli");
	snprintf(dir, sizeof(dir), "/tmp/rdm-rdmaauth.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(rdm_certs_make(dir, names, 3, 1, err, sizeof(err)), 3, "%s", err);
	srv_ctx = ctx(dir, "srv", 1);
	cli_ctx = ctx(dir, "cli", 0);
	rdm_rdma__test_req = NULL;
	srv_encrypt = cli_encrypt = 0;
}

static void auth_teardown(void)
{
	teardown();
	rdm_tls_ctx_free(srv_ctx);
	rdm_tls_ctx_free(cli_ctx);
	rm_tree(dir);
}

/* A node's listening side: TCP (which runs the binding handshakes) and RDMA, one port. */
struct server {
	struct rdm_addr a;
	struct rdm_listener *tcp, *rdma;
};

static void server_open(struct server *s, int port)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs cb = {.on_frames = on_frames,
				  .on_state = on_state,
				  .admit = admit,
				  .on_refused = on_refused,
				  .arg = &srv};

	s->a = addr_of(1, port);
	o.tls = srv_ctx;
	o.encrypt = srv_encrypt;
	o.rdma_bind = 1;
	s->tcp = rdm_listen(&rdm_tcp_ops, loop, &s->a, &o, &cb);
	cr_assert_not_null(s->tcp, "tcp listen: %s", strerror(errno));
	s->rdma = rdm_listen(&rdm_rdma_ops, loop, &s->a, &o, &cb);
	cr_assert_not_null(s->rdma, "rdma listen: %s", strerror(errno));
}

static void server_close(struct server *s)
{
	rdm_listener_close(&rdm_tcp_ops, s->tcp);
	rdm_listener_close(&rdm_rdma_ops, s->rdma);
	RUN_FOR(20);
}

static struct rdm_conn *dial(const struct server *s, struct rdm_tls_ctx *x, const char *peer)
{
	static struct rdm_addr local;
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs cb = {.on_frames = on_frames,
				  .on_writable = on_writable,
				  .on_state = on_state,
				  .on_refused = on_refused,
				  .arg = &cli};
	struct rdm_conn *c;

	local = addr_of(0, 1);
	o.local = &local;
	o.tls = x;
	o.peer_name = peer;
	o.encrypt = cli_encrypt;
	c = rdm_connect(&rdm_rdma_ops, loop, &s->a, &o, &cb);
	cr_assert_not_null(c, "connect: %s", strerror(errno));
	return c;
}

TestSuite(rdma_auth, .init = auth_setup, .fini = auth_teardown, .timeout = 120);

Test(rdma_auth, proven_both_ends_then_frames_flow)
{
	struct server s;
	struct rdm_conn *c;
	uint32_t next = 0;

	NEED_RDMA();
	server_open(&s, 7311);
	c = dial(&s, cli_ctx, "srv");
	RUN_UNTIL(c->up && srv.ups, 10000);
	cr_assert(c->up && srv.ups == 1, "client up %d, server ups %d (%s / %s)", c->up, srv.ups,
		  cli_ref.why, srv_ref.why);
	cr_assert_eq(srv.last->ops, &rdm_rdma_ops, "the proven connection is the RDMA one");
	cr_assert_str_eq(c->peer_id, "srv");
	cr_assert_str_eq(srv.last->peer_id, "cli");
	cr_assert_eq(c->stats.handshakes, 1);
	cr_assert_eq(srv.last->stats.handshakes, 1);
	stream(c, &next, 3000, 20000);
	cr_assert_eq(srv.got, 3000);
	cr_assert_eq(srv.bad, 0);
	cr_assert_eq(srv_ref.n + cli_ref.n, 0, "%s / %s", srv_ref.why, cli_ref.why);
	rdm_conn_close(c);
	server_close(&s);
}

Test(rdma_auth, an_upstream_the_listener_does_not_admit_is_refused)
{
	struct server s;
	struct rdm_conn *c;

	NEED_RDMA();
	server_open(&s, 7312);
	snprintf(admitted, sizeof(admitted), "someone-else");
	c = dial(&s, cli_ctx, "srv");
	RUN_UNTIL(srv_ref.n && cli_ref.n, 10000);
	cr_assert_eq(srv.ups, 0);
	cr_assert_eq(c->up, 0);
	cr_assert(strstr(srv_ref.why, "refused 'cli': 'cli' is not my upstream"), "%s",
		  srv_ref.why);
	cr_assert(strstr(cli_ref.why, "refused us: 'cli' is not my upstream"), "%s", cli_ref.why);
	rdm_conn_close(c);
	server_close(&s);
}

Test(rdma_auth, a_certificate_from_another_ca_is_refused)
{
	static const char *const names[] = {"cli"};
	char other[64], err[256];
	struct rdm_tls_ctx *rogue;
	struct server s;
	struct rdm_conn *c;

	NEED_RDMA();
	snprintf(other, sizeof(other), "/tmp/rdm-rdmaother.XXXXXX");
	cr_assert_not_null(mkdtemp(other));
	cr_assert_eq(rdm_certs_make(other, names, 1, 1, err, sizeof(err)), 1, "%s", err);
	rogue = ctx(other, "cli", 0);
	server_open(&s, 7313);
	c = dial(&s, rogue, "srv");
	RUN_UNTIL(srv_ref.n && cli_ref.n, 10000);
	cr_assert_eq(srv.ups, 0);
	cr_assert_eq(c->up, 0);
	cr_assert(srv_ref.why[0] && cli_ref.why[0], "both sides say why");
	rdm_conn_close(c);
	server_close(&s);
	rdm_tls_ctx_free(rogue);
	rm_tree(other);
}

Test(rdma_auth, a_dialler_without_proof_is_refused_at_its_connect_request)
{
	struct server s;
	struct rdm_conn *c;

	NEED_RDMA();
	server_open(&s, 7314);
	c = dial(&s, NULL, NULL); /* protect: none at the dialler, or an attacker */
	RUN_UNTIL(srv_ref.n && cli_ref.n, 10000);
	cr_assert_eq(srv.ups, 0);
	cr_assert_eq(c->up, 0);
	cr_assert(strstr(srv_ref.why, "RDMA connect request without a binding"), "%s", srv_ref.why);
	cr_assert(strstr(cli_ref.why, "refused us: client"), "the dialler hears why: %s",
		  cli_ref.why);
	rdm_conn_close(c);
	server_close(&s);
}

Test(rdma_auth, a_listener_that_is_not_the_expected_peer_is_refused)
{
	struct server s;
	struct rdm_conn *c;

	NEED_RDMA();
	server_open(&s, 7315);
	c = dial(&s, cli_ctx, "stranger"); /* we meant another node: srv impersonates it */
	RUN_UNTIL(cli_ref.n, 10000);
	cr_assert_eq(srv.ups, 0);
	cr_assert_eq(c->up, 0);
	cr_assert(strstr(cli_ref.why, "stranger"), "%s", cli_ref.why);
	rdm_conn_close(c);
	server_close(&s);
}

/* The first connect request's private data, then a replay of it. */
static uint8_t captured[64];
static uint8_t captured_len;
static int replay;

static void capture_or_replay(uint8_t *pd, uint8_t len)
{
	if (!replay) {
		memcpy(captured, pd, len);
		captured_len = len;
	} else if (len == captured_len) {
		memcpy(pd, captured, len);
	}
}

Test(rdma_auth, a_replayed_connect_request_is_refused)
{
	struct server s;
	struct rdm_conn *c;
	uint32_t next = 0;

	NEED_RDMA();
	server_open(&s, 7316);
	rdm_rdma__test_req = capture_or_replay;
	c = dial(&s, cli_ctx, "srv");
	RUN_UNTIL(c->up && srv.ups, 10000);
	cr_assert(c->up && srv.ups == 1, "the first connection comes up");
	stream(c, &next, 100, 10000);
	cr_assert_eq(srv.got, 100);
	rdm_conn_close(c);
	RUN_UNTIL(srv.downs, 5000);
	/* The same bytes again, on a fresh queue pair after a fresh binding handshake: the
	 * token in them is spent. */
	replay = 1;
	c = dial(&s, cli_ctx, "srv");
	RUN_UNTIL(srv_ref.n && cli_ref.n, 10000);
	rdm_rdma__test_req = NULL;
	replay = 0;
	cr_assert_eq(srv.ups, 1, "no second connection came up");
	cr_assert(strstr(srv_ref.why, "unknown, spent or expired binding (a replayed request?)"),
		  "%s", srv_ref.why);
	cr_assert_eq(srv.got, 100, "no frame more");
	rdm_conn_close(c);
	server_close(&s);
}

/* Frames of every size from 64 B to the slot, both ways: sealed and opened intact. */
Test(rdma_auth, an_encrypted_hop_delivers_every_frame_intact_both_ways)
{
	struct server s;
	struct rdm_conn *c;
	uint32_t next = 0, back = 0;

	NEED_RDMA();
	srv_encrypt = cli_encrypt = 1;
	server_open(&s, 7317);
	c = dial(&s, cli_ctx, "srv");
	RUN_UNTIL(c->up && srv.ups, 10000);
	cr_assert(c->up && srv.ups == 1, "client up %d, server ups %d (%s / %s)", c->up, srv.ups,
		  cli_ref.why, srv_ref.why);
	stream(c, &next, 5000, 30000);
	cr_assert_eq(srv.got, 5000);
	cr_assert_eq(srv.bad, 0);
	while (cli.got < 500) {
		send_some(srv.last, &back, 500);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_eq(cli.bad, 0);
	cr_assert_eq(srv.last->stats.rx_tls_errors + c->stats.rx_tls_errors, 0);
	cr_assert_eq(c->stats.inline_sends + c->stats.zero_copy, 0,
		     "every message went through a send slot to be sealed");
	rdm_conn_close(c);
	server_close(&s);
}

Test(rdma_auth, a_dialler_that_encrypts_and_a_listener_that_does_not_are_refused)
{
	struct server s;
	struct rdm_conn *c;

	NEED_RDMA();
	cli_encrypt = 1;
	server_open(&s, 7318);
	c = dial(&s, cli_ctx, "srv");
	RUN_UNTIL(srv_ref.n && cli_ref.n, 10000);
	cr_assert_eq(srv.ups, 0);
	cr_assert_eq(c->up, 0);
	cr_assert(strstr(srv_ref.why, "transport.protect differs"), "%s", srv_ref.why);
	rdm_conn_close(c);
	server_close(&s);
}

/* A message not sealed with the hop's key (forged, or changed on the wire) ends the
 * connection at that message; the frames before it are delivered. */
Test(rdma_auth, a_message_that_fails_its_check_ends_the_connection)
{
	struct server s;
	struct rdm_conn *c;
	uint8_t forged[256];
	uint32_t next = 0;
	int rc, t;

	NEED_RDMA();
	srv_encrypt = cli_encrypt = 1;
	server_open(&s, 7319);
	c = dial(&s, cli_ctx, "srv");
	RUN_UNTIL(c->up && srv.ups, 10000);
	cr_assert(c->up && srv.ups == 1);
	stream(c, &next, 200, 10000);
	cr_assert_eq(srv.got, 200);
	memset(forged, 0xA5, sizeof(forged));
	for (t = 0;
	     (rc = rdm_rdma__send_raw(c, RDM_RDMA_IMM_DATA, forged, sizeof(forged))) == -EAGAIN &&
	     t < 1000;
	     t++)
		rdm_loop_run_once(loop, 1);
	cr_assert_eq(rc, 0, "send_raw: %s", strerror(-rc));
	RUN_UNTIL(srv.downs, 10000);
	cr_assert_eq(srv.downs, 1, "the listener closed the connection");
	cr_assert_eq(srv.got, 200, "no frame of the forged message was taken");
	cr_assert_eq(srv.bad, 0);
	rdm_conn_close(c);
	server_close(&s);
}
