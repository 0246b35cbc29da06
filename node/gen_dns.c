/* The generator's DNS flows: the sites' names and addresses, and the A and AAAA queries
 * and answers that resolve them, one UDP packet at a time. */
#include "node/gen_int.h"

#include <errno.h>

/* The server address of www.exampleN.test: 10.2.1.1 onwards, 250 to a /24. */
uint32_t rdm_gen__site_ip(uint32_t site)
{
	return 10u << 24 | 2u << 16 | (1 + (site - 1) / 250) << 8 | (1 + (site - 1) % 250);
}

/* Writes the flow's site name, www.exampleN.test. */
void rdm_gen__w_host(struct wbuf *w, const struct flow *f)
{
	rdm_gen__wfmt(w, "www.example%u.test", f->site);
}

/* The same name as DNS labels. */
static void dns_name(struct wbuf *w, const struct flow *f)
{
	uint32_t l;

	rdm_gen__wmem(w, "\x03www", 4);
	l = rdm_gen__w_open(w, 1);
	rdm_gen__wfmt(w, "example%u", f->site);
	rdm_gen__w_close(w, l, 1);
	rdm_gen__wmem(w, "\x04test", 6); /* with the root label */
}

/* Packet i of a DNS flow: query/answer pairs for A then AAAA, alternating; an odd count
 * starts with a query retransmitted after a timeout. */
int rdm_gen__dns_next(struct flow *f, uint8_t *b)
{
	uint64_t i = f->dns_i++, t;
	int answer, d;
	struct wbuf w = {b + 28, 0, GEN_MAX_PKT - 28, 0};
	uint16_t qtype;

	if (f->dns_n & 1) {
		if (i < 3) {
			t = 0;
			answer = i == 2;
		} else {
			t = 1 + (i - 3) / 2;
			answer = (i - 3) & 1;
		}
	} else {
		t = i / 2;
		answer = i & 1;
	}
	d = answer;
	qtype = (t & 1) ? 28 : 1; /* AAAA : A */
	rdm_gen__w16(&w, (uint16_t)rdm_gen__mix64(rdm_gen__stream_key(f, RS_DNS_ID) + t));
	rdm_gen__w16(&w, answer ? 0x8180 : 0x0100); /* RD; answer: QR RD RA */
	rdm_gen__w16(&w, 1);
	rdm_gen__w16(&w, answer ? 1 : 0);
	rdm_gen__w16(&w, 0);
	rdm_gen__w16(&w, 1); /* EDNS(0) OPT */
	dns_name(&w, f);
	rdm_gen__w16(&w, qtype);
	rdm_gen__w16(&w, 1); /* IN */
	if (answer) {
		rdm_gen__w16(&w, 0xc00c); /* the question's name */
		rdm_gen__w16(&w, qtype);
		rdm_gen__w16(&w, 1);
		rdm_gen__w32(&w, f->dns_ttl);
		if (qtype == 1) {
			rdm_gen__w16(&w, 4);
			rdm_gen__w32(
			    &w, rdm_gen__site_ip(f->site)); /* where the HTTP and TLS flows go */
		} else {
			rdm_gen__w16(&w, 16);
			rdm_gen__w32(&w, 0xfd000000);
			rdm_gen__w32(&w, 0x00020000);
			rdm_gen__w32(&w, 0);
			rdm_gen__w32(&w, f->site);
		}
	}
	/* OPT: root name, type 41, UDP payload size 1232, no extended flags */
	rdm_gen__wmem(&w, "\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00", 11);
	if (w.ovf)
		return -EOVERFLOW;

	return (int)rdm_gen__udp_pkt(f, b, d, 8 + w.n);
}
