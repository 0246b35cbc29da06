/* The generator's wire format: a bounded byte writer for message heads, and whole IPv4
 * TCP and UDP packets with their headers and checksums. */
#include "node/gen_int.h"
#include "lib/byteorder.h"
#include "lib/csum.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>

uint8_t *rdm_gen__w_take(struct wbuf *w, uint32_t n)
{
	uint8_t *p;

	if (w->ovf || n > w->cap - w->n) {
		w->ovf = 1;
		return NULL;
	}
	p = w->p + w->n;
	w->n += n;
	return p;
}

void rdm_gen__w8(struct wbuf *w, uint32_t v)
{
	uint8_t *p = rdm_gen__w_take(w, 1);

	if (p)
		p[0] = (uint8_t)v;
}

void rdm_gen__w16(struct wbuf *w, uint32_t v)
{
	uint8_t *p = rdm_gen__w_take(w, 2);

	if (p)
		rdm_put_be16(p, v);
}

void rdm_gen__w32(struct wbuf *w, uint32_t v)
{
	uint8_t *p = rdm_gen__w_take(w, 4);

	if (p)
		rdm_put_be32(p, v);
}

void rdm_gen__wmem(struct wbuf *w, const void *src, uint32_t n)
{
	uint8_t *p = rdm_gen__w_take(w, n);

	if (p)
		memcpy(p, src, n);
}

void rdm_gen__wrnd(struct wbuf *w, uint64_t key, uint32_t n)
{
	uint8_t *p = rdm_gen__w_take(w, n);

	if (p)
		rdm_gen__rnd_fill(key, 0, p, n);
}

/* Opens a length field of size bytes; rdm_gen__w_close fills it with the bytes written since. */
uint32_t rdm_gen__w_open(struct wbuf *w, uint32_t size)
{
	uint32_t at = w->n;

	if (rdm_gen__w_take(w, size))
		memset(w->p + at, 0, size);
	return at;
}

void rdm_gen__w_close(struct wbuf *w, uint32_t at, uint32_t size)
{
	uint32_t v = w->n - at - size;

	if (w->ovf)
		return;
	for (uint32_t i = 0; i < size; i++)
		w->p[at + i] = (uint8_t)(v >> (8 * (size - 1 - i)));
}

void rdm_gen__wfmt(struct wbuf *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->ovf)
		return;
	va_start(ap, fmt);
	n = vsnprintf((char *)w->p + w->n, w->cap - w->n, fmt, ap);
	va_end(ap);
	if (n < 0 || (uint32_t)n >= w->cap - w->n)
		w->ovf = 1;
	else
		w->n += (uint32_t)n;
}
/* Writes the IPv4 header for a packet of side d carrying l4len bytes of proto. */
static void ip_hdr(struct flow *f, uint8_t *b, int d, uint8_t proto, uint32_t l4len)
{
	b[0] = 0x45;
	b[1] = 0;
	rdm_put_be16(b + 2, 20 + l4len);
	rdm_put_be16(b + 4, f->ipid[d]++);
	rdm_put_be16(b + 6, 0x4000); /* DF, as Linux sets for TCP and for UDP with PMTU discovery */
	b[8] = f->ttl[d];
	b[9] = proto;
	b[10] = b[11] = 0;
	rdm_put_be32(b + 12, f->ip[d]);
	rdm_put_be32(b + 16, f->ip[!d]);
	rdm_put_be16(b + 10, rdm_csum_fold(rdm_csum_add(0, b, 20)));
}

/* Fills the transport checksum at l4 + at (the field zeroed before). */
static void l4_csum(const uint8_t *ip, uint8_t *l4, uint32_t l4len, unsigned at, int udp)
{
	uint8_t ph[12];
	uint16_t c;

	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = ip[9];
	rdm_put_be16(ph + 10, l4len);
	c = rdm_csum_fold(rdm_csum_add(rdm_csum_add(0, ph, 12), l4, l4len));
	if (udp && c == 0)
		c = 0xffff; /* 0 means "no checksum" in UDP */
	rdm_put_be16(l4 + at, c);
}
/* One TCP segment from side d, with n payload bytes of message p at f->off (filled by
 * gen_flow.c's rdm_gen__msg_fill). */
uint32_t rdm_gen__tcp_pkt(struct flow *f, uint8_t *b, int d, uint8_t flags, const struct phase *p,
			  uint32_t n)
{
	uint8_t *t = b + 20;
	uint32_t optlen = (flags & TCP_SYN) ? 20 : 12, tl = 20 + optlen + n;
	uint8_t *o = t + 20;

	f->clock_ms += rdm_gen__rnd_below(&f->rng, 3);
	f->tsval[d] = f->tsbase[d] + f->clock_ms;
	ip_hdr(f, b, d, IPPROTO_TCP, tl);
	rdm_put_be16(t, f->port[d]);
	rdm_put_be16(t + 2, f->port[!d]);
	rdm_put_be32(t + 4, f->seq[d]);
	rdm_put_be32(t + 8, (flags & TCP_ACK) ? f->seq[!d] : 0);
	t[12] = (uint8_t)((20 + optlen) / 4 << 4);
	t[13] = flags;
	rdm_put_be16(t + 14, (flags & TCP_SYN) ? (d ? 65160 : 64240) : f->win[d]);
	t[16] = t[17] = 0;
	rdm_put_be16(t + 18, 0);
	if (flags & TCP_SYN) {
		/* Linux's SYN options: MSS, SACK permitted, timestamps, NOP, window scale 7 */
		o[0] = 2;
		o[1] = 4;
		rdm_put_be16(o + 2, 1460);
		o[4] = 4;
		o[5] = 2;
		o += 6;
	} else {
		o[0] = o[1] = 1;
		o += 2;
	}
	o[0] = 8;
	o[1] = 10;
	rdm_put_be32(o + 2, f->tsval[d]);
	rdm_put_be32(o + 6, (flags & TCP_ACK) ? f->tsval[!d] : 0);
	if (flags & TCP_SYN) {
		o[10] = 1;
		o[11] = 3;
		o[12] = 3;
		o[13] = 7;
	}
	if (n)
		rdm_gen__msg_fill(f, p, f->off, t + 20 + optlen, n);
	l4_csum(b, t, tl, 16, 0);
	f->seq[d] += n + ((flags & TCP_SYN) ? 1 : 0) + ((flags & TCP_FIN) ? 1 : 0);
	return 20 + tl;
}

/* One UDP datagram from side d whose ul - 8 payload bytes are already in place at
 * b + 28. Returns the packet's length. */
uint32_t rdm_gen__udp_pkt(struct flow *f, uint8_t *b, int d, uint32_t ul)
{
	ip_hdr(f, b, d, IPPROTO_UDP, ul);
	rdm_put_be16(b + 20, f->port[d]);
	rdm_put_be16(b + 22, f->port[!d]);
	rdm_put_be16(b + 24, ul);
	rdm_put_be16(b + 26, 0);
	l4_csum(b, b + 20, ul, 6, 1);
	return 20 + ul;
}
