/* The TLS transport's private declarations, for lib/tls_*.c; not for the control
 * channel's users, who have tls.h.
 *
 * The context part (struct rdm_tls_ctx, struct rdm_tls_verify, lib/tls_ctx.c) stands
 * on its own: it knows nothing of connections or message framing, so a later TLS user
 * in the tree (a TCP hop of the data plane) can reuse contexts, certificate loading
 * and the verification record with SSL objects of its own. The rest is the control
 * channel's connection. */
#ifndef RDM_TLS_INT_H
#define RDM_TLS_INT_H

#include <netdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/certs.h"
#include "lib/tls.h"

#define RDM_TLS__NAME_LEN  (RDM_CERTS_NAME_MAX + 1)
#define RDM_TLS__ERR_LEN   320
#define RDM_TLS__LINGER_MS 250 /* how long a refusing side waits for the peer to read its alert */
#define RDM_TLS__SMALL_MSG 16384

/* ---- contexts and certificates (lib/tls_ctx.c) ---- */

struct rdm_tls_ctx {
	pthread_mutex_t mu; /* ssl, swapped by rdm_tls_ctx_reload */
	SSL_CTX *ssl;
	int server;
	int anonymous; /* server: clients without a certificate get to the admit callback;
			* client: this end has none (rdm_tls_ctx_new without cert and key) */
	char name[RDM_TLS__NAME_LEN];
};

/* The first certificate verification failure on one SSL, for the refusal's reason.
 * Point the SSL's app data at one (SSL_set_app_data) before the handshake; the
 * context's verify callback fills it in. */
struct rdm_tls_verify {
	int err; /* X509_V_ERR_*, or 0 while none was seen */
	int depth;
	char name[RDM_TLS__NAME_LEN]; /* the certificate it was about */
};

/* SSL_new on the context's current SSL_CTX (a reload may swap it meanwhile). */
SSL *rdm_tls__ssl_new(struct rdm_tls_ctx *ctx);

/* The holder's name from x: its first DNS subjectAltName, else its CN; "" when neither
 * is a usable name (rdm_certs_name_ok). */
void rdm_tls__cert_name(X509 *x, char *out, size_t cap);

/* ---- handshakes and verdicts, shared by both kinds of connection (lib/tls_conn.c) ---- */

/* What a failed handshake call (SSL_get_error gave e, errno was sys_errno) means, as an
 * errno and a reason in err: the verification failure in v first (expect: the name a
 * client asked for, or NULL), then the peer's alert, a close, or OpenSSL's reason. who
 * names the peer ("server 10.0.0.1:7000"). Clears OpenSSL's error queue. */
int rdm_tls__hs_error(const struct rdm_tls_verify *v, const char *expect, int e, int sys_errno,
		      char *err, size_t errlen, const char *who);

/* A client's reading of the server's verdict message v: 0 for RDM_TLS_VERDICT_OK,
 * -ECONNREFUSED with the server's (printable) reason, or -EPROTO for anything else. */
int rdm_tls__verdict_check(const uint8_t *v, uint32_t vlen, char *err, size_t errlen,
			   const char *who);

/* A server's decision on a verified peer called name ("" when its certificate names no
 * usable holder; with anonymous, when it sent none on a context that takes that): 0 to
 * admit, or -EACCES with the reason (for the verdict) in why. */
int rdm_tls__admit(const char *name, int anonymous, rdm_tls_admit_fn admit, void *arg, char *why,
		   size_t whylen);

/* The organizational unit (OU) of certificate x's subject into out ("" when none or
 * not printable). */
void rdm_tls__cert_unit(X509 *x, char *out, size_t cap);

/* The session of a finished handshake (lib/tls_hs.c), for lib/tls_stream.c; frees h. */
struct rdm_tls_hs;
SSL *rdm_tls__hs_take(struct rdm_tls_hs *h);

/* ---- the sockets under a connection (lib/tls_sock.c) ---- */

/* Milliseconds on the monotonic clock, and a deadline timeout_ms from now (UINT64_MAX
 * for ever: timeout_ms < 0). */
uint64_t rdm_tls__now_ms(void);
uint64_t rdm_tls__deadline_in(int timeout_ms);

/* Waits until fd shows events or the deadline passes: 0, -ETIMEDOUT or -errno. */
int rdm_tls__wait_fd(int fd, short events, uint64_t deadline);

/* A BIO over fd that sends with MSG_NOSIGNAL and never closes fd, or NULL. */
BIO *rdm_tls__sock_bio(int fd);

/* Resolves host_port; passive for a listening socket. 0 or -errno with err set. */
int rdm_tls__resolve(const char *host_port, int passive, struct addrinfo **res, char *err,
		     size_t errlen);

/* Closes fd after a refusal without losing what was just sent to the peer. */
void rdm_tls__linger_close(int fd);

/* ---- a control channel connection ---- */

struct rdm_tls_conn {
	SSL *ssl;
	int fd;
	pthread_mutex_t lock;	      /* every SSL call and the fields below it */
	pthread_mutex_t tx_lock;      /* one sender at a time, whole messages */
	pthread_mutex_t rx_lock;      /* one receiver at a time, and the rx state */
	int tx_dead;		      /* the first failure that broke sending, or 0 */
	int rx_dead;		      /* the same for receiving */
	int fatal;		      /* OpenSSL failed: no close_notify */
	struct rdm_tls_verify verify; /* the SSL's app data */
	char err[RDM_TLS__ERR_LEN];
	int alert;	  /* the latest I/O failure was an alert from the peer */
	char reason[256]; /* OpenSSL's reason for the latest I/O failure */
	char peer_name[RDM_TLS__NAME_LEN];
	char peer_unit[RDM_TLS__NAME_LEN];
	char peer_addr[64];
	const char *expect; /* client: the name asked for, during the handshake only */
	/* A message being received (kept across timeouts). */
	uint8_t hdr[4];
	uint32_t hdr_got;
	uint8_t *rx_buf;
	uint32_t rx_len, rx_got;
};

/* Sends one message by the deadline; the body of rdm_tls_send (lib/tls_io.c). */
int rdm_tls__send_msg(struct rdm_tls_conn *c, const void *buf, uint32_t len, uint64_t deadline);

/* Receives one message by the deadline; the body of rdm_tls_recv. max bounds what the
 * peer may announce. */
int rdm_tls__recv_msg(struct rdm_tls_conn *c, uint8_t **buf, uint32_t *len, uint64_t deadline,
		      uint32_t max);

#endif
