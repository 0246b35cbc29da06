/* The generator's TCP flows: a flow's plan as a list of phases (handshake, messages cut
 * into MSS-sized segments and acknowledged as a delayed-ACK receiver does, teardown), and
 * the flow's next packet by that plan. */
#include "node/gen_int.h"

#include <errno.h>
#include <string.h>

static struct phase *ph_add(struct flow *f, uint8_t kind, uint8_t dir)
{
	struct phase *p = &f->phs[f->n_ph++];

	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->dir = dir;
	return p;
}

static void ph_ctl(struct flow *f, uint8_t dir, uint8_t flags)
{
	ph_add(f, PH_CTL, dir)->flags = flags;
}

static void ph_msg(struct flow *f, uint8_t dir, uint8_t src, uint8_t ack, uint64_t len,
		   uint64_t segs)
{
	struct phase *p = ph_add(f, PH_MSG, dir);

	p->src = src;
	p->ack = ack;
	p->len = len;
	p->segs = segs;
}

/* Splits m >= 2 packets into a message of n segments acknowledged ACK_CEIL (n + ceil(n/2)
 * packets) and 0 or 1 bare ACKs before it. */
static uint64_t split_segs(uint64_t m, int *extra)
{
	uint64_t n = 2 * m / 3;

	*extra = (int)(m - (n + (n + 1) / 2));
	return n;
}

/* A message length that takes exactly n segments, at least min bytes. */
static uint64_t len_for_segs(struct flow *f, uint64_t n, uint32_t min)
{
	uint32_t lo = n == 1 ? min : 1;

	return (n - 1) * GEN_MSS + rdm_gen__rnd_range(&f->rng, lo, GEN_MSS);
}

static uint64_t segs_of(uint64_t len)
{
	return (len + GEN_MSS - 1) / GEN_MSS;
}

static void tcp_open(struct flow *f)
{
	ph_ctl(f, 0, TCP_SYN);
	ph_ctl(f, 1, TCP_SYN | TCP_ACK);
	ph_ctl(f, 0, TCP_ACK);
}

static void tcp_close(struct flow *f)
{
	ph_ctl(f, 0, TCP_FIN | TCP_ACK);
	ph_ctl(f, 1, TCP_FIN | TCP_ACK);
	ph_ctl(f, 0, TCP_ACK);
}

static int digits(uint64_t v)
{
	int n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

/* Plans an HTTP flow of exactly pkts packets: handshake, request, a response of as many
 * segments as the rest allows, teardown. */
int rdm_gen__plan_http(struct flow *f, uint64_t pkts)
{
	struct wbuf w = {f->pre, 0, sizeof(f->pre), 0};
	uint64_t n, total, base;
	int extra;

	rdm_gen__http_pick(f);
	n = split_segs(pkts - 7, &extra);

	/* The header holds the body's length: find a body length whose header makes the
	 * response exactly total bytes, nudging total where a digit boundary allows none. */
	rdm_gen__http_resp_hdr(f, &w, 0);
	if (w.ovf)
		return -EOVERFLOW;
	base = w.n - 1;
	total = len_for_segs(f, n, (uint32_t)base + 64);
	for (;;) {
		int d;

		for (d = 1; d <= 20; d++) {
			if (total >= base + (uint64_t)d && digits(total - base - d) == d)
				break;
		}
		if (d <= 20) {
			f->body = total - base - d;
			break;
		}
		/* a digit boundary: step away from it, staying within n segments */
		if ((total - 1) % GEN_MSS)
			total--;
		else
			total++;
	}

	tcp_open(f);
	ph_msg(f, 0, M_HTTP_REQ, ACK_NONE, 0, 1);
	if (extra)
		ph_ctl(f, 1, TCP_ACK);
	ph_msg(f, 1, M_HTTP_RESP, ACK_CEIL, total, n);
	tcp_close(f);
	return 0;
}

/* Plans a TLS flow of exactly pkts packets: handshake, ClientHello, the server's flight,
 * the client's Finished and request, a response of as many segments as the rest allows,
 * teardown. */
int rdm_gen__plan_tls(struct flow *f, uint64_t pkts)
{
	static const uint32_t sh_len = 127 + 6 + 5; /* ServerHello, CCS, record header */
	uint64_t k = 1 + rdm_gen__rnd_below(&f->rng, 4), fixed, n, total, rest;
	int extra;

	if (k == 4)
		k = 1; /* half of servers fit their flight in one segment (ECDSA, short chain) */
	fixed = 8 + k + k / 2;
	if (pkts < fixed + 2) {
		k = 1;
		fixed = 9;
	}
	/* Encrypted handshake: at least a small certificate chain's worth. */
	f->tls_e = (uint32_t)(len_for_segs(f, k, sh_len + 800) - sh_len);
	f->tls_rq = rdm_gen__rnd_range(&f->rng, 120, 700);
	n = split_segs(pkts - fixed, &extra);

	/* The last record must hold at least a content type and a tag. */
	total = len_for_segs(f, n, 200);
	rest = total % TLS_REC_MAX;
	if (rest && rest < TLS_REC_MIN) {
		if (total - rest > (n - 1) * GEN_MSS)
			total -= rest;
		else
			total += TLS_REC_MIN - rest;
	}

	tcp_open(f);
	ph_msg(f, 0, M_TLS_CH, ACK_NONE, 0, 1);
	ph_msg(f, 1, M_TLS_SFLIGHT, ACK_FLOOR, sh_len + f->tls_e, k);
	ph_msg(f, 0, M_TLS_CFIN, ACK_NONE, 0, 1);
	if (extra)
		ph_ctl(f, 1, TCP_ACK);
	ph_msg(f, 1, M_TLS_RESP, ACK_CEIL, total, n);
	tcp_close(f);
	return segs_of(sh_len + f->tls_e) == k ? 0 : -EOVERFLOW;
}

/* Builds the head of the message of phase p into f->pre. Single-segment messages are
 * all head, and get their length here. */
static int msg_build(struct flow *f, struct phase *p)
{
	struct wbuf w = {f->pre, 0, sizeof(f->pre), 0};

	switch (p->src) {
	case M_HTTP_REQ:
		rdm_gen__http_req(f, &w);
		p->len = w.n;
		break;
	case M_HTTP_RESP:
		rdm_gen__http_resp_hdr(f, &w, f->body);
		if (w.n + f->body != p->len)
			return -EPROTO; /* the plan's header length was wrong */
		break;
	case M_TLS_CH:
		rdm_gen__tls_ch(f, &w);
		p->len = w.n;
		break;
	case M_TLS_SFLIGHT:
		rdm_gen__tls_sflight_head(f, &w);
		if (w.n + f->tls_e != p->len)
			return -EPROTO;
		break;
	case M_TLS_CFIN:
		rdm_gen__tls_cfin(f, &w);
		p->len = w.n;
		break;
	case M_TLS_RESP:
		break;
	}
	if (w.ovf)
		return -EOVERFLOW;
	f->pre_len = w.n;
	return 0;
}

/* Bytes [off, off + n) of the current message. */
void rdm_gen__msg_fill(const struct flow *f, const struct phase *p, uint64_t off, uint8_t *dst,
		       size_t n)
{
	if (off < f->pre_len) {
		size_t k = f->pre_len - off < n ? (size_t)(f->pre_len - off) : n;

		memcpy(dst, f->pre + off, k);
		dst += k;
		off += k;
		n -= k;
	}
	if (!n)
		return;
	off -= f->pre_len;
	switch (p->src) {
	case M_HTTP_RESP:
		rdm_gen__http_body_fill(f, f->body, off, dst, n);
		break;
	case M_TLS_SFLIGHT:
		rdm_gen__rnd_fill(rdm_gen__stream_key(f, RS_SFLIGHT), off, dst, n);
		break;
	case M_TLS_RESP:
		rdm_gen__tls_records_fill(f, p->len, off, dst, n);
		break;
	default: /* single-segment messages are all head */
		memset(dst, 0, n);
	}
}
static uint64_t acks_due(const struct phase *p, uint64_t sent)
{
	switch (p->ack) {
	case ACK_FLOOR:
		return sent / 2;
	case ACK_CEIL:
		return sent == p->segs ? (sent + 1) / 2 : sent / 2;
	default:
		return 0;
	}
}

/* Writes the flow's next packet by its plan into b: a control segment, a segment of the
 * current message, or the receiver's ACK of it. */
int rdm_gen__tcp_next(struct flow *f, uint8_t *b)
{
	struct phase *p = &f->phs[f->ph];
	uint32_t len;
	int d = p->dir;

	if (p->kind == PH_CTL) {
		len = rdm_gen__tcp_pkt(f, b, d, p->flags, NULL, 0);
		f->ph++;
		return (int)len;
	}
	if (!f->built) {
		int rc = msg_build(f, p);

		if (rc)
			return rc;
		f->built = 1;
	}
	if (f->acked < acks_due(p, f->sent)) {
		len = rdm_gen__tcp_pkt(f, b, !d, TCP_ACK, NULL, 0);
		f->acked++;
	} else {
		uint64_t left = p->len - f->off;
		uint32_t n = left < GEN_MSS ? (uint32_t)left : GEN_MSS;

		len = rdm_gen__tcp_pkt(f, b, d, TCP_ACK | (n == left ? TCP_PSH : 0), p, n);
		f->off += n;
		f->sent++;
	}
	if (f->sent == p->segs && f->acked == acks_due(p, p->segs)) {
		f->ph++;
		f->off = f->sent = f->acked = 0;
		f->built = 0;
	}
	return (int)len;
}
