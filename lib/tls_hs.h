/* A TLS 1.3 handshake with mutual certificates, run step by step on a non-blocking
 * socket that an event loop watches: how a data-plane hop proves both ends
 * (transport/tcp.c). Contexts, checks and the verdict are the control channel's
 * (lib/tls.h): the client checks that the server's certificate names the peer it
 * meant to reach; the server requires a client certificate from the CA, asks its admit
 * callback about the client's name, and sends its verdict as the first message.
 *
 * Afterwards no TLS byte is left unread on the socket in either direction (no
 * read-ahead, no session tickets, the verdict read to its last byte and no further),
 * so the caller goes on with the bare socket: protect: auth proves who is at the other
 * end of the TCP connection once, and costs nothing per frame. Or it keeps the session
 * (protect: encrypt, lib/tls_stream.h): then the handshake runs over a plain socket BIO
 * with kernel TLS asked for, so that where the kernel has it, it encrypts what is sent. */
#ifndef RDM_TLS_HS_H
#define RDM_TLS_HS_H

#include <stddef.h>

#include "lib/tls.h"

struct rdm_tls_hs;

/* Starts a handshake on the connected socket fd (non-blocking; not closed by this
 * code). ctx's role decides the side: a client context checks the server's name
 * against expect_name; a server context admits clients through admit (NULL admits any
 * name the CA vouches for). who names the peer in reasons ("upstream 10.0.0.1:5123").
 * NULL with a reason in err. */
struct rdm_tls_hs *rdm_tls_hs_new(struct rdm_tls_ctx *ctx, int fd, const char *expect_name,
				  rdm_tls_admit_fn admit, void *arg, const char *who, char *err,
				  size_t errlen);

/* Before the first step: the session will be kept (rdm_tls_stream_from), so ask for
 * kernel TLS. Returns 0, or -ENOMEM. */
int rdm_tls_hs_keep(struct rdm_tls_hs *h);

/* Binding an RDMA connection (transport/rdma_bind.c): an RDMA connect request has room
 * for no certificate, so the dialler first proves both ends in a handshake like a TCP
 * hop's on the peer's TCP port, asking for the ALPN protocol below. Both ends then take
 * RDM_TLS_BIND_LEN bytes from the session's exporter (RFC 8446 7.5), which nobody else
 * can compute: a one-time token and a key for the MACs of the RDMA set-up. */
#define RDM_TLS_ALPN_BIND                                                                          \
	"\x0b"                                                                                     \
	"rdmesh-bind" /* wire form: length, then the name */
#define RDM_TLS_BIND_LEN 48

/* Server: once a client that asked for a binding is admitted, and before the verdict
 * goes out, fn gets its name and the exported bytes; a negative return refuses the
 * client with why. Without fn, such clients are refused. */
typedef int (*rdm_tls_bind_fn)(const char *peer, const unsigned char *material, void *arg,
			       char *why, size_t whylen);
void rdm_tls_hs_on_bind(struct rdm_tls_hs *h, rdm_tls_bind_fn fn, void *arg);

/* Client, before the first step: ask the server for a binding. 0, or -ENOMEM. */
int rdm_tls_hs_ask_bind(struct rdm_tls_hs *h);

/* Client, once rdm_tls_hs_step returned 1: the exported bytes into out
 * (RDM_TLS_BIND_LEN). 0, or -EPROTO (with a reason in err) when the server did not take
 * the binding. */
int rdm_tls_hs_bound(struct rdm_tls_hs *h, unsigned char *out, char *err, size_t errlen);

/* Server, once rdm_tls_hs_step returned 1: 1 when the client asked for (and got) a
 * binding, not a data connection. */
int rdm_tls_hs_binding(const struct rdm_tls_hs *h);

/* Advances the handshake as far as the socket allows. Returns:
 *   1   done: both ends proven and the verdict exchanged (rdm_tls_hs_peer says who);
 *   0   call again once fd is readable (*want_write = 0) or writable (1);
 *  <0   -errno, with a one-line reason in err: EACCES (we refused the peer: its
 *       certificate, none, the wrong name, or admit said no; a server has sent the
 *       peer its refusal), ECONNREFUSED (the peer refused us), ECONNRESET (closed
 *       mid-way), EPROTO (not a TLS 1.3 rdmesh peer). */
int rdm_tls_hs_step(struct rdm_tls_hs *h, int *want_write, char *err, size_t errlen);

/* The peer's verified name once rdm_tls_hs_step returned 1 (or the refused name after
 * a server's EACCES), else "". */
const char *rdm_tls_hs_peer(const struct rdm_tls_hs *h);

/* Frees the handshake's TLS state without writing to the socket. Accepts NULL. */
void rdm_tls_hs_free(struct rdm_tls_hs *h);

#endif
