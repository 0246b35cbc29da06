/* TCP backend: epoll, TCP_NODELAY, frames as a 4-byte big-endian length then the frame.
 * Each connection owns a byte ring for sending (tcp_tx.c: flushed with one writev per
 * turn, so a batch of frames costs one system call) and a receive buffer that frames are
 * handed out of without copying. In a loop that polls (poll: busy or adaptive) a connection that
 * got bytes reads its socket on every turn for spin_us after (busy: 1 ms): a frame then costs one
 * read, not an epoll_wait and a read. With opts.tls a connection first proves both ends with a
 * TLS 1.3 handshake, driven by the same events (tcp_prove.c), and comes up only after it. */
#include "transport/tcp_int.h"
#include "lib/byteorder.h"
#include "lib/clock.h"
#include "lib/sys.h"
#include "lib/mem.h"
#include "lib/tls_hs.h"
#include "lib/tls_stream.h"
#include "lib/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TCP_BUSY_SPIN_NS 1000000ull /* poll: busy: 1 ms after a connection's last bytes */

static void tcp_io(struct rdm_io *io, uint32_t events);
static void tcp_start_connect(void *arg);

void rdm_tcp__update_events(struct tcp_conn *c)
{
	uint32_t ev = 0;

	if (c->io.fd < 0 || c->eof)
		return;
	if (c->connecting) {
		ev = EPOLLOUT;
	} else if (c->hs) {
		ev = c->hs_write ? EPOLLOUT : EPOLLIN | EPOLLRDHUP;
	} else {
		/* A paused connection reads on until its buffer is full, then leaves the
		 * rest to TCP's window: that is how backpressure reaches the sender. */
		if (!c->rx_paused || c->rx_end < c->rx_cap || c->rx_start > 0)
			ev |= EPOLLIN | EPOLLRDHUP;
		if (c->tx_tail != c->tx_head)
			ev |= EPOLLOUT;
	}
	rdm_io_mod(c->loop, &c->io, ev);
}

static void conn_free(void *p)
{
	struct tcp_conn *c = p;

	free(c->tx);
	free(c->rx);
	free(c);
}

static void unlink_from_listener(struct tcp_conn *c)
{
	struct tcp_conn **pp;

	for (pp = &c->lst->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	c->lst = NULL;
}

/* Follows a received stream from a frame's start: how many frames end in p[0..n). */
struct rx_tally {
	uint8_t pre[LEN_PREFIX];
	uint32_t npre, left;
	int lost_sync; /* a length past max_frame: nothing after it can be told apart */
};

static uint64_t tally_frames(struct rx_tally *t, const uint8_t *p, size_t n, uint32_t max_frame)
{
	uint64_t frames = 0;

	while (n > 0 && !t->lost_sync) {
		if (t->npre < LEN_PREFIX) {
			t->pre[t->npre++] = *p++;
			n--;
			if (t->npre < LEN_PREFIX)
				continue;
			t->left = rdm_get_be32(t->pre);
			t->lost_sync = t->left > max_frame;
		} else {
			uint32_t k = n < t->left ? (uint32_t)n : t->left;

			t->left -= k;
			p += k;
			n -= k;
		}
		if (t->left == 0 && !t->lost_sync) {
			frames++;
			t->npre = 0;
		}
	}
	return frames;
}

static void drop_socket(struct tcp_conn *c)
{
	/* Frames of an up connection that came whole and were never taken (the owner held
	 * back, or closed it) are counted lost here: the peer counted them sent. Ones cut
	 * short are the peer's to count (lost_on_close: not fully written). */
	int tally = c->base.up && !c->hs;
	struct rx_tally t = {0};
	uint64_t lost = 0;

	if (tally)
		lost =
		    tally_frames(&t, c->rx + c->rx_start, c->rx_end - c->rx_start, c->o.max_frame);
	rdm_poller_del(c->loop, &c->poller);
	if (c->io.fd >= 0) {
		uint8_t sink[4096];
		ssize_t n;

		rdm_io_del(c->loop, &c->io);
		/* Close with a FIN, not a RST: a socket closed with unread data resets the
		 * connection, and a reset makes the peer's kernel throw away what it has not
		 * read yet, frames we sent among them. So say we are done, and read away what
		 * the peer sent (frames it sent back that we no longer want), counting its
		 * frames (not through TLS: those bytes are sealed). */
		shutdown(c->io.fd, SHUT_WR);
		for (int i = 0; i < 256 && (n = read(c->io.fd, sink, sizeof(sink))) > 0; i++)
			if (tally && !c->tls)
				lost += tally_frames(&t, sink, (size_t)n, c->o.max_frame);
		close(c->io.fd);
		c->io.fd = -1;
	}
	c->base.stats.rx_lost_on_close += lost;
	/* Whatever was not fully written is gone with the socket: count it, frame by frame,
	 * so a loss is never silent. */
	c->base.stats.lost_on_close += c->tx_frames_q;
	c->tx_frames_q = 0;
	c->tx_head = c->tx_tail = 0;
	c->head_left = 0;
	c->rx_start = c->rx_end = 0;
	c->rx_paused = 0;
	c->eof = 0;
	c->fin_sent = 0;
	c->connecting = 0;
	c->base.congested = 0;
	rdm_timer_cancel(c->loop, &c->kick);
	rdm_tls_hs_free(c->hs);
	c->hs = NULL;
	rdm_timer_cancel(c->loop, &c->hs_timer);
	rdm_tls_stream_free(c->tls);
	c->tls = NULL;
	c->kernel_tx = 0;
	rdm_timer_cancel(c->loop, &c->kick_rd);
}

/* The connection failed: tell the owner, then reconnect (outbound) or free (accepted). */
void rdm_tcp__fail(struct tcp_conn *c)
{
	int was_up = c->base.up;

	drop_socket(c);
	c->base.up = 0;
	if (was_up) {
		c->base.stats.disconnects++;
		if (c->base.cbs.on_state)
			c->base.cbs.on_state(&c->base, 0, c->base.cbs.arg);
	}
	if (c->closed || c->tx_shut)
		return;
	if (c->lst || !c->peer.len) {
		if (c->lst)
			unlink_from_listener(c);
		c->closed = 1;
		rdm_loop_defer_free(c->loop, c, conn_free);
		return;
	}
	rdm_timer_arm(c->loop, &c->retry, c->backoff_ms, tcp_start_connect, c);
	c->backoff_ms =
	    c->backoff_ms * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms : c->backoff_ms * 2;
}

static void tcp_read(struct tcp_conn *c);

static void kick_read(void *arg)
{
	tcp_read(arg);
}

/* Hands complete frames to the owner in batches until it stops taking them. */
void rdm_tcp__deliver(struct tcp_conn *c)
{
	struct rdm_rxframe fr[256];
	uint32_t max = c->o.batch < 256 ? c->o.batch : 256;

	while (!c->rx_paused && !c->closed && c->io.fd >= 0) {
		uint32_t off = c->rx_start, n = 0;
		int took;

		while (n < max && c->rx_end - off >= LEN_PREFIX) {
			const uint8_t *p = c->rx + off;
			uint32_t len = rdm_get_be32(p);

			if (len > c->o.max_frame) {
				/* A stream cannot resynchronise after a bad length. */
				c->base.stats.rx_bad_len++;
				if (n == 0) {
					rdm_tcp__fail(c);
					return;
				}
				break;
			}
			if (c->rx_end - off - LEN_PREFIX < len)
				break;
			fr[n].data = p + LEN_PREFIX;
			fr[n].len = len;
			n++;
			off += LEN_PREFIX + len;
		}
		if (n == 0)
			break;
		took = c->base.cbs.on_frames(&c->base, fr, (int)n, c->base.cbs.arg);
		if (c->closed || c->io.fd < 0)
			return;
		if (took < 0)
			took = 0;
		if (took > 0) {
			/* The frames taken are the first ones: the buffer starts after the last. */
			c->rx_start = (uint32_t)(fr[took - 1].data - c->rx) + fr[took - 1].len;
			c->base.stats.rx_frames += (uint64_t)took;
		}
		if ((uint32_t)took < n) {
			c->rx_paused = 1;
			break;
		}
	}
	if (c->rx_start == c->rx_end) {
		c->rx_start = c->rx_end = 0;
		if (c->eof) {
			rdm_tcp__fail(c); /* everything the peer sent is delivered */
			return;
		}
	} else if (c->eof && !c->rx_paused) {
		/* What is left is less than a frame: the peer's last frame was cut. */
		rdm_tcp__fail(c);
		return;
	}
	/* TLS may hold decrypted bytes the socket no longer shows: no event would come. */
	if (c->tls && !c->rx_paused && !c->eof && c->rx_end < c->rx_cap &&
	    rdm_tls_stream_pending(c->tls))
		rdm_timer_arm(c->loop, &c->kick_rd, 0, kick_read, c);
	rdm_tcp__update_events(c);
}

/* The peer closed (or reset) the connection. Frames already read but not yet taken by
 * the owner (it paused us: backpressure) must not go with the socket: stop watching it,
 * and let rdm_tcp__deliver() fail the connection once it has handed them all over. */
void rdm_tcp__eof(struct tcp_conn *c)
{
	c->eof = 1;
	rdm_io_del(c->loop, &c->io); /* a hang-up would be reported again and again */
	rdm_tcp__deliver(c);
}

/* Bytes came: in a loop that polls, the socket is read on every turn from now on, until
 * spin_ns passes without any. */
static void stay_hot(struct tcp_conn *c)
{
	if (!c->spin_ns || rdm_loop_poll_mode(c->loop) == RDM_POLL_SLEEP)
		return;
	c->hot_until_ns = rdm_loop_now(c->loop) + c->spin_ns;
	if (!c->poller.hot)
		rdm_poller_wake(c->loop, &c->poller);
}

/* One turn of busy reading; whether to stay hot. A connection that cannot read now
 * (paused, closed, proving itself) goes cold: its events wake it again. */
static int poll_read(struct rdm_poller *p)
{
	struct tcp_conn *c = container_of(p, struct tcp_conn, poller);
	uint64_t before = c->base.stats.rx_bytes;

	if (c->io.fd < 0 || c->closed || c->eof || c->hs || c->rx_paused || !c->base.up)
		return 0;
	tcp_read(c);
	if (c->io.fd < 0 || c->closed || c->eof)
		return 0;
	if (c->base.stats.rx_bytes != before) {
		c->base.stats.rx_polled++;
		return 1; /* tcp_read renewed hot_until_ns */
	}
	return rdm_loop_now(c->loop) < c->hot_until_ns;
}

static void tcp_read(struct tcp_conn *c)
{
	ssize_t n;

	if (c->rx_end == c->rx_cap && c->rx_start > 0) {
		memmove(c->rx, c->rx + c->rx_start, c->rx_end - c->rx_start);
		c->rx_end -= c->rx_start;
		c->rx_start = 0;
	}
	if (c->rx_end == c->rx_cap)
		return; /* paused with a full buffer: the peer waits on TCP's window */
	if (c->tls) {
		uint64_t before = c->base.stats.rx_bytes;

		rdm_tcp__tls_read(c);
		if (c->base.stats.rx_bytes != before && c->io.fd >= 0 && !c->closed)
			stay_hot(c);
		return;
	}
	n = rdm_sys_read(c->io.fd, c->rx + c->rx_end, c->rx_cap - c->rx_end);
	if (n == 0) {
		rdm_tcp__eof(c);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			rdm_tcp__eof(c);
		return;
	}
	c->rx_end += (uint32_t)n;
	c->base.stats.rx_bytes += (uint64_t)n;
	stay_hot(c);
	rdm_tcp__deliver(c);
}

static void set_sockopts(int fd, const struct rdm_conn_opts *o)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->sndbuf)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof(o->sndbuf));
	if (o->rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof(o->rcvbuf));
	if (o->keepalive_ms) {
		/* Probes notice a silent peer; the user timeout bounds unacknowledged data. */
		int idle = 1, intvl = 1, cnt = (int)(o->keepalive_ms / 1000) + 1;
		unsigned int uto = o->keepalive_ms;

		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, sizeof(uto));
	}
}

void rdm_tcp__became_up(struct tcp_conn *c)
{
	c->connecting = 0;
	c->base.up = 1;
	c->base.epoch++;
	c->base.stats.connects++;
	c->backoff_ms = c->o.backoff_min_ms;
	rdm_tcp__update_events(c);
	if (c->base.cbs.on_state)
		c->base.cbs.on_state(&c->base, 1, c->base.cbs.arg);
}

static void tcp_io(struct rdm_io *io, uint32_t events)
{
	struct tcp_conn *c = container_of(io, struct tcp_conn, io);

	if (c->hs) {
		rdm_tcp__prove_step(c);
		return;
	}
	if (c->connecting) {
		int err = 0;
		socklen_t l = sizeof(err);

		if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		if (err) {
			c->base.stats.connect_fails++;
			rdm_tcp__fail(c);
			return;
		}
		rdm_tcp__connected(c);
		return;
	}
	if (events & EPOLLOUT) {
		if (rdm_tcp__flush(c) < 0)
			return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		/* Read even when only a hang-up is reported: buffered frames come first,
		 * then read() returns 0 and the connection fails in order. */
		if (c->rx_paused && c->rx_end == c->rx_cap && c->rx_start == 0 &&
		    (events & (EPOLLHUP | EPOLLERR))) {
			rdm_tcp__eof(
			    c); /* nothing more can be read; what is buffered still counts */
			return;
		}
		tcp_read(c);
	}
}

static void tcp_start_connect(void *arg)
{
	struct tcp_conn *c = arg;
	int fd;

	fd = socket(c->peer.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		c->base.stats.connect_fails++;
		rdm_tcp__fail(c);
		return;
	}
	set_sockopts(fd, &c->o);
	if (rdm_io_add(c->loop, &c->io, fd, EPOLLOUT, tcp_io) < 0) {
		close(fd);
		c->base.stats.connect_fails++;
		rdm_tcp__fail(c);
		return;
	}
	c->connecting = 1;
	if (connect(fd, (struct sockaddr *)&c->peer.ss, c->peer.len) == 0) {
		rdm_tcp__connected(c);
		return;
	}
	if (errno != EINPROGRESS) {
		c->base.stats.connect_fails++;
		rdm_tcp__fail(c);
	}
}

static struct tcp_conn *conn_new(struct rdm_loop *l, const struct rdm_conn_opts *o,
				 const struct rdm_conn_cbs *cbs)
{
	struct tcp_conn *c = calloc(1, sizeof(*c));
	uint32_t max_frame = o->max_frame ? o->max_frame : 16384;
	uint32_t batch = o->batch ? o->batch : 32;

	if (!c)
		return NULL;
	c->base.ops = &rdm_tcp_ops;
	c->base.cbs = *cbs;
	c->loop = l;
	c->io.fd = -1;
	c->o = *o;
	c->o.max_frame = max_frame;
	c->o.batch = batch;
	if (!c->o.queue_bytes)
		c->o.queue_bytes = 4u << 20;
	if (!c->o.backoff_min_ms)
		c->o.backoff_min_ms = 20;
	if (!c->o.handshake_ms)
		c->o.handshake_ms = RDM_HANDSHAKE_MS;
	c->o.peer_name = NULL; /* copied below, for outbound connections */
	if (c->o.backoff_max_ms < c->o.backoff_min_ms)
		c->o.backoff_max_ms = c->o.backoff_min_ms;
	c->backoff_ms = c->o.backoff_min_ms;
	c->poller.poll = poll_read;
	c->poller.costly = 1;
	/* A node on poll: busy (spin_us UINT32_MAX) still lets a connection idle for
	 * TCP_BUSY_SPIN_NS go back to epoll: an idle socket read on every turn is a system
	 * call a turn that the connections with traffic would wait behind. */
	c->spin_ns = o->spin_us == UINT32_MAX ? TCP_BUSY_SPIN_NS : (uint64_t)o->spin_us * 1000;
	/* Room past the limit for one whole batch, so a batch is never split. */
	c->tx_cap = c->o.queue_bytes + batch * (max_frame + LEN_PREFIX);
	c->rx_cap = 2 * (max_frame + LEN_PREFIX) > (256u << 10) ? 2 * (max_frame + LEN_PREFIX)
								: (256u << 10);
	c->tx = malloc(c->tx_cap);		  /* used only for what the socket does not take */
	c->rx = rdm_calloc_touched(1, c->rx_cap); /* every read lands here */
	if (!c->tx || !c->rx) {
		conn_free(c);
		errno = ENOMEM;
		return NULL;
	}
	return c;
}

static struct rdm_conn *tcp_connect(struct rdm_loop *l, const struct rdm_addr *peer,
				    const struct rdm_conn_opts *o, const struct rdm_conn_cbs *cbs)
{
	struct tcp_conn *c;

	if (!peer || !peer->len || !cbs || !cbs->on_frames) {
		errno = EINVAL;
		return NULL;
	}
	if (o->tls && (!o->peer_name || strlen(o->peer_name) >= sizeof(c->peer_name))) {
		errno = EINVAL;
		return NULL;
	}
	c = conn_new(l, o, cbs);
	if (!c)
		return NULL;
	if (o->tls)
		snprintf(c->peer_name, sizeof(c->peer_name), "%s", o->peer_name);
	c->peer = *peer;
	snprintf(c->base.peer, sizeof(c->base.peer), "%s", peer->text);
	tcp_start_connect(c);
	return &c->base;
}

static void tcp_close(struct rdm_conn *bc)
{
	struct tcp_conn *c;

	if (!bc)
		return;
	c = to_tcp(bc);
	if (c->closed)
		return;
	c->closed = 1;
	rdm_timer_cancel(c->loop, &c->retry);
	drop_socket(c);
	bc->up = 0;
	if (c->lst)
		unlink_from_listener(c);
	rdm_loop_defer_free(c->loop, c, conn_free);
}

static void kick_deliver(void *arg)
{
	rdm_tcp__deliver(arg);
}

static void tcp_shutdown_tx(struct rdm_conn *bc)
{
	struct tcp_conn *c = to_tcp(bc);

	if (c->io.fd < 0 || c->tx_shut)
		return;
	c->tx_shut = 1;
	rdm_timer_cancel(c->loop, &c->retry);
	rdm_tcp__flush(c); /* sends the FIN once what is queued is out */
}

static void tcp_pause_rx(struct rdm_conn *bc)
{
	struct tcp_conn *c = to_tcp(bc);

	c->rx_paused = 1;
	rdm_tcp__update_events(c);
}

static void tcp_resume_rx(struct rdm_conn *bc)
{
	struct tcp_conn *c = to_tcp(bc);

	if (!c->rx_paused || c->closed)
		return;
	c->rx_paused = 0;
	rdm_tcp__update_events(c);
	/* Deliver from the loop, never from inside the caller's own callback. */
	if (c->rx_end != c->rx_start)
		rdm_timer_arm(c->loop, &c->kick, 0, kick_deliver, c);
}

static void accept_io(struct rdm_io *io, uint32_t events)
{
	struct tcp_listener *lst = container_of(io, struct tcp_listener, io);

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		char full[96];
		struct tcp_conn *c;

		if (fd < 0)
			return; /* EAGAIN, or a transient error: the next event retries */
		full[0] = '\0';
		if (lst->o.tls)
			rdm_tcp__half_open_full(lst, &ss, full, sizeof(full));
		c = conn_new(lst->loop, &lst->o, &lst->cbs);
		if (!c) {
			close(fd);
			continue;
		}
		rdm_addr_format(&ss, sl, c->base.peer, sizeof(c->base.peer));
		if (full[0]) {
			char why[192];

			snprintf(why, sizeof(why), "client %s: refused: %s", c->base.peer, full);
			if (lst->cbs.on_refused)
				lst->cbs.on_refused(&c->base, why, lst->cbs.arg);
			close(fd);
			conn_free(c);
			continue;
		}
		set_sockopts(fd, &lst->o);
		if (rdm_io_add(lst->loop, &c->io, fd, EPOLLIN | EPOLLRDHUP, tcp_io) < 0) {
			close(fd);
			conn_free(c);
			continue;
		}
		c->src = ss;
		c->lst = lst;
		c->next = lst->conns;
		lst->conns = c;
		rdm_tcp__connected(c);
	}
}

static struct rdm_listener *tcp_listen(struct rdm_loop *l, const struct rdm_addr *addr,
				       const struct rdm_conn_opts *o,
				       const struct rdm_conn_cbs *cbs)
{
	struct tcp_listener *lst;
	int fd, one = 1, e;

	if (!addr || !addr->len || !cbs || !cbs->on_frames) {
		errno = EINVAL;
		return NULL;
	}
	lst = calloc(1, sizeof(*lst));
	if (!lst)
		return NULL;
	lst->loop = l;
	lst->o = *o;
	lst->cbs = *cbs;
	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto err;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (o->reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, 128) < 0)
		goto err_fd;
	if ((e = rdm_io_add(l, &lst->io, fd, EPOLLIN, accept_io)) < 0) {
		errno = -e;
		goto err_fd;
	}
	return (struct rdm_listener *)lst;
err_fd:
	e = errno;
	close(fd);
	errno = e;
err:
	e = errno;
	free(lst);
	errno = e;
	return NULL;
}

static void listener_free(void *p)
{
	free(p);
}

static void tcp_close_listener(struct rdm_listener *bl)
{
	struct tcp_listener *lst = (struct tcp_listener *)bl;

	if (!lst)
		return;
	while (lst->conns)
		tcp_close(&lst->conns->base);
	rdm_io_del(lst->loop, &lst->io);
	close(lst->io.fd);
	rdm_loop_defer_free(lst->loop, lst, listener_free);
}

const struct rdm_transport_ops rdm_tcp_ops = {
    .name = "tcp",
    .connect = tcp_connect,
    .listen = tcp_listen,
    .send_batch = rdm_tcp__send_batch,
    .queued = rdm_tcp__queued,
    .pause_rx = tcp_pause_rx,
    .resume_rx = tcp_resume_rx,
    .shutdown_tx = tcp_shutdown_tx,
    .close = tcp_close,
    .close_listener = tcp_close_listener,
};
