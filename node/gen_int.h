/* The generator's private header: the flow and phase records, and the functions its
 * files (gen_rng, gen_wire, gen_http, gen_tls, gen_dns, gen_flow, gen) share. */
#ifndef RDM_GEN_INT_H
#define RDM_GEN_INT_H

#include <stddef.h>
#include <stdint.h>

#define GEN_MSS	       1448 /* 1500 MTU less IPv4, TCP and the timestamp option */
#define GEN_MAX_PKT    1500
#define GEN_MAX_PHASES 12

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_PSH 0x08
#define TCP_ACK 0x10

/* TLS 1.3 records: 5-byte header, at most 2^14 + 256 bytes of ciphertext; the smallest
 * holds a content-type byte and a 16-byte AEAD tag. */
#define TLS_REC_MAX (5 + 16384 + 256)
#define TLS_REC_MIN (5 + 1 + 16)

enum flow_kind { FK_HTTP, FK_TLS, FK_DNS };
enum phase_kind { PH_CTL, PH_MSG };
enum msg_src { M_HTTP_REQ, M_HTTP_RESP, M_TLS_CH, M_TLS_SFLIGHT, M_TLS_CFIN, M_TLS_RESP };
/* How the receiver acknowledges a message: not at all (its reply carries the ACK),
 * after every second segment, or after every second segment and the last one. */
enum ack_mode { ACK_NONE, ACK_FLOOR, ACK_CEIL };

/* Streams of the flow key that random bytes are drawn from. */
enum {
	RS_CH_RANDOM = 1,
	RS_SESSION_ID,
	RS_CLIENT_KEY,
	RS_SH_RANDOM,
	RS_SERVER_KEY,
	RS_SFLIGHT,
	RS_CFIN,
	RS_RESP,
	RS_BODY,
	RS_DNS_ID,
};

struct phase {
	uint8_t kind;  /* enum phase_kind */
	uint8_t dir;   /* 0 client to server, 1 server to client */
	uint8_t flags; /* PH_CTL: TCP flags */
	uint8_t src;   /* PH_MSG: enum msg_src */
	uint8_t ack;   /* PH_MSG: enum ack_mode */
	uint64_t len;  /* PH_MSG: bytes; set when the message is built for single segments */
	uint64_t segs; /* PH_MSG */
};

struct flow {
	uint8_t kind;
	uint8_t n_ph, ph;
	struct phase phs[GEN_MAX_PHASES];
	/* progress in the current message */
	uint64_t off, sent, acked;
	int built;

	uint32_t ip[2]; /* [0] client, [1] server, host order */
	uint16_t port[2];
	uint16_t ipid[2];
	uint8_t ttl[2];
	uint32_t seq[2]; /* next sequence number each side sends */
	uint32_t tsbase[2], tsval[2];
	uint16_t win[2];
	uint32_t clock_ms;

	uint64_t rng; /* the flow's own PRNG */
	uint64_t key; /* seeds payload bytes, by stream and offset */
	uint32_t index;
	uint32_t site; /* N of www.exampleN.test */
	uint32_t pnum; /* a number in the HTTP path */
	uint8_t ua, path;
	uint64_t body;	 /* HTTP body bytes */
	uint32_t tls_e;	 /* ciphertext bytes of the server's encrypted handshake */
	uint32_t tls_rq; /* ciphertext bytes of the client's first request */

	uint64_t dns_n, dns_i; /* DNS: packets planned, packets sent */
	uint32_t dns_ttl;

	uint32_t pre_len;     /* the built head of the current message */
	uint8_t pre[GEN_MSS]; /* large enough for any single-segment message */
};

/* A bounded writer for message heads; ovf marks a head that did not fit (a bug: every
 * head is sized to fit pre). */
struct wbuf {
	uint8_t *p;
	uint32_t n, cap;
	int ovf;
};

/* gen_rng.c: the PRNG and the keyed byte streams */
uint64_t rdm_gen__mix64(uint64_t z);
uint64_t rdm_gen__rnd(uint64_t *s);
uint32_t rdm_gen__rnd_below(uint64_t *s, uint32_t n);
uint32_t rdm_gen__rnd_range(uint64_t *s, uint32_t lo, uint32_t hi);
double rdm_gen__rnd_unit(uint64_t *s);
uint64_t rdm_gen__stream_key(const struct flow *f, unsigned stream);
void rdm_gen__rnd_fill(uint64_t key, uint64_t pos, uint8_t *dst, size_t n);

/* gen_wire.c: the byte writer, and whole IPv4 TCP and UDP packets */
uint8_t *rdm_gen__w_take(struct wbuf *w, uint32_t n);
void rdm_gen__w8(struct wbuf *w, uint32_t v);
void rdm_gen__w16(struct wbuf *w, uint32_t v);
void rdm_gen__w32(struct wbuf *w, uint32_t v);
void rdm_gen__wmem(struct wbuf *w, const void *src, uint32_t n);
void rdm_gen__wrnd(struct wbuf *w, uint64_t key, uint32_t n);
uint32_t rdm_gen__w_open(struct wbuf *w, uint32_t size);
void rdm_gen__w_close(struct wbuf *w, uint32_t at, uint32_t size);
void rdm_gen__wfmt(struct wbuf *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint32_t rdm_gen__tcp_pkt(struct flow *f, uint8_t *b, int d, uint8_t flags, const struct phase *p,
			  uint32_t n);
uint32_t rdm_gen__udp_pkt(struct flow *f, uint8_t *b, int d, uint32_t ul);

/* gen_http.c: HTTP requests, response headers and bodies */
void rdm_gen__http_pick(struct flow *f);
void rdm_gen__http_req(struct flow *f, struct wbuf *w);
void rdm_gen__http_resp_hdr(const struct flow *f, struct wbuf *w, uint64_t body);
void rdm_gen__http_body_fill(const struct flow *f, uint64_t len, uint64_t off, uint8_t *dst,
			     size_t n);

/* gen_tls.c: TLS 1.3 handshake flights and application_data records */
void rdm_gen__tls_ch(struct flow *f, struct wbuf *w);
void rdm_gen__tls_sflight_head(struct flow *f, struct wbuf *w);
void rdm_gen__tls_cfin(struct flow *f, struct wbuf *w);
void rdm_gen__tls_records_fill(const struct flow *f, uint64_t len, uint64_t off, uint8_t *dst,
			       size_t n);

/* gen_dns.c: the sites' names and addresses, and DNS query and answer packets */
uint32_t rdm_gen__site_ip(uint32_t site);
void rdm_gen__w_host(struct wbuf *w, const struct flow *f);
int rdm_gen__dns_next(struct flow *f, uint8_t *b);

/* gen_flow.c: a TCP flow's plan of phases, and its next packet */
int rdm_gen__plan_http(struct flow *f, uint64_t pkts);
int rdm_gen__plan_tls(struct flow *f, uint64_t pkts);
void rdm_gen__msg_fill(const struct flow *f, const struct phase *p, uint64_t off, uint8_t *dst,
		       size_t n);
int rdm_gen__tcp_next(struct flow *f, uint8_t *b);

#endif
