/* Messages over an established control channel connection (see tls.h): the 4-byte
 * length framing, each send and receive bounded by a deadline and serialised by the
 * connection's locks, and the connection's end. */
#include "lib/tls_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "lib/byteorder.h"
#include "lib/err.h"

/* One SSL_read or SSL_write (write != 0) of up to n bytes, waiting as it asks until the
 * deadline. Returns the bytes moved (> 0), or -ETIMEDOUT, -EPIPE or -EPROTO with c->err
 * set. Holds c->lock only around the SSL call. */
static long io(struct rdm_tls_conn *c, int write, void *p, size_t n, uint64_t deadline)
{
	for (;;) {
		size_t done = 0;
		int r, e, se, rc;

		pthread_mutex_lock(&c->lock);
		ERR_clear_error();
		errno = 0;
		r = write ? SSL_write_ex(c->ssl, p, n, &done) : SSL_read_ex(c->ssl, p, n, &done);
		if (r == 1) {
			pthread_mutex_unlock(&c->lock);
			return (long)done;
		}
		se = errno;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			pthread_mutex_unlock(&c->lock);
			rc = rdm_tls__wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
					      deadline);
			if (rc == 0)
				continue;
			pthread_mutex_lock(&c->lock);
			if (rc == -ETIMEDOUT)
				rdm_errf(c->err, sizeof(c->err), 0, "%s: %s timed out",
					 c->peer_addr, write ? "send" : "receive");
			else
				rdm_errf(c->err, sizeof(c->err), 0, "%s: poll: %s", c->peer_addr,
					 strerror(-rc));
			pthread_mutex_unlock(&c->lock);
			return rc == -ETIMEDOUT ? -ETIMEDOUT : -EPIPE;
		}
		if (e == SSL_ERROR_ZERO_RETURN) {
			rc = -EPIPE;
			rdm_errf(c->err, sizeof(c->err), 0, "%s: peer closed the connection",
				 c->peer_addr);
		} else if (e == SSL_ERROR_SYSCALL) {
			rc = -EPIPE;
			c->fatal = 1;
			rdm_errf(c->err, sizeof(c->err), 0, "%s: connection %s", c->peer_addr,
				 se ? strerror(se) : "closed by the peer");
		} else if (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_last_error()) ==
						     SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			rc = -EPIPE;
			c->fatal = 1;
			ERR_clear_error();
			rdm_errf(c->err, sizeof(c->err), 0,
				 "%s: peer closed the connection (without close_notify)",
				 c->peer_addr);
		} else {
			rc = -EPROTO;
			c->fatal = 1;
			c->alert = ERR_GET_REASON(ERR_peek_last_error()) >= SSL_AD_REASON_OFFSET;
			rdm_ossl_reason(c->reason, sizeof(c->reason));
			rdm_errf(c->err, sizeof(c->err), 0, "%s: TLS failure%s: %s", c->peer_addr,
				 c->alert ? ", alert from the peer" : "", c->reason);
		}
		ERR_clear_error();
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
}

/* Writes all of p (n bytes) by the deadline: 0 or what io() returned. */
static int write_all(struct rdm_tls_conn *c, const void *p, size_t n, uint64_t deadline)
{
	const uint8_t *b = p;

	while (n > 0) {
		long w = io(c, 1, (void *)b, n, deadline);

		if (w < 0)
			return (int)w;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Sends one message by the deadline; the body of rdm_tls_send. */
int rdm_tls__send_msg(struct rdm_tls_conn *c, const void *buf, uint32_t len, uint64_t deadline)
{
	uint8_t small[4 + RDM_TLS__SMALL_MSG];
	int rc;

	if (len > RDM_TLS_MAX_MSG)
		return -EMSGSIZE;
	if (len && !buf)
		return -EINVAL;
	pthread_mutex_lock(&c->tx_lock);
	if (c->tx_dead) {
		pthread_mutex_unlock(&c->tx_lock);
		return -EPIPE;
	}
	if (len <= RDM_TLS__SMALL_MSG) {
		/* One record for header and body. */
		rdm_put_be32(small, len);
		if (len)
			memcpy(small + 4, buf, len);
		rc = write_all(c, small, 4 + (size_t)len, deadline);
	} else {
		rdm_put_be32(small, len);
		rc = write_all(c, small, 4, deadline);
		if (rc == 0)
			rc = write_all(c, buf, len, deadline);
	}
	if (rc < 0)
		c->tx_dead = rc;
	pthread_mutex_unlock(&c->tx_lock);
	return rc;
}

int rdm_tls_send(struct rdm_tls_conn *c, const void *buf, uint32_t len, int timeout_ms)
{
	return rdm_tls__send_msg(c, buf, len, rdm_tls__deadline_in(timeout_ms));
}

/* Receives one message by the deadline; the body of rdm_tls_recv. max bounds what the
 * peer may announce. */
int rdm_tls__recv_msg(struct rdm_tls_conn *c, uint8_t **buf, uint32_t *len, uint64_t deadline,
		      uint32_t max)
{
	long n;
	int rc = 0;

	pthread_mutex_lock(&c->rx_lock);
	if (c->rx_dead) {
		rc = c->rx_dead;
		goto out;
	}
	while (c->hdr_got < 4) {
		n = io(c, 0, c->hdr + c->hdr_got, 4 - c->hdr_got, deadline);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		c->hdr_got += (uint32_t)n;
	}
	if (!c->rx_buf) {
		c->rx_len = rdm_get_be32(c->hdr);
		if (c->rx_len > max) {
			pthread_mutex_lock(&c->lock);
			rdm_errf(c->err, sizeof(c->err), 0,
				 "%s: peer announced a %u-byte message, over the %u-byte limit",
				 c->peer_addr, c->rx_len, max);
			pthread_mutex_unlock(&c->lock);
			rc = -EPROTO;
			goto out;
		}
		c->rx_buf = malloc(c->rx_len ? c->rx_len : 1);
		if (!c->rx_buf) {
			rc = -ENOMEM; /* the header stays: a later call may have memory */
			goto out;
		}
		c->rx_got = 0;
	}
	while (c->rx_got < c->rx_len) {
		n = io(c, 0, c->rx_buf + c->rx_got, c->rx_len - c->rx_got, deadline);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		c->rx_got += (uint32_t)n;
	}
	*buf = c->rx_buf;
	*len = c->rx_len;
	c->rx_buf = NULL;
	c->hdr_got = 0;
out:
	if (rc == -EPIPE || rc == -EPROTO)
		c->rx_dead = rc;
	pthread_mutex_unlock(&c->rx_lock);
	return rc;
}

int rdm_tls_recv(struct rdm_tls_conn *c, uint8_t **buf, uint32_t *len, int timeout_ms)
{
	return rdm_tls__recv_msg(c, buf, len, rdm_tls__deadline_in(timeout_ms), RDM_TLS_MAX_MSG);
}

int rdm_tls_fd(const struct rdm_tls_conn *c)
{
	return c->fd;
}

int rdm_tls_pending(struct rdm_tls_conn *c)
{
	int p;

	pthread_mutex_lock(&c->lock);
	p = SSL_has_pending(c->ssl);
	pthread_mutex_unlock(&c->lock);
	return p;
}

void rdm_tls_error(struct rdm_tls_conn *c, char *buf, size_t len)
{
	if (!len)
		return;
	pthread_mutex_lock(&c->lock);
	snprintf(buf, len, "%s", c->err);
	pthread_mutex_unlock(&c->lock);
}

void rdm_tls_shutdown(struct rdm_tls_conn *c)
{
	if (c && c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

void rdm_tls_close(struct rdm_tls_conn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* One try at close_notify, so the peer reads -EPIPE rather than an error;
		 * never after a fatal error (OpenSSL forbids it) or a broken send. */
		if (c->fd >= 0 && !c->fatal && !c->tx_dead && SSL_is_init_finished(c->ssl)) {
			SSL_shutdown(c->ssl);
			ERR_clear_error();
		}
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c->rx_buf);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->tx_lock);
	pthread_mutex_destroy(&c->rx_lock);
	free(c);
}
