/* A TLS 1.3 session kept after the data plane's handshake (lib/tls_hs.h), for
 * protect: encrypt: every byte of a hop is encrypted and authenticated.
 *
 * Sending: where the kernel has TLS (the tls module: TCP_ULP "tls"), OpenSSL hands it the
 * keys during the handshake, and the caller goes on writing plaintext to the socket
 * with sendmsg as before: the kernel makes the records (rdm_tls_stream_ktls_tx). Where
 * it has not, rdm_tls_stream_write encrypts in user space. Receiving always goes
 * through rdm_tls_stream_read (OpenSSL reads kernel-decrypted records itself where the
 * kernel decrypts, and decrypts in user space where it does not).
 *
 * A record that fails its check (a byte changed on the wire) fails the connection:
 * there is no way to resynchronise an authenticated stream. */
#ifndef RDM_TLS_STREAM_H
#define RDM_TLS_STREAM_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/tls_hs.h"

struct rdm_tls_stream;

/* Takes over the session of h, whose rdm_tls_hs_step returned 1 after rdm_tls_hs_keep
 * (h is freed). NULL when out of memory (h is freed all the same). */
struct rdm_tls_stream *rdm_tls_stream_from(struct rdm_tls_hs *h);

/* 1 when the kernel encrypts what is written to the socket, else 0. */
int rdm_tls_stream_ktls_tx(const struct rdm_tls_stream *s);

/* 1 when the kernel decrypts what arrives, else 0 (informational: read as always). */
int rdm_tls_stream_ktls_rx(const struct rdm_tls_stream *s);

/* Encrypts and sends up to len bytes of buf. Returns how many were taken (> 0), or
 * -EAGAIN (call again with the same bytes first, once the socket is writable), or
 * -EPIPE / -EPROTO when the connection failed. */
ssize_t rdm_tls_stream_write(struct rdm_tls_stream *s, const void *buf, size_t len);

/* Reads up to len decrypted bytes. Returns how many (> 0), 0 when the peer closed, or
 * -EAGAIN (nothing now: wait for the socket), or -EPROTO when a record failed its check
 * or the peer sent an alert (why says which, in one line). */
ssize_t rdm_tls_stream_read(struct rdm_tls_stream *s, void *buf, size_t len, char *why,
			    size_t whylen);

/* Decrypted bytes OpenSSL holds that the socket no longer shows. */
int rdm_tls_stream_pending(struct rdm_tls_stream *s);

/* Says the sender is done (close_notify), without waiting. */
void rdm_tls_stream_close_notify(struct rdm_tls_stream *s);

/* Frees the session; the socket stays open. Accepts NULL. */
void rdm_tls_stream_free(struct rdm_tls_stream *s);

#endif
