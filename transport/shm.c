/* The shared-memory backend: for replicas on one host (one network namespace). A
 * connection is a Unix stream socket at an abstract name made of the listener's address
 * ("rdmesh-shm ADDR:PORT"), where both ends prove themselves as on a TCP hop (opts.tls),
 * and then the dialler hands over a sealed memfd with two rings (transport/shm_ring.h),
 * one each way, and two eventfds, one to wake each end. Frames are written once, into
 * the ring, and read where they lie. The socket stays open: when a process dies the
 * kernel closes it, and the other end sees it at once.
 *
 * Wake-ups are asked for, not sent blindly: a receiver about to sleep says so in its
 * ring's control block, and only then does the sender write its eventfd. While frames
 * flow the receiver polls the ring (opts.spin_us after the last one, forever with
 * spin_us UINT32_MAX: a node's poll: busy) and nobody makes a system call per frame. A
 * sender whose ring passed half its size is congested until the receiver has freed it
 * below a quarter, and says so the same way. */
#include "transport/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/tls_hs.h"
#include "lib/util.h"
#include "transport/shm_int.h"

static void shm_start_connect(void *arg);
static int deliver(struct shm_conn *c);
static void eof_drain(struct shm_conn *c);

static struct shm_conn *to_shm(struct rdm_conn *c)
{
	return container_of(c, struct shm_conn, base);
}

/* The abstract socket name of a listener at addr. */
static socklen_t sun_of(const struct rdm_addr *addr, struct sockaddr_un *sun)
{
	int n;

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "rdmesh-shm %s", addr->text);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* Ring capacity for opts o: room for the congestion limit and a batch beyond it. */
uint32_t rdm_shm__cap_for(const struct rdm_conn_opts *o)
{
	uint64_t want = (uint64_t)o->queue_bytes / 2 +
			(uint64_t)(o->batch ? o->batch : 32) * rdm_shm_rec_size(o->max_frame);
	uint32_t cap = RDM_SHM_CAP_MIN;

	while (cap < want && cap < RDM_SHM_CAP_MAX)
		cap <<= 1;
	return cap;
}

void rdm_shm__update_io(struct shm_conn *c)
{
	uint32_t ev = EPOLLIN | EPOLLRDHUP;

	if (c->state == S_CONNECTING || (c->state == S_PROVING && c->hs_write))
		ev |= EPOLLOUT;
	if (c->io.fd >= 0)
		rdm_io_mod(c->loop, &c->io, ev);
}

/* Frames written into tx that the peer never read: lost with the connection. */
static uint64_t frames_unread(const struct shm_conn *c)
{
	struct rdm_shm_ring r = c->tx;
	const uint8_t *d;
	uint32_t len;
	uint64_t n = 0;

	/* Our own ring, read from what the peer freed to what we wrote. */
	r.pos = r.freed = atomic_load_explicit(&r.ctl->head, memory_order_acquire);
	if (r.pos > c->tx.pos || c->tx.pos - r.pos > r.cap)
		return 0;
	r.peer = c->tx.pos;
	while (n < UINT32_MAX && rdm_shm_next(&r, UINT32_MAX - 8, &d, &len) == 1)
		n++;
	return n;
}

static void drop(struct shm_conn *c)
{
	if (c->map) {
		c->base.stats.lost_on_close += frames_unread(c);
		munmap(c->map, c->map_len);
		c->map = NULL;
	}
	if (c->io.fd >= 0) {
		rdm_io_del(c->loop, &c->io);
		close(c->io.fd);
		c->io.fd = -1;
	}
	if (c->wake.fd >= 0) {
		rdm_io_del(c->loop, &c->wake);
		close(c->wake.fd);
		c->wake.fd = -1;
	}
	if (c->efd_peer >= 0) {
		close(c->efd_peer);
		c->efd_peer = -1;
	}
	rdm_poller_del(c->loop, &c->poller);
	rdm_tls_hs_free(c->hs);
	c->hs = NULL;
	rdm_timer_cancel(c->loop, &c->hs_timer);
	rdm_timer_cancel(c->loop, &c->kick);
	rdm_timer_cancel(c->loop, &c->shut);
	c->state = S_CONNECTING;
	c->rx_paused = 0;
	c->eof = 0;
	c->base.congested = 0;
}

static void conn_free(void *p)
{
	struct shm_conn *c = p;

	free(c->rxf);
	free(c->rxpos);
	free(c);
}

static void unlink_from_listener(struct shm_conn *c)
{
	for (struct shm_conn **pp = &c->lst->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->lst = NULL;
}

/* The connection failed: tell the owner, then reconnect (outbound) or free (accepted). */
void rdm_shm__fail(struct shm_conn *c)
{
	int was_up = c->base.up;

	drop(c);
	c->base.up = 0;
	if (was_up) {
		c->base.stats.disconnects++;
		if (c->base.cbs.on_state)
			c->base.cbs.on_state(&c->base, 0, c->base.cbs.arg);
	}
	if (c->closed || c->tx_shut)
		return; /* the owner closes it */
	if (c->lst) {
		unlink_from_listener(c);
		c->closed = 1;
		rdm_loop_defer_free(c->loop, c, conn_free);
		return;
	}
	rdm_timer_arm(c->loop, &c->retry, c->backoff_ms, shm_start_connect, c);
	c->backoff_ms =
	    c->backoff_ms * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms : c->backoff_ms * 2;
}

/* The connection did not prove itself, or its set-up was wrong: say so, then fail. */
void rdm_shm__refuse(struct shm_conn *c, const char *why)
{
	if (!c->lst)
		c->base.stats.connect_fails++;
	if (c->base.cbs.on_refused)
		c->base.cbs.on_refused(&c->base, why, c->base.cbs.arg);
	rdm_shm__fail(c);
}

static void wake_peer(struct shm_conn *c)
{
	uint64_t one = 1;

	if (write(c->efd_peer, &one, sizeof(one)) < 0 && errno != EAGAIN)
		c->base.stats.wc_errors++;
}

/* The receiver's side of sleeping: ask for a wake-up, then look once more, so that a
 * frame published in between is not left until the next one. 1 if there is work. */
static int ask_wake(struct shm_conn *c)
{
	atomic_store_explicit(&c->rx.ctl->rx_waiting, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&c->rx.ctl->tail, memory_order_seq_cst) != c->rx.pos) {
		atomic_store_explicit(&c->rx.ctl->rx_waiting, 0, memory_order_relaxed);
		return 1;
	}
	return 0;
}

/* A congested sender: room again, below half its limit? If not, it asks the receiver to
 * wake it when it frees some (again: each wake-up takes the request), then looks once
 * more, so that what was freed in between is not missed. */
static void check_writable(struct shm_conn *c)
{
	if (!c->base.congested || c->state != S_UP)
		return;
	for (int i = 0; i < 2; i++) {
		uint64_t h = atomic_load_explicit(&c->tx.ctl->head, memory_order_seq_cst);

		if (h >= c->tx.peer && h <= c->tx.pos)
			c->tx.peer = h;
		if (c->tx.pos - c->tx.peer <= c->limit / 2) {
			c->base.congested = 0;
			atomic_store_explicit(&c->tx.ctl->tx_waiting, 0, memory_order_relaxed);
			if (c->base.cbs.on_writable)
				c->base.cbs.on_writable(&c->base, c->base.cbs.arg);
			return;
		}
		atomic_store_explicit(&c->tx.ctl->tx_waiting, 1, memory_order_seq_cst);
	}
}

/* Runs while frames flow: delivers, and stays hot for spin_ns after the last one. */
static int poll_fn(struct rdm_poller *p)
{
	struct shm_conn *c = container_of(p, struct shm_conn, poller);
	uint64_t got = c->base.stats.rx_frames, now;

	if (c->state != S_UP)
		return 0;
	if (c->eof) {
		eof_drain(c);
		return 0;
	}
	deliver(c);
	if (c->closed || c->state != S_UP)
		return 0;
	check_writable(c);
	if (c->closed || c->state != S_UP || c->rx_paused)
		return 0;
	now = rdm_loop_now(c->loop); /* this turn's: no clock read per poll */
	if (c->base.stats.rx_frames != got)
		c->hot_until_ns = c->spin_ns == UINT64_MAX ? UINT64_MAX : now + c->spin_ns;
	if (now < c->hot_until_ns)
		return 1;
	return ask_wake(c);
}

static void wake_io(struct rdm_io *io, uint32_t events)
{
	struct shm_conn *c = container_of(io, struct shm_conn, wake);
	uint64_t v;

	(void)events;
	while (read(c->wake.fd, &v, sizeof(v)) > 0)
		;
	atomic_store_explicit(&c->rx.ctl->rx_waiting, 0, memory_order_relaxed);
	c->hot_until_ns = rdm_now_ns() + c->spin_ns;
	if (c->spin_ns == UINT64_MAX)
		c->hot_until_ns = UINT64_MAX;
	rdm_poller_wake(c->loop, &c->poller);
}

void rdm_shm__became_up(struct shm_conn *c)
{
	c->state = S_UP;
	c->base.up = 1;
	c->hot_until_ns = c->spin_ns == UINT64_MAX ? UINT64_MAX : rdm_now_ns() + c->spin_ns;
	c->base.epoch++;
	c->base.stats.connects++;
	c->backoff_ms = c->o.backoff_min_ms;
	rdm_shm__update_io(c);
	if (rdm_io_add(c->loop, &c->wake, c->wake.fd, EPOLLIN, wake_io) < 0) {
		rdm_shm__refuse(c, "cannot watch the eventfd");
		return;
	}
	if (c->base.cbs.on_state)
		c->base.cbs.on_state(&c->base, 1, c->base.cbs.arg);
	if (!c->closed && c->state == S_UP)
		rdm_poller_wake(c->loop, &c->poller); /* look once, then sleep or spin */
}

static void prove_step(struct shm_conn *c)
{
	char err[384];
	int rc = rdm_tls_hs_step(c->hs, &c->hs_write, err, sizeof(err));

	if (rc < 0) {
		rdm_shm__refuse(c, err);
		return;
	}
	if (rc == 0) {
		rdm_shm__update_io(c);
		return;
	}
	snprintf(c->base.peer_id, sizeof(c->base.peer_id), "%s", rdm_tls_hs_peer(c->hs));
	c->base.stats.handshakes++;
	c->base.stats.handshake_us += (rdm_now_ns() - c->hs_start_ns) / 1000;
	rdm_tls_hs_free(c->hs);
	c->hs = NULL;
	rdm_timer_cancel(c->loop, &c->hs_timer);
	c->hs_write = 0;
	if (c->lst) {
		c->state = S_OFFER;
		rdm_shm__update_io(c);
	} else {
		rdm_shm__send_offer(c);
	}
}

static void prove_timeout(void *arg)
{
	struct shm_conn *c = arg;
	char why[160];

	snprintf(why, sizeof(why), "%s %s: not proven within %u ms (TLS handshake and verdict)",
		 c->lst ? "client" : "server", c->base.peer, c->o.handshake_ms);
	rdm_shm__refuse(c, why);
}

/* The socket is connected (or accepted): prove both ends first with opts.tls. */
static void connected(struct shm_conn *c)
{
	char who[96], err[384];

	if (!c->o.tls) {
		if (c->lst) {
			c->state = S_OFFER;
			rdm_shm__update_io(c);
		} else {
			rdm_shm__send_offer(c);
		}
		return;
	}
	snprintf(who, sizeof(who), "%s %s", c->lst ? "client" : "server", c->base.peer);
	c->base.peer_id[0] = '\0';
	c->hs = rdm_tls_hs_new(c->o.tls, c->io.fd, c->lst ? NULL : c->peer_name,
			       c->lst ? c->base.cbs.admit : NULL, c->base.cbs.arg, who, err,
			       sizeof(err));
	if (!c->hs) {
		rdm_shm__refuse(c, err);
		return;
	}
	c->state = S_PROVING;
	c->hs_start_ns = rdm_now_ns();
	rdm_timer_arm(c->loop, &c->hs_timer, c->o.handshake_ms ? c->o.handshake_ms : 3000,
		      prove_timeout, c);
	prove_step(c);
}

/* The socket says something: set-up steps, or (once up) the peer's end. */
static void sock_io(struct rdm_io *io, uint32_t events)
{
	struct shm_conn *c = container_of(io, struct shm_conn, io);
	uint8_t b;
	ssize_t n;

	switch (c->state) {
	case S_CONNECTING:
		connected(c);
		return;
	case S_PROVING:
		prove_step(c);
		return;
	case S_OFFER:
		if (c->lst) {
			rdm_shm__take_offer(c);
			return;
		}
		n = read(c->io.fd, &b, 1);
		if (n == 1 && b == 'K')
			rdm_shm__became_up(c);
		else if (n == 0 || (n < 0 && errno != EAGAIN) || n == 1)
			rdm_shm__refuse(c, "the shm listener closed, or did not take the rings");
		return;
	default:
		break;
	}
	/* Up: the socket carries nothing more; anything on it is the end. What the peer
	 * published before it went is delivered first. */
	(void)events;
	n = read(c->io.fd, &b, 1);
	if (n < 0 && errno == EAGAIN)
		return;
	c->eof = 1;
	rdm_io_del(c->loop, &c->io); /* its hang-up would be reported again and again */
	eof_drain(c);
}

/* The peer is gone: deliver what it published while the owner takes it (a paused owner
 * resumes later), then fail. */
static void eof_drain(struct shm_conn *c)
{
	while (!c->rx_paused && !c->closed && c->state == S_UP) {
		if (deliver(c) == 1) {
			if (!c->closed && c->state == S_UP)
				rdm_shm__fail(c);
			return;
		}
	}
}

/* Delivers what the ring holds, a batch at a time, up to BURSTS batches. Returns 1 when
 * the ring was left empty, 0 when not (or the owner paused). */
static int deliver(struct shm_conn *c)
{
	uint32_t batch = c->o.batch ? c->o.batch : 32;

	for (int b = 0; b < BURSTS && c->state == S_UP && !c->rx_paused; b++) {
		uint32_t k = 0;
		int rc = 0, m;

		while (k < batch) {
			c->rxpos[k] = c->rx.pos;
			rc = rdm_shm_next(&c->rx, c->o.max_frame, &c->rxf[k].data, &c->rxf[k].len);
			if (rc != 1)
				break;
			c->base.stats.rx_bytes += c->rxf[k].len;
			k++;
		}
		if (k == 0 && rc < 0) {
			c->base.stats.rx_bad_len++;
			rdm_shm__fail(c);
			return 0;
		}
		if (k == 0)
			return 1;
		/* The good frames before a bad record go first; the bad one fails the
		 * connection on the next turn. */
		m = c->base.cbs.on_frames(&c->base, c->rxf, (int)k, c->base.cbs.arg);
		if (c->closed || c->state != S_UP)
			return 0;
		if (m < 0)
			m = 0;
		if ((uint32_t)m < k) {
			rdm_shm_rewind(&c->rx, c->rxpos[m]);
			c->rx_paused = 1;
		}
		c->base.stats.rx_frames += (uint64_t)m;
		rdm_shm_release(&c->rx);
		/* A sender waiting for room gets it. */
		if (atomic_load_explicit(&c->rx.ctl->tx_waiting, memory_order_seq_cst)) {
			atomic_store_explicit(&c->rx.ctl->tx_waiting, 0, memory_order_relaxed);
			wake_peer(c);
		}
		if (k < batch && rc == 0 && !c->rx_paused)
			return 1;
	}
	return 0;
}

static int shm_send_batch(struct rdm_conn *bc, const struct rdm_txframe *f, int n)
{
	struct shm_conn *c = to_shm(bc);
	int k = 0, bad = 0;

	if (c->state != S_UP)
		return -ENOTCONN;
	for (; k < n; k++) {
		uint32_t len = f[k].hdr_len + f[k].pkt_len;
		uint8_t *p = len <= c->o.max_frame ? rdm_shm_reserve(&c->tx, len, &bad) : NULL;

		if (!p)
			break;
		memcpy(p, f[k].hdr, f[k].hdr_len);
		if (f[k].pkt_len)
			memcpy(p + f[k].hdr_len, f[k].pkt, f[k].pkt_len);
		rdm_shm_commit(&c->tx, len);
		bc->stats.tx_frames++;
		bc->stats.tx_bytes += len;
	}
	if (k < n)
		bc->stats.queue_full += (uint64_t)(n - k);
	if (k) {
		rdm_shm_publish(&c->tx);
		if (atomic_load_explicit(&c->tx.ctl->rx_waiting, memory_order_seq_cst)) {
			atomic_store_explicit(&c->tx.ctl->rx_waiting, 0, memory_order_relaxed);
			wake_peer(c);
		}
	}
	if (bad) {
		c->base.stats.rx_bad_len++; /* the peer wrote an impossible head */
		rdm_shm__fail(c);
		return k;
	}
	if (!bc->congested && c->tx.pos - c->tx.peer > c->limit) {
		bc->congested = 1;
		bc->stats.congested++;
		check_writable(c); /* asks for a wake-up; the peer may have freed it already */
	}
	return k;
}

/* What the receiver has not freed yet, from its head as it is now (tx.peer is only
 * refreshed when room runs short, so it would say a drained ring is not). A head no
 * correct peer writes counts as nothing freed. */
static size_t shm_queued(const struct rdm_conn *bc)
{
	const struct shm_conn *c = container_of(bc, const struct shm_conn, base);
	uint64_t h;

	if (c->state != S_UP)
		return 0;
	h = atomic_load_explicit(&c->tx.ctl->head, memory_order_acquire);
	if (h < c->tx.peer || h > c->tx.pos)
		h = c->tx.peer;
	return (size_t)(c->tx.pos - h);
}

static void shm_start_connect(void *arg)
{
	struct shm_conn *c = arg;
	struct sockaddr_un sun;
	socklen_t sl = sun_of(&c->peer, &sun);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || (connect(fd, (struct sockaddr *)&sun, sl) < 0 && errno != EAGAIN)) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		c->base.stats.connect_fails++;
		if (e == ECONNREFUSED || e == ENOENT)
			c->base.stats.unreachable++; /* nobody listens here: another host */
		rdm_timer_arm(c->loop, &c->retry, c->backoff_ms, shm_start_connect, c);
		c->backoff_ms = c->backoff_ms * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms
									: c->backoff_ms * 2;
		return;
	}
	c->state = S_CONNECTING;
	if (rdm_io_add(c->loop, &c->io, fd, EPOLLOUT | EPOLLIN | EPOLLRDHUP, sock_io) < 0) {
		close(fd);
		rdm_shm__refuse(c, "cannot watch the socket");
	}
}

static struct shm_conn *conn_new(struct rdm_loop *l, const struct rdm_conn_opts *o,
				 const struct rdm_conn_cbs *cbs)
{
	struct shm_conn *c = calloc(1, sizeof(*c));
	uint32_t batch = o->batch ? o->batch : 32;

	if (!c)
		return NULL;
	c->rxf = calloc(batch, sizeof(*c->rxf));
	c->rxpos = calloc(batch + 1, sizeof(*c->rxpos));
	if (!c->rxf || !c->rxpos) {
		conn_free(c);
		errno = ENOMEM;
		return NULL;
	}
	c->base.ops = &rdm_shm_ops;
	c->base.cbs = *cbs;
	c->loop = l;
	c->o = *o;
	c->io.fd = c->wake.fd = c->efd_peer = -1;
	c->poller.poll = poll_fn;
	c->backoff_ms = o->backoff_min_ms ? o->backoff_min_ms : 10;
	c->spin_ns = o->spin_us == UINT32_MAX ? UINT64_MAX : (uint64_t)o->spin_us * 1000;
	return c;
}

static struct rdm_conn *shm_connect(struct rdm_loop *l, const struct rdm_addr *peer,
				    const struct rdm_conn_opts *o, const struct rdm_conn_cbs *cbs)
{
	struct shm_conn *c;

	if (!peer || !o->max_frame || (o->tls && !o->peer_name)) {
		errno = EINVAL;
		return NULL;
	}
	c = conn_new(l, o, cbs);
	if (!c)
		return NULL;
	c->peer = *peer;
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", o->peer_name ? o->peer_name : "");
	snprintf(c->base.peer, sizeof(c->base.peer), "%s", peer->text);
	shm_start_connect(c);
	return &c->base;
}

static void shm_close(struct rdm_conn *bc)
{
	struct shm_conn *c;

	if (!bc)
		return;
	c = to_shm(bc);
	if (c->closed)
		return;
	c->closed = 1;
	rdm_timer_cancel(c->loop, &c->retry);
	drop(c);
	bc->up = 0;
	if (c->lst)
		unlink_from_listener(c);
	rdm_loop_defer_free(c->loop, c, conn_free);
}

/* shutdown_tx: once the peer has read everything, end the socket's sending side. */
static void shut_check(void *arg)
{
	struct shm_conn *c = arg;
	uint64_t h;

	if (c->state != S_UP)
		return;
	h = atomic_load_explicit(&c->tx.ctl->head, memory_order_acquire);
	if (h == c->tx.pos) {
		shutdown(c->io.fd, SHUT_WR);
		return;
	}
	rdm_timer_arm(c->loop, &c->shut, 1, shut_check, c);
}

static void shm_shutdown_tx(struct rdm_conn *bc)
{
	struct shm_conn *c = to_shm(bc);

	if (c->tx_shut)
		return;
	c->tx_shut = 1;
	rdm_timer_cancel(c->loop, &c->retry);
	if (c->state != S_UP) {
		rdm_shm__fail(c);
		return;
	}
	shut_check(c);
}

static void shm_pause_rx(struct rdm_conn *bc)
{
	to_shm(bc)->rx_paused = 1;
}

static void kick(void *arg)
{
	struct shm_conn *c = arg;

	rdm_poller_wake(c->loop, &c->poller);
}

static void shm_resume_rx(struct rdm_conn *bc)
{
	struct shm_conn *c = to_shm(bc);

	if (!c->rx_paused || c->closed)
		return;
	c->rx_paused = 0;
	/* Deliver from the loop, never from inside the caller's own callback. */
	rdm_timer_arm(c->loop, &c->kick, 0, kick, c);
}

static void accept_io(struct rdm_io *io, uint32_t events)
{
	struct shm_listener *lst = container_of(io, struct shm_listener, io);

	(void)events;
	for (;;) {
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		int fd = accept4(lst->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), waiting = 0;
		struct shm_conn *c;

		if (fd < 0)
			return;
		for (c = lst->conns; c; c = c->next)
			waiting += c->state != S_UP;
		c = waiting < RDM_TCP_HALF_OPEN ? conn_new(lst->loop, &lst->o, &lst->cbs) : NULL;
		if (!c) {
			close(fd); /* too many still setting up, or no memory */
			continue;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
			snprintf(c->base.peer, sizeof(c->base.peer), "shm pid %d", (int)cr.pid);
		else
			snprintf(c->base.peer, sizeof(c->base.peer), "shm");
		c->lst = lst;
		c->next = lst->conns;
		lst->conns = c;
		c->state = S_CONNECTING;
		if (rdm_io_add(lst->loop, &c->io, fd, EPOLLIN | EPOLLRDHUP, sock_io) < 0) {
			close(fd);
			rdm_shm__fail(c);
			continue;
		}
		connected(c);
	}
}

static struct rdm_listener *shm_listen(struct rdm_loop *l, const struct rdm_addr *addr,
				       const struct rdm_conn_opts *o,
				       const struct rdm_conn_cbs *cbs)
{
	struct shm_listener *lst = calloc(1, sizeof(*lst));
	struct sockaddr_un sun;
	socklen_t sl = sun_of(addr, &sun);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), e;

	if (lst && fd >= 0 && bind(fd, (struct sockaddr *)&sun, sl) == 0 && listen(fd, 64) == 0 &&
	    rdm_io_add(l, &lst->io, fd, EPOLLIN, accept_io) == 0) {
		lst->loop = l;
		lst->o = *o;
		lst->cbs = *cbs;
		return (struct rdm_listener *)lst;
	}
	e = errno;
	if (fd >= 0)
		close(fd);
	free(lst);
	errno = e;
	return NULL;
}

static void listener_free(void *p)
{
	free(p);
}

static void shm_close_listener(struct rdm_listener *bl)
{
	struct shm_listener *lst = (struct shm_listener *)bl;

	if (!lst)
		return;
	while (lst->conns)
		shm_close(&lst->conns->base);
	rdm_io_del(lst->loop, &lst->io);
	close(lst->io.fd);
	rdm_loop_defer_free(lst->loop, lst, listener_free);
}

int rdm_shm_probe(const struct rdm_addr *peer)
{
	struct sockaddr_un sun;
	socklen_t sl = sun_of(peer, &sun);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	ok = connect(fd, (struct sockaddr *)&sun, sl) == 0 || errno == EAGAIN;
	close(fd);
	return ok;
}

int rdm_shm_local(const struct rdm_addr *peer)
{
	struct sockaddr_storage ss = peer->ss;
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	/* Binding to an address works only where an interface has it. */
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	ok = bind(fd, (struct sockaddr *)&ss, peer->len) == 0;
	close(fd);
	return ok;
}

const struct rdm_transport_ops rdm_shm_ops = {
    .name = "shm",
    .connect = shm_connect,
    .listen = shm_listen,
    .send_batch = shm_send_batch,
    .queued = shm_queued,
    .pause_rx = shm_pause_rx,
    .resume_rx = shm_resume_rx,
    .shutdown_tx = shm_shutdown_tx,
    .close = shm_close,
    .close_listener = shm_close_listener,
};
