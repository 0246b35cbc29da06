/* The TCP backend's sending side: frames go straight from where they lie to the socket
 * (one sendmsg of their pieces, no copy) while nothing is queued, and otherwise into the
 * connection's byte ring, flushed with one writev per turn (through TLS when the
 * connection encrypts in user space). */
#include "transport/tcp_int.h"
#include "lib/byteorder.h"
#include "lib/sys.h"
#include "lib/tls_stream.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

size_t rdm_tcp__queued(const struct rdm_conn *bc)
{
	const struct tcp_conn *c = container_of(bc, struct tcp_conn, base);

	return (size_t)(c->tx_tail - c->tx_head);
}

/* Advances the ring by n written bytes and counts the frames that completed. */
static void tx_advance(struct tcp_conn *c, size_t n)
{
	c->base.stats.tx_bytes += n;
	while (n) {
		size_t take;

		if (c->head_left == 0) {
			uint8_t p[LEN_PREFIX];

			for (int i = 0; i < LEN_PREFIX; i++)
				p[i] = c->tx[(c->tx_head + (uint64_t)i) % c->tx_cap];
			c->head_left = LEN_PREFIX + rdm_get_be32(p);
		}
		take = n < c->head_left ? n : c->head_left;
		c->head_left -= (uint32_t)take;
		c->tx_head += take;
		n -= take;
		if (c->head_left == 0) {
			c->tx_frames_q--;
			c->base.stats.tx_frames++;
		}
	}
}

/* Writes as much of the ring as the socket takes. 0, or -1 after the connection failed. */
int rdm_tcp__flush(struct tcp_conn *c)
{
	while (c->tx_tail != c->tx_head) {
		struct iovec iov[2];
		struct msghdr msg = {.msg_iov = iov};
		uint32_t h = (uint32_t)(c->tx_head % c->tx_cap);
		uint64_t pending = c->tx_tail - c->tx_head;
		size_t first = c->tx_cap - h < pending ? c->tx_cap - h : pending;
		ssize_t n;

		iov[0].iov_base = c->tx + h;
		iov[0].iov_len = first;
		msg.msg_iovlen = 1;
		if (pending > first) {
			iov[1].iov_base = c->tx;
			iov[1].iov_len = pending - first;
			msg.msg_iovlen = 2;
		}
		if (c->tls && !c->kernel_tx) {
			/* User-space encryption: the ring's first piece, record by record. */
			n = rdm_tls_stream_write(c->tls, iov[0].iov_base, iov[0].iov_len);
			if (n == -EAGAIN)
				break;
			if (n < 0) {
				rdm_tcp__fail(c);
				return -1;
			}
			pending = (uint64_t)n; /* a record at a time: not a partial write */
		} else {
			n = rdm_sys_sendmsg(c->io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			rdm_tcp__fail(c);
			return -1;
		}
		if ((uint64_t)n < pending)
			c->base.stats.partial_writes++;
		tx_advance(c, (size_t)n);
	}
	if (c->tx_shut && !c->fin_sent && c->tx_tail == c->tx_head) {
		if (c->tls)
			rdm_tls_stream_close_notify(c->tls);
		shutdown(c->io.fd, SHUT_WR); /* all out: now the FIN */
		c->fin_sent = 1;
	}
	rdm_tcp__update_events(c);
	if (c->base.congested && rdm_tcp__queued(&c->base) <= c->o.queue_bytes / 2) {
		c->base.congested = 0;
		if (c->base.cbs.on_writable)
			c->base.cbs.on_writable(&c->base, c->base.cbs.arg);
	}
	return 0;
}

static void ring_put(struct tcp_conn *c, const void *src, uint32_t len)
{
	uint32_t t = (uint32_t)(c->tx_tail % c->tx_cap);
	uint32_t first = c->tx_cap - t < len ? c->tx_cap - t : len;

	memcpy(c->tx + t, src, first);
	if (len > first)
		memcpy(c->tx, (const uint8_t *)src + first, len - first);
	c->tx_tail += len;
}

/* Frames per sendmsg on the direct path: three pieces each (length, header, packet). */
#define DIRECT_MAX 64

/* Sends frames f[0..n) from where they lie, with nothing queued before them: one sendmsg
 * of their pieces, no copy in user space. What the socket did not take (the rest of a
 * frame it took part of) goes to the ring. Returns how many frames it consumed, whole or
 * in part; -1 after the connection failed. */
static int send_direct(struct tcp_conn *c, const struct rdm_txframe *f, int n)
{
	struct iovec iov[3 * DIRECT_MAX];
	uint8_t pre[DIRECT_MAX][LEN_PREFIX];
	struct msghdr msg = {.msg_iov = iov};
	ssize_t sent;
	size_t total = 0;
	int k = n < DIRECT_MAX ? n : DIRECT_MAX, v = 0, i;

	for (i = 0; i < k; i++) {
		uint32_t len = f[i].hdr_len + f[i].pkt_len;

		total += LEN_PREFIX + len;
		rdm_put_be32(pre[i], len);
		iov[v++] = (struct iovec){pre[i], LEN_PREFIX};
		iov[v++] = (struct iovec){(void *)f[i].hdr, f[i].hdr_len};
		if (f[i].pkt_len)
			iov[v++] = (struct iovec){(void *)f[i].pkt, f[i].pkt_len};
	}
	msg.msg_iovlen = (size_t)v;
	do
		sent = rdm_sys_sendmsg(c->io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (sent < 0 && errno == EINTR);
	if (sent < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			rdm_tcp__fail(c);
			return -1;
		}
		return 0;
	}
	c->base.stats.tx_bytes += (uint64_t)sent;
	if ((size_t)sent == total) {
		c->base.stats.tx_frames += (uint64_t)k; /* the common case: all of them */
		return k;
	}
	for (i = 0; i < k && sent > 0; i++) {
		uint32_t len = LEN_PREFIX + f[i].hdr_len + f[i].pkt_len;

		if ((size_t)sent >= len) {
			sent -= len;
			c->base.stats.tx_frames++;
			continue;
		}
		/* Part of this frame went: the ring takes the rest, as the frame at its head. */
		c->base.stats.partial_writes++;
		for (int piece = 0; piece < 3; piece++) {
			const uint8_t *p = piece == 0 ? pre[i] : piece == 1 ? f[i].hdr : f[i].pkt;
			uint32_t plen = piece == 0   ? LEN_PREFIX
					: piece == 1 ? f[i].hdr_len
						     : f[i].pkt_len;

			if ((size_t)sent >= plen) {
				sent -= plen;
				continue;
			}
			ring_put(c, p + sent, plen - (uint32_t)sent);
			c->head_left += plen - (uint32_t)sent;
			sent = 0;
		}
		c->tx_frames_q++;
		return i + 1;
	}
	return i;
}

int rdm_tcp__send_batch(struct rdm_conn *bc, const struct rdm_txframe *f, int n)
{
	struct tcp_conn *c = to_tcp(bc);
	int i = 0;

	if (!bc->up || c->eof)
		return -ENOTCONN;
	for (int j = 0; j < n; j++)
		if (f[j].hdr_len + f[j].pkt_len > c->o.max_frame) {
			n = j;
			if (n == 0)
				return -EMSGSIZE;
		}
	/* Nothing queued and nothing to encrypt in user space: straight to the socket. */
	while (i < n && c->tx_tail == c->tx_head && !(c->tls && !c->kernel_tx)) {
		int k = send_direct(c, f + i, n - i);

		if (k < 0) {
			/* Taken all the same and lost with the connection, as frames in the
			 * ring are when a flush fails it. */
			c->base.stats.lost_on_close += (uint64_t)(n - i);
			return n;
		}
		if (k == 0)
			break;
		i += k;
	}
	for (; i < n; i++) {
		uint32_t len = f[i].hdr_len + f[i].pkt_len;
		uint8_t p[LEN_PREFIX] = {len >> 24, len >> 16, len >> 8, len};

		if (rdm_tcp__queued(bc) + LEN_PREFIX + len > c->tx_cap) {
			bc->stats.queue_full += (uint64_t)(n - i);
			break;
		}
		ring_put(c, p, LEN_PREFIX);
		ring_put(c, f[i].hdr, f[i].hdr_len);
		if (f[i].pkt_len)
			ring_put(c, f[i].pkt, f[i].pkt_len);
		c->tx_frames_q++;
	}
	if (rdm_tcp__queued(bc) >= c->o.queue_bytes && !bc->congested) {
		bc->congested = 1;
		bc->stats.congested++;
	}
	/* A flush that fails the connection counts what it held as lost_on_close: the
	 * frames were taken all the same. */
	rdm_tcp__flush(c);
	return i;
}
