/* The per-thread event loop (transport/loop.h): epoll, timers and deferred frees. */
#include "transport/loop.h"
#include "lib/sys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 64

struct deferred {
	void *p;
	void (*fn)(void *);
};

struct rdm_loop {
	int epfd;
	struct rdm_timer *timers; /* sorted by due time */
	struct deferred *defer;
	int n_defer, cap_defer;
	struct rdm_poller *pollers;
	enum rdm_poll_mode poll;
	uint64_t spin_ns;      /* ADAPTIVE: how long to poll after work */
	uint64_t hot_until_ns; /* ADAPTIVE: polling until then */
	unsigned turns;	       /* turns with a hot poller, counted to look at the fds */
	uint64_t looked_ns;    /* the last epoll_wait while a costly poller was hot */
	uint64_t now_ns;       /* this turn's clock reading (rdm_loop_now) */
	/* The events of the epoll_wait being run, [ev_next, ev_n) still to run: an io
	 * deleted meanwhile has its waiting events struck out (rdm_io_del). */
	struct epoll_event *ev;
	int ev_next, ev_n;
};

/* While a poller is hot, the fds are looked at every EPOLL_EVERY turns: epoll_wait with
 * no wait costs about 0.5 us on the development machine, and a frame arriving on a
 * polled ring would otherwise wait for half of one on average. */
#define EPOLL_EVERY 16

struct rdm_loop *rdm_loop_new(void)
{
	struct rdm_loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->now_ns = rdm_now_ns();
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int e = errno;

		free(l);
		errno = e;
		return NULL;
	}
	return l;
}

static void run_deferred(struct rdm_loop *l)
{
	/* A deferred free may defer another; loop until none is left. */
	while (l->n_defer) {
		struct deferred d = l->defer[--l->n_defer];

		d.fn(d.p);
	}
}

void rdm_loop_free(struct rdm_loop *l)
{
	if (!l)
		return;
	run_deferred(l);
	if (l->epfd >= 0)
		close(l->epfd);
	free(l->defer);
	free(l);
}

int rdm_io_add(struct rdm_loop *l, struct rdm_io *io, int fd, uint32_t events, rdm_io_fn fn)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	io->fd = fd;
	io->events = events;
	io->fn = fn;
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

int rdm_io_mod(struct rdm_loop *l, struct rdm_io *io, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	if (io->events == events)
		return 0;
	io->events = events;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) ? -errno : 0;
}

void rdm_io_del(struct rdm_loop *l, struct rdm_io *io)
{
	if (io->fd >= 0)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	/* Deleted by a callback of this turn: its events later in the batch are not run
	 * (its owner may have closed the fd and unmapped what the callback reads). */
	for (int i = l->ev_next; i < l->ev_n; i++)
		if (l->ev[i].data.ptr == io)
			l->ev[i].data.ptr = NULL;
}

void rdm_timer_cancel(struct rdm_loop *l, struct rdm_timer *t)
{
	struct rdm_timer **pp;

	if (!t->armed)
		return;
	for (pp = &l->timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->armed = 0;
}

void rdm_timer_arm_ns(struct rdm_loop *l, struct rdm_timer *t, uint64_t delay_ns, rdm_timer_fn fn,
		      void *arg)
{
	struct rdm_timer **pp;

	rdm_timer_cancel(l, t);
	t->due_ns = rdm_now_ns() + delay_ns;
	t->fn = fn;
	t->arg = arg;
	/* Few timers per loop (reconnects, pacing, flushes): a sorted list is enough. */
	for (pp = &l->timers; *pp && (*pp)->due_ns <= t->due_ns; pp = &(*pp)->next)
		;
	t->next = *pp;
	*pp = t;
	t->armed = 1;
}

void rdm_timer_arm(struct rdm_loop *l, struct rdm_timer *t, uint32_t delay_ms, rdm_timer_fn fn,
		   void *arg)
{
	rdm_timer_arm_ns(l, t, (uint64_t)delay_ms * 1000000ull, fn, arg);
}

void rdm_poller_wake(struct rdm_loop *l, struct rdm_poller *p)
{
	if (!p->added) {
		p->next = l->pollers;
		l->pollers = p;
		p->added = 1;
	}
	p->hot = 1;
}

void rdm_poller_del(struct rdm_loop *l, struct rdm_poller *p)
{
	struct rdm_poller **pp;

	for (pp = &l->pollers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	p->added = 0;
	p->hot = 0;
}

void rdm_loop_defer_free(struct rdm_loop *l, void *p, void (*fn)(void *))
{
	if (l->n_defer == l->cap_defer) {
		int cap = l->cap_defer ? l->cap_defer * 2 : 16;
		struct deferred *d = realloc(l->defer, (size_t)cap * sizeof(*d));

		if (!d) {
			/* Out of memory: freeing now is the lesser evil than leaking forever. */
			fn(p);
			return;
		}
		l->defer = d;
		l->cap_defer = cap;
	}
	l->defer[l->n_defer].p = p;
	l->defer[l->n_defer].fn = fn;
	l->n_defer++;
}

void rdm_loop_set_poll(struct rdm_loop *l, enum rdm_poll_mode mode, uint32_t spin_us)
{
	l->poll = mode;
	l->spin_ns = (uint64_t)spin_us * 1000;
}

enum rdm_poll_mode rdm_loop_poll_mode(const struct rdm_loop *l)
{
	return l->poll;
}

uint64_t rdm_loop_now(const struct rdm_loop *l)
{
	return l->now_ns;
}

static const char *const poll_names[] = {"sleep", "adaptive", "busy"};

int rdm_poll_mode_parse(const char *s, enum rdm_poll_mode *mode)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, poll_names[i])) {
			*mode = (enum rdm_poll_mode)i;
			return 0;
		}
	return -EINVAL;
}

const char *rdm_poll_mode_name(enum rdm_poll_mode mode)
{
	return (unsigned)mode < 3 ? poll_names[mode] : "?";
}

int rdm_loop_run_once(struct rdm_loop *l, int max_wait_ms)
{
	struct epoll_event ev[MAX_EVENTS];
	int n, ran = 0, wait = max_wait_ms, hot = 0, costly = 0, look = 1;
	/* One clock reading per turn, for the loop and its pollers (rdm_loop_now); read
	 * again only after a wait that may have blocked or callbacks that ran. A spinning
	 * loop reads the clock once a turn, however many pollers it runs. */
	uint64_t now = rdm_now_ns();

	l->now_ns = now;
	if (l->timers) {
		uint64_t due = l->timers->due_ns;
		/* Round up so a timer never fires a little early and spins. */
		int ms = due <= now ? 0 : (int)((due - now + 999999) / 1000000);

		if (wait < 0 || ms < wait)
			wait = ms;
	}
	/* A hot poller keeps the loop spinning, and every EPOLL_EVERY turns (every
	 * RDM_LOOP_EPOLL_GAP_NS with a costly one) it still looks at the fds: that system
	 * call also lets the kernel run work it deferred (on Soft-RoCE, the copy of every
	 * send that is not inline). */
	for (struct rdm_poller *p = l->pollers; p; p = p->next)
		if (p->hot) {
			hot = 1;
			costly |= p->costly;
		}
	if (hot || l->poll == RDM_POLL_BUSY ||
	    (l->poll == RDM_POLL_ADAPTIVE && wait != 0 && now < l->hot_until_ns))
		wait = 0;
	if (costly) {
		look = now - l->looked_ns >= RDM_LOOP_EPOLL_GAP_NS;
		if (look)
			l->looked_ns = now;
	} else if (hot) {
		look = ++l->turns % EPOLL_EVERY == 0;
	}
	n = look ? rdm_sys_epoll_wait(l->epfd, ev, MAX_EVENTS, wait) : 0;
	if (n < 0 && errno != EINTR)
		return -errno;
	if (look && wait != 0)
		l->now_ns = now = rdm_now_ns(); /* it may have slept */
	l->ev = ev;
	l->ev_n = n > 0 ? n : 0;
	for (l->ev_next = 0; l->ev_next < l->ev_n;) {
		struct epoll_event *e = &ev[l->ev_next++];
		struct rdm_io *io = e->data.ptr;

		if (!io)
			continue;
		io->fn(io, e->events);
		ran++;
	}
	l->ev_n = l->ev_next = 0;
	if (ran)
		l->now_ns = now = rdm_now_ns();
	while (l->timers && l->timers->due_ns <= now) {
		struct rdm_timer *t = l->timers;

		l->timers = t->next;
		t->armed = 0;
		t->fn(t->arg);
		ran++;
	}
	for (struct rdm_poller *p = l->pollers; p; p = p->next)
		if (p->hot) {
			p->hot = p->poll(p);
			ran++;
		}
	run_deferred(l);
	if (l->poll == RDM_POLL_ADAPTIVE && n > 0)
		l->hot_until_ns = now + l->spin_ns;
	return ran;
}
