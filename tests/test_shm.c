/* The shared-memory backend (transport/shm.c): both ends in one event loop in the test
 * process, or a peer in a child process that dies mid-ring or writes what no correct
 * peer writes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/certs.h"
#include "transport/shm_ring.h"
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

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	loop = rdm_loop_new();
	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
	memset(&srv_ref, 0, sizeof(srv_ref));
	memset(&cli_ref, 0, sizeof(cli_ref));
	dir[0] = '\0';
}

static void teardown(void)
{
	rdm_loop_free(loop);
	if (dir[0])
		rm_tree(dir);
}

static struct rdm_conn_opts opts(void)
{
	struct rdm_conn_opts o = {.queue_bytes = 256 << 10,
				  .max_frame = MAXF,
				  .backoff_min_ms = 10,
				  .backoff_max_ms = 100,
				  .batch = 32,
				  .spin_us = 20};
	return o;
}

static const struct rdm_conn_cbs scb = {
    .on_frames = on_frames, .on_state = on_state, .on_refused = on_refused, .arg = &srv};
static const struct rdm_conn_cbs ccb = {.on_frames = on_frames,
					.on_writable = on_writable,
					.on_state = on_state,
					.on_refused = on_refused,
					.arg = &cli};

TestSuite(shm, .init = setup, .fini = teardown, .timeout = 30);

Test(shm, frames_arrive_intact_and_in_order)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = rdm_listen(&rdm_shm_ops, loop, &a, &o, &scb);
	struct rdm_conn *c;
	uint32_t next = 0;

	cr_assert_not_null(l, "%s", strerror(errno));
	cr_assert_eq(rdm_shm_probe(&a), 1, "a listener answers on this host");
	c = rdm_connect(&rdm_shm_ops, loop, &a, &o, &ccb);
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
	cr_assert_eq(c->stats.queue_full, 0);
	/* All read: nothing is queued any more (a node finishes when its next hops say so). */
	cr_assert_eq(rdm_conn_queued(c), 0, "%zu bytes said queued", rdm_conn_queued(c));
	rdm_conn_close(c);
	rdm_listener_close(&rdm_shm_ops, l);
}

Test(shm, nobody_listening_is_unreachable_and_retried)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn *c;
	struct rdm_listener *l;

	cr_assert_eq(rdm_shm_probe(&a), 0);
	cr_assert_eq(rdm_shm_local(&a), 1, "nobody listens yet, but the address is this host's");
	c = rdm_connect(&rdm_shm_ops, loop, &a, &o, &ccb);
	RUN_UNTIL(c->stats.unreachable >= 2, 2000);
	cr_assert_geq(c->stats.unreachable, 2, "tried again with backoff");
	cr_assert_eq(c->up, 0);
	/* The listener comes: the next try gets through. */
	l = rdm_listen(&rdm_shm_ops, loop, &a, &o, &scb);
	RUN_UNTIL(c->up, 2000);
	cr_assert(c->up);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_shm_ops, l);
}

/* Only this network namespace's own addresses are local: a replica elsewhere is not
 * dialled over shared memory. */
Test(shm, only_this_hosts_addresses_are_local)
{
	struct rdm_addr a;

	cr_assert_eq(rdm_addr_parse(&a, "127.0.0.1:7000"), 0);
	cr_assert_eq(rdm_shm_local(&a), 1);
	cr_assert_eq(rdm_addr_parse(&a, "192.0.2.1:7000"), 0); /* TEST-NET-1: nobody's */
	cr_assert_eq(rdm_shm_local(&a), 0);
	cr_assert_eq(rdm_addr_parse(&a, "[2001:db8::1]:7000"), 0);
	cr_assert_eq(rdm_shm_local(&a), 0);
}

Test(shm, backpressure_not_loss)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = rdm_listen(&rdm_shm_ops, loop, &a, &o, &scb);
	struct rdm_conn *c = rdm_connect(&rdm_shm_ops, loop, &a, &o, &ccb);
	uint32_t next = 0;

	RUN_UNTIL(c->up && srv.ups, 2000);
	srv.pause = 1; /* a stalled receiver */
	for (int i = 0; i < 400 && !c->congested; i++) {
		send_some(c, &next, 100000);
		rdm_loop_run_once(loop, 2);
	}
	cr_assert(c->congested, "the sender must see congestion");
	cr_assert_eq(c->stats.queue_full, 0, "nothing refused while the sender obeyed");
	srv.pause = 0;
	rdm_conn_resume_rx(srv.last);
	RUN_UNTIL(srv.got == next && !c->congested, 5000);
	cr_assert_eq(srv.got, next, "every frame sent arrived: %u of %u", srv.got, next);
	cr_assert_eq(srv.bad, 0);
	cr_assert_geq(cli.writable, 1, "the sender was told it may go on");
	rdm_conn_close(c);
	rdm_listener_close(&rdm_shm_ops, l);
}

Test(shm, a_listener_gone_and_back_is_reached_again)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = rdm_listen(&rdm_shm_ops, loop, &a, &o, &scb);
	struct rdm_conn *c = rdm_connect(&rdm_shm_ops, loop, &a, &o, &ccb);
	uint32_t next = 0;

	RUN_UNTIL(c->up && srv.ups, 2000);
	while (srv.got < 100) {
		send_some(c, &next, 100);
		rdm_loop_run_once(loop, 5);
	}
	rdm_listener_close(&rdm_shm_ops, l);
	RUN_UNTIL(cli.downs == 1, 2000);
	cr_assert_eq(cli.downs, 1, "the sender saw its peer go");
	cr_assert_eq(rdm_conn_send(c, NULL, 0), -ENOTCONN);
	l = rdm_listen(&rdm_shm_ops, loop, &a, &o, &scb);
	RUN_UNTIL(c->up && srv.ups == 2, 3000);
	cr_assert(c->up);
	cr_assert_eq(c->epoch, 2, "a new connection, with new rings");
	srv.expect_next = next;
	while (srv.got < 200) {
		send_some(c, &next, 200);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_eq(srv.got, 200);
	cr_assert_eq(srv.bad, 0);
	rdm_conn_close(c);
	rdm_listener_close(&rdm_shm_ops, l);
}

Test(shm, proven_both_ends_and_a_stranger_refused)
{
	static const char *const names[] = {"srv", "cli", "stranger"};
	struct rdm_conn_opts so = opts(), co = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_conn_cbs sc = scb;
	struct rdm_tls_ctx *sx, *cx, *bx;
	struct rdm_listener *l;
	struct rdm_conn *c;
	uint32_t next = 0;
	char err[256];

	snprintf(dir, sizeof(dir), "/tmp/rdm-shmauth.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(rdm_certs_make(dir, names, 3, 1, err, sizeof(err)), 3, "%s", err);
	sx = ctx(dir, "srv", 1);
	cx = ctx(dir, "cli", 0);
	bx = ctx(dir, "stranger", 0);
	snprintf(admitted, sizeof(admitted), "cli");
	sc.admit = admit;
	so.tls = sx;
	co.tls = cx;
	co.peer_name = "srv";
	l = rdm_listen(&rdm_shm_ops, loop, &a, &so, &sc);
	c = rdm_connect(&rdm_shm_ops, loop, &a, &co, &ccb);
	RUN_UNTIL(c->up && srv.ups, 3000);
	cr_assert(c->up);
	cr_assert_str_eq(c->peer_id, "srv");
	cr_assert_str_eq(srv.last->peer_id, "cli");
	while (srv.got < 500) {
		send_some(c, &next, 500);
		rdm_loop_run_once(loop, 5);
	}
	cr_assert_eq(srv.got, 500, "got %u bad %u, sent %lu", srv.got, srv.bad,
		     (unsigned long)c->stats.tx_frames);
	rdm_conn_close(c);
	/* A certificate of the rack's CA, but not a name this listener takes. */
	co.tls = bx;
	c = rdm_connect(&rdm_shm_ops, loop, &a, &co, &ccb);
	RUN_UNTIL(srv_ref.n >= 1 && cli_ref.n >= 1, 3000);
	cr_assert_geq(srv_ref.n, 1);
	cr_assert(strstr(srv_ref.why, "'stranger' is not my upstream"), "%s", srv_ref.why);
	cr_assert_eq(c->up, 0);
	cr_assert_eq(srv.ups, 1, "the stranger never came up");
	rdm_conn_close(c);
	rdm_listener_close(&rdm_shm_ops, l);
	rdm_tls_ctx_free(sx);
	rdm_tls_ctx_free(cx);
	rdm_tls_ctx_free(bx);
}

/* A hand-made dialler in a child process: connects to a, hands over rings of cap bytes
 * and eventfds, and returns its sending ring (ring 0) once acknowledged; exits 2 on
 * failure. */
static uint8_t *raw_dial(const struct rdm_addr *a, uint32_t cap, int *efd_srv)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int n = snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "rdmesh-shm %s", a->text);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	int fd = memfd_create("t", MFD_ALLOW_SEALING), fds[3];
	uint8_t offer[16] = "RDMSHM1", ack = 0, *m;
	char cbuf[CMSG_SPACE(sizeof(fds))] = {0};
	struct iovec iov = {offer, sizeof(offer)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	uint32_t mf = MAXF;

	if (connect(s, (struct sockaddr *)&sun,
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) < 0 ||
	    ftruncate(fd, 2 * (RDM_SHM_HDR + (off_t)cap)) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		_exit(2);
	fds[0] = fd;
	fds[1] = *efd_srv = eventfd(0, 0);
	fds[2] = eventfd(0, 0);
	memcpy(offer + 8, &cap, 4);
	memcpy(offer + 12, &mf, 4);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	if (sendmsg(s, &mh, 0) != sizeof(offer) || read(s, &ack, 1) != 1 || ack != 'K')
		_exit(2);
	m = mmap(NULL, 2 * (RDM_SHM_HDR + (size_t)cap), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		_exit(2);
	return m;
}

/* Child: sends `good` frames of the sink's pattern through a's listener, then does what
 * `how` says and exits: 0 writes half a record and dies without publishing it; 1
 * publishes a record longer than any frame may be. */
static void hostile_child(const struct rdm_addr *a, int good, int how)
{
	uint32_t cap = 1u << 20;
	int efd;
	uint8_t *m = raw_dial(a, cap, &efd), *p;
	struct rdm_shm_ring r;
	uint64_t one = 1;
	int bad;

	rdm_shm_ring_init(&r, m, cap, 1);
	for (int i = 0; i < good; i++) {
		uint32_t len = size_of((uint32_t)i);

		p = rdm_shm_reserve(&r, len, &bad);
		if (!p)
			_exit(3);
		fill_len(p, (uint32_t)i, len);
		rdm_shm_commit(&r, len);
	}
	rdm_shm_publish(&r);
	if (how == 0) {
		p = rdm_shm_reserve(&r, 100, &bad); /* written, never committed nor published */
		memset(p, 0xAB, 50);
	} else {
		uint32_t huge = MAXF + 1;

		memcpy(r.data + (r.pos & (cap - 1)), &huge, 4);
		r.pos += rdm_shm_rec_size(64);
		rdm_shm_publish(&r);
	}
	if (write(efd, &one, 8) != 8)
		_exit(4);
	if (how == 1)
		pause(); /* the listener must close on us, not wait for us to die */
	_exit(0);
}

Test(shm, a_peer_that_dies_mid_ring_loses_only_what_it_never_published)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = rdm_listen(&rdm_shm_ops, loop, &a, &o, &scb);
	pid_t pid = fork();
	int st;

	cr_assert_geq(pid, 0);
	if (pid == 0)
		hostile_child(&a, 300, 0);
	RUN_UNTIL(srv.downs == 1, 5000);
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	cr_assert_eq(srv.ups, 1);
	cr_assert_eq(srv.downs, 1, "its end was seen");
	cr_assert_eq(srv.got, 300, "every published frame arrived: %u", srv.got);
	cr_assert_eq(srv.bad, 0, "and intact");
	rdm_listener_close(&rdm_shm_ops, l);
}

Test(shm, a_record_no_correct_peer_writes_closes_the_connection)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a = addr_of(free_port());
	struct rdm_listener *l = rdm_listen(&rdm_shm_ops, loop, &a, &o, &scb);
	pid_t pid = fork();
	int st;

	cr_assert_geq(pid, 0);
	if (pid == 0)
		hostile_child(&a, 10, 1);
	RUN_UNTIL(srv.downs == 1, 5000);
	cr_assert_eq(srv.downs, 1, "the listener closed the connection");
	cr_assert_eq(srv.got, 10, "the good frames before it arrived");
	cr_assert_eq(srv.bad, 0);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	rdm_listener_close(&rdm_shm_ops, l);
}
