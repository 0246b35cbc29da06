/* A small per-thread event loop: epoll for fds, a sorted list of one-shot timers, and
 * deferred frees so a callback may close any object safely. Not thread-safe: each worker
 * owns one loop. */
#ifndef RDM_LOOP_H
#define RDM_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "lib/clock.h"

struct rdm_loop;
struct rdm_io;

typedef void (*rdm_io_fn)(struct rdm_io *io, uint32_t events);
typedef void (*rdm_timer_fn)(void *arg);

/* Embedded in its owner; epoll's data pointer points at it. */
struct rdm_io {
	int fd;
	uint32_t events;
	rdm_io_fn fn;
};

/* A poller runs on every turn of the loop while it is hot, and the loop does not block
 * then: busy polling that still lets the worker send, receive and run its timers. poll()
 * returns 1 to stay hot, 0 to go cold (something else, an fd, will wake it again).
 * costly: each poll is a system call (a TCP socket read), so the loop looks at its fds
 * by time while it is hot (every RDM_LOOP_EPOLL_GAP_NS), not every EPOLL_EVERY turns. */
struct rdm_poller {
	int (*poll)(struct rdm_poller *p);
	struct rdm_poller *next;
	int hot, added, costly;
};

#define RDM_LOOP_EPOLL_GAP_NS 4000

struct rdm_timer {
	uint64_t due_ns;
	rdm_timer_fn fn;
	void *arg;
	struct rdm_timer *next;
	int armed;
};

struct rdm_loop *rdm_loop_new(void);
void rdm_loop_free(struct rdm_loop *l);

/* 0 or a negative errno. */
int rdm_io_add(struct rdm_loop *l, struct rdm_io *io, int fd, uint32_t events, rdm_io_fn fn);
int rdm_io_mod(struct rdm_loop *l, struct rdm_io *io, uint32_t events);
void rdm_io_del(struct rdm_loop *l, struct rdm_io *io);

/* (Re)arms t to fire once after delay_ms (0 = on the next turn of the loop). */
void rdm_timer_arm(struct rdm_loop *l, struct rdm_timer *t, uint32_t delay_ms, rdm_timer_fn fn,
		   void *arg);
void rdm_timer_arm_ns(struct rdm_loop *l, struct rdm_timer *t, uint64_t delay_ns, rdm_timer_fn fn,
		      void *arg);
void rdm_timer_cancel(struct rdm_loop *l, struct rdm_timer *t);

/* Adds p (once) and makes it hot; removal takes it off the loop. */
void rdm_poller_wake(struct rdm_loop *l, struct rdm_poller *p);
void rdm_poller_del(struct rdm_loop *l, struct rdm_poller *p);

/* Calls fn(p) after the current batch of events, when no callback can still hold p. */
void rdm_loop_defer_free(struct rdm_loop *l, void *p, void (*fn)(void *));

/* How a loop waits for work (a node's `poll:`). SLEEP blocks in epoll_wait until an fd or
 * a timer is due. BUSY never blocks: every turn polls the fds (epoll_wait with no wait;
 * every 16th turn while a ring or CQ poller is hot, every 4 us while a costly one is), a
 * core kept busy for the least wake-up latency. ADAPTIVE polls like BUSY for spin_us
 * after the last turn that ran something, then sleeps: the wake-up is saved while
 * traffic flows, the core is given back when it stops. */
enum rdm_poll_mode { RDM_POLL_SLEEP = 0, RDM_POLL_ADAPTIVE, RDM_POLL_BUSY };

void rdm_loop_set_poll(struct rdm_loop *l, enum rdm_poll_mode mode, uint32_t spin_us);
enum rdm_poll_mode rdm_loop_poll_mode(const struct rdm_loop *l);
/* The clock (rdm_now_ns) as the loop read it this turn: pollers, which run on every turn,
 * take it rather than read the clock again (on a virtual machine without a fast clock
 * every reading is a system call). Before the first turn, when the loop was made. */
uint64_t rdm_loop_now(const struct rdm_loop *l);

/* The mode named s ("sleep", "adaptive", "busy"): 0, or -EINVAL. And a mode's name. */
int rdm_poll_mode_parse(const char *s, enum rdm_poll_mode *mode);
const char *rdm_poll_mode_name(enum rdm_poll_mode mode);

/* Waits at most max_wait_ms (-1 = until something happens) and runs what is due; not
 * to be called from one of the loop's own callbacks. An io deleted by a callback is not
 * called for events of the same turn. Returns the number of callbacks run or a negative
 * errno (never -EINTR). */
int rdm_loop_run_once(struct rdm_loop *l, int max_wait_ms);

#endif
