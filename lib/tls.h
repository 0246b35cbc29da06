/* The control channel's transport: TLS 1.3 only, mutual certificate authentication, and
 * length-prefixed messages.
 *
 * Wire format, after the TLS handshake: every message is a 4-byte big-endian length,
 * 0..RDM_TLS_MAX_MSG, then that many bytes. The first message on every connection goes
 * from the server to the client and is the server's verdict on the client, consumed by
 * rdm_tls_connect and rdm_tls_accept themselves: RDM_TLS_VERDICT_OK, or
 * RDM_TLS_VERDICT_NO followed by a reason. It exists because in TLS 1.3 the client's
 * handshake completes before the server has checked the client's certificate: without
 * it a refused client would only find out at its first read, and a node refused for an
 * unknown name would see a bare close instead of the reason.
 *
 * Both ends load the rack's CA (ca.pem) and their own certificate and key
 * (lib/certs.h makes them). The server requires a client certificate and
 * verifies it against the CA; the client verifies the server's against the CA and the
 * name it expects (the certificate's DNS subjectAltName, or its CN when it has none; no
 * wildcards). A holder's name is its first DNS subjectAltName, else its CN.
 *
 * Refusals, on the side that refuses, say why in one line: the certificate verification
 * error ("certificate has expired", "unable to get local issuer certificate",
 * "hostname mismatch"), "peer sent no certificate", or the admission callback's reason.
 * The other side gets what the TLS alert said ("sslv3 alert certificate expired",
 * "tlsv1 alert unknown ca", "tlsv13 alert certificate required") or the verdict's reason.
 *
 * I/O: sockets are non-blocking and every wait is a poll() bounded by the call's timeout,
 * so no call blocks past it. Writes use send(MSG_NOSIGNAL) (a BIO of ours), so a closed
 * peer is -EPIPE, never SIGPIPE, whatever the process does with that signal.
 * Threads: one connection may have one thread sending and another receiving at the
 * same time (each SSL call holds the connection's lock; waits do not). Concurrent
 * senders are serialised whole-message; so are concurrent receivers. rdm_tls_close
 * must not race with any other call on the connection: wake blocked threads with
 * rdm_tls_shutdown, join them, then close. A context may serve any number of threads.
 *
 * Timeouts are in milliseconds: < 0 waits for ever, 0 does not wait. */
#ifndef RDM_TLS_H
#define RDM_TLS_H

#include <stddef.h>
#include <sys/socket.h>
#include <stdint.h>

#define RDM_TLS_MAX_MSG		(1u << 20) /* the largest message, in bytes: 1 MiB */
#define RDM_TLS_HANDSHAKE_MS	10000	   /* bound on one handshake, verdict included */
#define RDM_TLS_VERDICT_SEND_MS 1000	   /* the verdict (a few bytes) goes at once, or never */
#define RDM_TLS_VERDICT_OK	"ok"
#define RDM_TLS_VERDICT_NO	"refused: "
#define RDM_TLS_VERDICT_MAX	512 /* a longer first message is not a verdict */

struct rdm_tls_ctx;
struct rdm_tls_conn;

/* A context for one role (server != 0: accepts; 0: connects) holding the CA to verify
 * peers with and this end's certificate chain and key, all PEM files. Certificates are
 * not judged here, so a test can load an expired one and watch the peer refuse it. A
 * client may have neither cert nor key (both NULL): it proves nothing, and only a server
 * that takes anonymous clients lets it in (a pod asking to join). Returns NULL with errno
 * and a one-line reason in err. */
struct rdm_tls_ctx *rdm_tls_ctx_new(const char *ca, const char *cert, const char *key, int server,
				    char *err, size_t errlen);
void rdm_tls_ctx_free(struct rdm_tls_ctx *ctx);

/* A server context that also takes clients with no certificate: they reach the admit
 * callback with the name "" (a certificate they do send is still verified). For the
 * orchestrator, where a pod with a join token asks for its first certificate. */
void rdm_tls_ctx_take_anonymous(struct rdm_tls_ctx *ctx);

/* rdm_tls_ctx_new from the rack's layout, as `rdmesh ctl certs` writes it: dir/ca.pem,
 * dir/NAME.pem and dir/NAME.key, where the certificate must name NAME. */
struct rdm_tls_ctx *rdm_tls_ctx_load(const char *dir, const char *name, int server, char *err,
				     size_t errlen);

/* Rotation: loads ctx's holder's files from dir again (rdm_tls_ctx_load's layout) and
 * makes them what connections made from now on use; connections already set up keep
 * what they were made with. Safe while other threads use ctx. 0, or -errno with a
 * reason in err (ctx is then unchanged). */
int rdm_tls_ctx_reload(struct rdm_tls_ctx *ctx, const char *dir, char *err, size_t errlen);

/* This end's own name, from its certificate (first DNS subjectAltName, else CN). */
const char *rdm_tls_ctx_name(const struct rdm_tls_ctx *ctx);

/* Connects to host_port ("host:port", "[v6]:port"; host may be a name), runs the
 * handshake, checks that the server's certificate names expect_name, and waits for the
 * server's verdict, all within timeout_ms (<= 0: RDM_TLS_HANDSHAKE_MS).
 * Returns the connection, or NULL with errno and a one-line reason in err:
 *   ETIMEDOUT     no connection or no verdict in time;
 *   ECONNREFUSED  nothing listens, or the server refused us (its alert or its verdict);
 *   EACCES        we refused the server's certificate (CA, expiry, name);
 *   ECONNRESET    the server closed the connection mid-handshake;
 *   EPROTO        any other TLS failure (e.g. no common protocol version);
 *   EINVAL        bad host_port or expect_name. */
struct rdm_tls_conn *rdm_tls_connect(struct rdm_tls_ctx *ctx, const char *host_port,
				     const char *expect_name, int timeout_ms, char *err,
				     size_t errlen);

/* A plain listening TCP socket (non-blocking, SO_REUSEADDR) on host_port; host may be
 * "*" or empty for every address, port may be 0 for an ephemeral one (getsockname).
 * Returns the fd (the caller closes it), or -errno with err set. */
int rdm_tls_listen(const char *host_port, char *err, size_t errlen);

/* Decides whether a verified peer is admitted: returns 0 to admit, or nonzero after
 * writing a one-line reason (sent to the peer in the verdict) into why. */
typedef int (*rdm_tls_admit_fn)(const char *name, void *arg, char *why, size_t whylen);

/* Waits up to timeout_ms for a connection on lfd, then runs the handshake and the
 * verdict within RDM_TLS_HANDSHAKE_MS more. A peer with a verified certificate is then
 * asked about by admit (NULL admits every name the CA vouches for). Returns the
 * connection (rdm_tls_peer_name says who), or NULL with errno and a one-line reason,
 * prefixed by the peer's address, in err:
 *   ETIMEDOUT     no connection within timeout_ms, or the handshake stalled;
 *   EACCES        we refused the peer: its certificate, none at all, or admit said no;
 *   ECONNREFUSED  the peer refused us (its alert);
 *   ECONNRESET    the peer closed the connection mid-handshake;
 *   EPROTO        any other TLS failure (e.g. a TLS 1.2 client);
 *   other         accept(2) failed (e.g. EMFILE). */
struct rdm_tls_conn *rdm_tls_accept(struct rdm_tls_ctx *ctx, int lfd, int timeout_ms,
				    rdm_tls_admit_fn admit, void *arg, char *err, size_t errlen);

/* The same, step by step, for a server that proves many connections at once (the
 * orchestrator): rdm_tls_accept_start takes an accepted non-blocking socket fd (peer
 * address ss) and owns it from then on, or returns NULL with a reason in err (fd is then
 * still the caller's). rdm_tls_accept_step advances the handshake as far as the socket
 * allows: 1 when done and the verdict sent (the connection is ready, as one from
 * rdm_tls_accept), 0 to be called again once fd is readable (*want_write 0) or writable
 * (1), or -errno as rdm_tls_accept, with the reason in err; then rdm_tls_accept_abort
 * frees it (as it does one given up on at a deadline). */
struct rdm_tls_conn *rdm_tls_accept_start(struct rdm_tls_ctx *ctx, int fd,
					  const struct sockaddr_storage *ss, socklen_t sl,
					  char *err, size_t errlen);
int rdm_tls_accept_step(struct rdm_tls_conn *c, rdm_tls_admit_fn admit, void *arg, int *want_write,
			char *err, size_t errlen);
void rdm_tls_accept_abort(struct rdm_tls_conn *c);

/* The peer's verified name (first DNS subjectAltName, else CN; "" for an anonymous
 * client), and its address as "a.b.c.d:port" or "[v6]:port". Valid until rdm_tls_close. */
const char *rdm_tls_peer_name(const struct rdm_tls_conn *c);

/* The organizational unit (OU) in the subject of a server's verified peer, "" when none:
 * the orchestrator binds a pod's certificate to its stage there ("pod dpi"). Set before
 * the admit callback runs (rdm_tls_accept_step), so it may look at it. */
const char *rdm_tls_peer_unit(const struct rdm_tls_conn *c);
const char *rdm_tls_peer_addr(const struct rdm_tls_conn *c);

/* Sends one message of len bytes (buf may be NULL when len is 0) within timeout_ms.
 * Returns 0 once it is all handed to the kernel, or:
 *   -EMSGSIZE   len > RDM_TLS_MAX_MSG (nothing sent, the connection is fine);
 *   -ETIMEDOUT  the peer did not read in time;
 *   -EPIPE      the peer closed the connection or reset it;
 *   -EPROTO     a TLS failure.
 * Any failure but -EMSGSIZE breaks the stream: later sends return -EPIPE. */
int rdm_tls_send(struct rdm_tls_conn *c, const void *buf, uint32_t len, int timeout_ms);

/* Receives one whole message within timeout_ms: *buf is malloc'ed (the caller frees it;
 * never NULL, even for 0 bytes) and *len its length. A message that arrives in part
 * is kept for the next call, so a timeout loses nothing. Returns 0, or:
 *   -ETIMEDOUT  no whole message in time (with 0: none is ready now);
 *   -EPIPE      the peer closed the connection (with or without close_notify) or reset it;
 *   -EPROTO     the peer announced more than RDM_TLS_MAX_MSG bytes, or a TLS failure;
 *   -ENOMEM.
 * After -EPIPE or -EPROTO every later call returns the same. */
int rdm_tls_recv(struct rdm_tls_conn *c, uint8_t **buf, uint32_t *len, int timeout_ms);

/* The socket, to wait on with poll/epoll (level-triggered) for POLLIN. TLS may hold
 * decrypted bytes the socket no longer shows: call rdm_tls_pending first, and when it is
 * nonzero call rdm_tls_recv instead of waiting. */
int rdm_tls_fd(const struct rdm_tls_conn *c);
int rdm_tls_pending(struct rdm_tls_conn *c);

/* Copies the reason for the connection's most recent failure (or "" when none) into buf. */
void rdm_tls_error(struct rdm_tls_conn *c, char *buf, size_t len);

/* Wakes every thread blocked on c (they return -EPIPE) and stops all further traffic;
 * safe from any thread, while other calls on c run. */
void rdm_tls_shutdown(struct rdm_tls_conn *c);

/* Sends close_notify when the connection is healthy (without waiting), closes the
 * socket and frees c. Accepts NULL. */
void rdm_tls_close(struct rdm_tls_conn *c);

#endif
