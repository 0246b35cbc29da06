/* The event loop (transport/loop.c): what a callback that tears down another io of the
 * same turn may count on. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "transport/loop.h"

struct pair {
	struct rdm_loop *loop;
	struct rdm_io io[2];
	int calls[2];
};

static struct pair P;

/* Whichever of the two runs first deletes and closes the other, as a connection's
 * end-of-stream handler does with its wake-up eventfd. */
static void on_event(struct rdm_io *io, uint32_t events)
{
	int me = io == &P.io[1], other = !me;
	uint64_t v;

	(void)events;
	P.calls[me]++;
	cr_assert_eq(read(io->fd, &v, sizeof(v)), (ssize_t)sizeof(v), "a deleted io was run");
	if (P.io[other].fd >= 0) {
		rdm_io_del(P.loop, &P.io[other]);
		close(P.io[other].fd);
		P.io[other].fd = -1;
	}
}

Test(loop, an_io_deleted_by_a_callback_is_not_run_in_the_same_turn)
{
	uint64_t one = 1;

	P.loop = rdm_loop_new();
	cr_assert_not_null(P.loop);
	for (int i = 0; i < 2; i++) {
		int fd = eventfd(0, EFD_NONBLOCK);

		cr_assert_geq(fd, 0);
		cr_assert_eq(rdm_io_add(P.loop, &P.io[i], fd, EPOLLIN, on_event), 0);
		cr_assert_eq(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	}
	/* Both are readable before the turn starts: one epoll_wait returns both. */
	cr_assert_eq(rdm_loop_run_once(P.loop, 1000), 1, "only the first one ran");
	cr_assert_eq(P.calls[0] + P.calls[1], 1, "calls %d and %d", P.calls[0], P.calls[1]);
	cr_assert_eq(rdm_loop_run_once(P.loop, 0), 0, "and nothing is left for later");
	for (int i = 0; i < 2; i++)
		if (P.io[i].fd >= 0) {
			rdm_io_del(P.loop, &P.io[i]);
			close(P.io[i].fd);
		}
	rdm_loop_free(P.loop);
}

/* A poller that stays hot for ever and counts its turns. */
struct spinner {
	struct rdm_poller p;
	unsigned turns;
};

static int spin(struct rdm_poller *p)
{
	((struct spinner *)p)->turns++;
	return 1;
}

static int fd_runs;

static void on_ready(struct rdm_io *io, uint32_t events)
{
	uint64_t v;

	(void)events;
	cr_assert_eq(read(io->fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	fd_runs++;
}

/* A hot poller keeps the loop from blocking, yet the fds are still looked at: every
 * EPOLL_EVERY turns for a cheap poller, every RDM_LOOP_EPOLL_GAP_NS for a costly one
 * (a socket read per turn). */
static void fds_seen_while(int costly)
{
	struct rdm_loop *l = rdm_loop_new();
	struct spinner s = {.p = {.poll = spin, .costly = costly}};
	struct rdm_io io;
	uint64_t one = 1;
	int fd = eventfd(0, EFD_NONBLOCK);
	unsigned at;

	cr_assert_not_null(l);
	cr_assert_geq(fd, 0);
	cr_assert_eq(rdm_io_add(l, &io, fd, EPOLLIN, on_ready), 0);
	rdm_poller_wake(l, &s.p);
	rdm_loop_run_once(l, -1); /* never blocks: the poller is hot */
	cr_assert_eq(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	at = s.turns;
	fd_runs = 0;
	while (fd_runs == 0)
		rdm_loop_run_once(l, -1);
	cr_assert(s.p.hot);
	/* A cheap poller's turns are counted: the fds wait at most 16 of them, and are not
	 * looked at on every turn. A costly one's are timed, which a test cannot pin down
	 * without racing the clock: that the loop saw the fd at all is what it checks. */
	if (!costly) {
		cr_assert_leq(s.turns - at, 16, "%u turns before the fds were looked at",
			      s.turns - at);
		cr_assert_gt(s.turns - at, 1);
	}
	rdm_poller_del(l, &s.p);
	rdm_io_del(l, &io);
	close(fd);
	rdm_loop_free(l);
}

Test(loop, a_hot_cheap_poller_still_lets_the_fds_be_seen)
{
	fds_seen_while(0);
}

Test(loop, a_hot_costly_poller_still_lets_the_fds_be_seen)
{
	fds_seen_while(1);
}
