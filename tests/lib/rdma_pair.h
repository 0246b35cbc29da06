/* The RDMA tests' shared harness (test_rdma.c, test_rdma_flow.c): the Soft-RoCE
 * environment (the guest's rxe addresses, skipping where there is no RDMA device), one
 * event loop with a sink on each side, and a connected pair: a listener on rxe address #2
 * and a client bound to #1, so traffic really goes rxe0 -> veth -> bridge -> veth -> rxe1.
 * Include once, after criterion.h; frames are the sink's (tests/lib/sink.h). */
#ifndef RDM_TESTS_RDMA_PAIR_H
#define RDM_TESTS_RDMA_PAIR_H

#include <errno.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/frame.h"
#include "tests/lib/runloop.h"
#include "transport/rdma.h"
#include "transport/transport.h"

#define MAXF 4096
#define MINF 64
/* 64 .. MAXF inclusive; about one in eight fits the 512 inline bytes rxe grants. */
#define SINK_MIN  MINF
#define SINK_SPAN (MAXF - MINF + 1)

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

/* Runs the loop for ms whatever happens. */
#define RUN_FOR(ms) RUN_UNTIL(0, ms)

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

__attribute__((unused)) static void pair_open(struct pair *p, int port,
					      const struct rdm_conn_opts *o)
{
	struct rdm_conn_cbs scb = {
	    .on_frames = on_frames, .on_writable = NULL, .on_state = on_state, .arg = &srv};
	struct rdm_conn_cbs ccb = {
	    .on_frames = on_frames, .on_writable = on_writable, .on_state = on_state, .arg = &cli};

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
__attribute__((unused)) static void pair_close(struct pair *p)
{
	if (p->c)
		rdm_conn_close(p->c);
	if (p->l)
		rdm_listener_close(&rdm_rdma_ops, p->l);
	p->c = NULL;
	p->l = NULL;
	RUN_FOR(20);
}

#endif
