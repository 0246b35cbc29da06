/* The RDMA backend over Soft-RoCE, a connection's lifetime: connect and teardown without
 * leaks, a peer's close and the reconnect, an unreachable peer, keepalive (idle, paused,
 * and a silent peer in another process). Both ends run in one event loop in the test
 * process (tests/lib/rdma_pair.h); test_rdma_flow.c has the frames. These need an RDMA
 * device: they run in the QEMU guest (tests/softroce/guest.sh) and skip anywhere else. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/rdma_pair.h"
#include "transport/rdma_int.h"

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

TestSuite(rdma, .init = setup, .fini = teardown, .timeout = 120);

Test(rdma, connect_teardown_100_times_no_leaks, .timeout = 300)
{
	struct rdm_conn_opts o = opts();
	struct rdm_addr a, local;
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
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

Test(rdma, peer_close_detected_and_reconnect, .timeout = 200)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
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

/* A sender done sending (shutdown_tx, as a leaving node does) while the receiver holds
 * its frames unread (paused: backpressure downstream): the frames stay in the receiver's
 * slots, it hands every one over once resumed and only then disconnects; the sender
 * waits for that and does not reconnect. (Closing at once lost up to a grant of frames.) */
Test(rdma, shutdown_tx_waits_for_a_paused_receiver_to_take_every_frame, .timeout = 60)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint32_t next = 0, n = 40; /* under the grant of 64: all of them go out */
	uint64_t connects;

	NEED_RDMA();
	pair_open(&p, 18520, &o);
	srv.pause = 1;
	while (next < n) {
		send_some(p.c, &next, n);
		rdm_loop_run_once(loop, 5);
	}
	RUN_UNTIL(rdm_conn_queued(p.c) == 0, 5000);
	cr_assert_eq(rdm_conn_queued(p.c), 0, "every send completed: the frames are over there");
	cr_assert_eq(rdm_conn_shutdown_tx(p.c), 0);
	RUN_FOR(300); /* the shutdown message lands behind them */
	cr_assert_eq(srv.got, 0);
	cr_assert(p.c->up, "the receiver holds frames: it keeps the connection");
	srv.pause = 0;
	rdm_conn_resume_rx(srv.last);
	RUN_UNTIL(!p.c->up && srv.downs == 1, 5000);
	cr_assert_eq(srv.got, n, "every frame handed over: %u of %u", srv.got, n);
	cr_assert_eq(srv.bad, 0);
	cr_assert_not(p.c->up, "the receiver closed once it had them all");
	cr_assert_eq(srv.downs, 1);
	connects = p.c->stats.connects;
	RUN_FOR(300);
	cr_assert_not(p.c->up, "a sender that is done does not reconnect");
	cr_assert_eq(p.c->stats.connects, connects);
	cr_assert_eq(p.c->stats.lost_on_close, 0);
	pair_close(&p);
}

/* A receiver that closes while it holds frames (its node stops under backpressure)
 * counts those it never handed over: the sender counted them sent. */
Test(rdma, a_receiver_that_closes_counts_the_frames_it_never_took, .timeout = 60)
{
	struct rdm_conn_opts o = opts();
	struct pair p;
	uint32_t next = 0, n = 40; /* under the grant of 64: all of them go out */
	uint64_t bytes = 0;

	NEED_RDMA();
	pair_open(&p, 18521, &o);
	srv.pause = 1;
	for (uint32_t i = 0; i < n; i++)
		bytes += size_of(i);
	while (next < n) {
		send_some(p.c, &next, n);
		rdm_loop_run_once(loop, 5);
	}
	RUN_UNTIL(srv.last->stats.rx_bytes == bytes, 5000);
	cr_assert_eq(srv.last->stats.rx_bytes, bytes, "every frame is in the receiver's slots");
	rdm_conn_close(srv.last);
	cr_assert_eq(srv.got, 0);
	cr_assert_eq(srv.last->stats.rx_lost_on_close, n, "%u frames lost and counted: %lu", n,
		     (unsigned long)srv.last->stats.rx_lost_on_close);
	pair_close(&p);
}

Test(rdma, unreachable_peer_retries_with_backoff, .timeout = 60)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
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

/* ---- a peer in another process ----------------------------------------------------- */

/* The child: connects from rxe address #1 once told to, then just runs its loop. */
static void child_client(int port, int go)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
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
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
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

/* This process as a pod without CAP_IPC_LOCK and with a memlock limit of kib KiB. */
static void lock_little(unsigned kib)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];
	struct rlimit rl;

	cr_assert_eq(syscall(SYS_capget, &h, d), 0);
	d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	cr_assert_eq(syscall(SYS_capset, &h, d), 0, "capset: %s", strerror(errno));
	cr_assert_eq(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
	rl.rlim_cur = (rlim_t)kib * 1024;
	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0, "%s", strerror(errno));
}

/* The words a hop's set-up failure gets: the memlock limit and both sizes when that is
 * the cause (runs anywhere: no device needed). */
Test(rdma, setup_failure_names_the_memlock_limit)
{
	struct rdmx_conn c;
	char why[400];

	memset(&c, 0, sizeof(c));
	c.o = opts();
	c.o.credits = 64;
	lock_little(64);
	rdm_rdma__setup_why(&c, -ENOMEM, why, sizeof(why));
	cr_assert(strstr(why, "the memlock limit (64 KiB) is below the 2184 KiB a hop registers "
			      "(512 receive slots per worker and device and 32 send slots, 4112 B "
			      "each)"),
		  "%s", why);
	cr_assert(strstr(why, "ulimit -l"), "%s", why);
}

/* With too little lockable memory a hop cannot be set up here: every try fails before
 * a connect request leaves, counted as local_fails (not as an absent peer), and the
 * dialler keeps its backoff. */
Test(rdma, memlock_too_low_fails_here, .timeout = 60)
{
	struct rdm_conn_opts o = opts();
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};
	struct rdm_addr a, local;
	struct rdm_conn *c;

	NEED_RDMA();
	lock_little(64);
	a = addr_of(2, 18509); /* a device; nobody listens, and no request will leave */
	local = addr_of(0, 1);
	o.local = &local;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 200;
	c = rdm_connect(&rdm_rdma_ops, loop, &a, &o, &ccb);
	cr_assert_not_null(c);
	RUN_UNTIL(c->stats.local_fails >= 3, 20000);
	cr_assert_geq(c->stats.local_fails, 3, "set-ups failed here: %lu",
		      (unsigned long)c->stats.local_fails);
	cr_assert_eq(c->stats.unreachable, 0);
	cr_assert_eq(c->up, 0);
	cr_assert_eq(cli.ups, 0);
	rdm_conn_close(c);
	RUN_FOR(20);
}

/* transport auto's probe says what is missing, here and in the guest: no device at all
 * (this host, a pod given none), or none holding a GID for the address (loopback). */
TestSuite(rdma_probe);

Test(rdma_probe, says_what_is_missing)
{
	struct rdm_addr a;
	char why[512];
	int n = 0;
	struct ibv_device **l = ibv_get_device_list(&n);

	if (l)
		ibv_free_device_list(l);
	cr_assert_eq(rdm_addr_parse(&a, "127.0.0.1:7100"), 0);
	cr_assert_eq(rdm_rdma_probe(&a, why, sizeof(why)), 0);
	if (!n)
		cr_assert(strstr(why, "no RDMA device in this host or container"), "%s", why);
	else
		cr_assert(strstr(why, "127.0.0.1:7100 is on no RDMA device: no GID for it on "),
			  "%s", why);
	fprintf(stderr, "  %d devices: %s\n", n, why);
	cr_assert_eq(rdm_rdma_probe(NULL, why, sizeof(why)), 0);
	cr_assert(strstr(why, "no listen address"), "%s", why);
}
