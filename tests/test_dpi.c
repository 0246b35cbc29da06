/* The dpi stage (services/dpi.c) against hand-built packets: a DNS query and response,
 * an HTTP GET over a TCP handshake, TLS ClientHellos with an SNI, traffic nDPI cannot
 * name, and malformed packets. Each test drives the stage the way a node does: frames
 * whose FLOW_KEY the ingress filled in, a batch at a time. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "services/stage.h"
#include "lib/byteorder.h"
#include "lib/csum.h"

#define MAXPKT 2048

static const struct rdm_stage_ops *ops;

/* ---- the stage ---- */

/* A conf from a YAML stage entry (NULL: the stage named alone). */
static void *conf_from(const char *yaml, char *err, size_t errlen)
{
	struct rdm_ydoc *d;
	void *c;

	ops = rdm_stage_find("dpi");
	cr_assert_not_null(ops, "stage dpi is registered");
	if (!yaml)
		return ops->conf_new(NULL, NULL, err, errlen);
	d = rdm_ydoc_parse_string("t.yaml", yaml, err, errlen);
	cr_assert_not_null(d, "%s", err);
	c = ops->conf_new(d, rdm_yseq_item(rdm_ydoc_root(d), 0), err, errlen);
	rdm_ydoc_free(d);
	return c;
}

static void *rt_new(const void *conf, const struct rdm_flow_conf *flows)
{
	struct rdm_stage_env env = {.node_id = 1, .node_name = "t", .flows = flows};
	void *rt = ops->init(conf, &env);

	cr_assert_not_null(rt, "init: %s", strerror(errno));
	return rt;
}

struct counters {
	char name[32][32];
	uint64_t v[32];
	int n;
};

static void collect(void *arg, const char *name, uint64_t v)
{
	struct counters *c = arg;

	cr_assert_lt(c->n, 32);
	snprintf(c->name[c->n], sizeof(c->name[0]), "%s", name);
	c->v[c->n++] = v;
}

static uint64_t counter(void *rt, const char *name)
{
	struct counters c = {.n = 0};

	ops->report(rt, collect, &c);
	for (int i = 0; i < c.n; i++)
		if (!strcmp(c.name[i], name))
			return c.v[i];
	cr_assert_fail("no counter %s", name);
	return 0;
}

/* ---- packets ---- */

struct pkt {
	uint8_t b[MAXPKT];
	uint32_t len;
};

/* An IPv4 packet from src to dst (host order) carrying l4 (l4len bytes) of proto. */
static void ip4(struct pkt *p, uint32_t src, uint32_t dst, uint8_t proto, const uint8_t *l4,
		uint32_t l4len)
{
	uint8_t *h = p->b;

	cr_assert_leq(20 + l4len, MAXPKT);
	memset(h, 0, 20);
	h[0] = 0x45;
	rdm_put_be16(h + 2, (uint16_t)(20 + l4len));
	rdm_put_be16(h + 4, 0x1234);
	h[6] = 0x40; /* DF */
	h[8] = 64;
	h[9] = proto;
	rdm_put_be32(h + 12, src);
	rdm_put_be32(h + 16, dst);
	rdm_put_be16(h + 10, rdm_csum_fold(rdm_csum_add(0, h, 20)));
	memcpy(h + 20, l4, l4len);
	p->len = 20 + l4len;
}

static void udp4(struct pkt *p, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
		 const void *data, uint32_t n)
{
	uint8_t l4[MAXPKT];

	rdm_put_be16(l4, sport);
	rdm_put_be16(l4 + 2, dport);
	rdm_put_be16(l4 + 4, (uint16_t)(8 + n));
	rdm_put_be16(l4 + 6, 0);
	memcpy(l4 + 8, data, n);
	ip4(p, src, dst, IPPROTO_UDP, l4, 8 + n);
}

/* A TCP connection: both ends' next sequence numbers advance as segments are built. */
struct conn {
	uint32_t addr[2];
	uint16_t port[2];
	uint32_t seq[2];
};

#define SYN 0x02
#define ACK 0x10
#define PSH 0x08
#define FIN 0x01

/* A segment from side `from` (0 = client) with flags and n bytes of data. */
static void tcp(struct pkt *p, struct conn *c, int from, uint8_t flags, const void *data,
		uint32_t n)
{
	uint8_t l4[MAXPKT];
	int to = !from;

	memset(l4, 0, 20);
	rdm_put_be16(l4, c->port[from]);
	rdm_put_be16(l4 + 2, c->port[to]);
	rdm_put_be32(l4 + 4, c->seq[from]);
	rdm_put_be32(l4 + 8, (flags & ACK) ? c->seq[to] : 0);
	l4[12] = 5 << 4;
	l4[13] = flags;
	rdm_put_be16(l4 + 14, 64240);
	if (n)
		memcpy(l4 + 20, data, n);
	c->seq[from] += n + ((flags & (SYN | FIN)) ? 1 : 0);
	ip4(p, c->addr[from], c->addr[to], IPPROTO_TCP, l4, 20 + n);
}

/* A DNS query (qr 0) or its answer (qr 1, with address 10.66.0.2) for name. */
static uint32_t dns(uint8_t *b, uint16_t id, const char *name, int qr)
{
	uint32_t n = 12;
	const char *s = name;

	memset(b, 0, 12);
	rdm_put_be16(b, id);
	rdm_put_be16(b + 2, qr ? 0x8180 : 0x0100);
	rdm_put_be16(b + 4, 1);
	rdm_put_be16(b + 6, qr ? 1 : 0);
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);

		b[n++] = (uint8_t)l;
		memcpy(b + n, s, l);
		n += (uint32_t)l;
		s += l + (dot ? 1 : 0);
	}
	b[n++] = 0;
	rdm_put_be16(b + n, 1); /* A */
	rdm_put_be16(b + n + 2, 1);
	n += 4;
	if (qr) {
		static const uint8_t an[] = {0xc0, 0x0c, 0, 1, 0,  1,  0, 0,
					     0x0e, 0x10, 0, 4, 10, 66, 0, 2};

		memcpy(b + n, an, sizeof(an));
		n += sizeof(an);
	}
	return n;
}

/* A TLS 1.2 record holding a ClientHello that names sni (TLS 1.3 offered too). */
static uint32_t client_hello(uint8_t *b, const char *sni)
{
	uint8_t *h = b + 5, *x;
	uint32_t n = 4, sl = (uint32_t)strlen(sni), xl;

	rdm_put_be16(h + n, 0x0303);
	n += 2;
	for (int i = 0; i < 32; i++)
		h[n++] = (uint8_t)(i * 7 + 1);
	h[n++] = 0; /* no session id */
	rdm_put_be16(h + n, 6);
	rdm_put_be16(h + n + 2, 0x1301);
	rdm_put_be16(h + n + 4, 0xc02f);
	rdm_put_be16(h + n + 6, 0x009c);
	n += 8;
	h[n++] = 1; /* compression: null only */
	h[n++] = 0;
	x = h + n + 2;
	xl = 0;
	rdm_put_be16(x + xl, 0x0000); /* server_name */
	rdm_put_be16(x + xl + 2, (uint16_t)(sl + 5));
	rdm_put_be16(x + xl + 4, (uint16_t)(sl + 3));
	x[xl + 6] = 0; /* host_name */
	rdm_put_be16(x + xl + 7, (uint16_t)sl);
	memcpy(x + xl + 9, sni, sl);
	xl += 9 + sl;
	static const uint8_t more[] = {
	    0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d,	  /* supported_groups: x25519 */
	    0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,			  /* ec_point_formats */
	    0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03,	  /* signature_algorithms */
	    0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03, /* supported_versions */
	};
	memcpy(x + xl, more, sizeof(more));
	xl += sizeof(more);
	rdm_put_be16(h + n, (uint16_t)xl);
	n += 2 + xl;
	h[0] = 1; /* ClientHello */
	h[1] = 0;
	rdm_put_be16(h + 2, (uint16_t)(n - 4));
	b[0] = 0x16;
	rdm_put_be16(b + 1, 0x0301);
	rdm_put_be16(b + 3, (uint16_t)n);
	return 5 + n;
}

#define IP(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))
#define CLIENT	       IP(10, 66, 0, 1)
#define SERVER	       IP(10, 66, 0, 2)

/* ---- frames ---- */

/* A frame as the ingress builds it: the packet and its flow key. */
static void frame_of(struct rdm_frame *f, const struct pkt *p)
{
	rdm_frame_init(f, 7, 255, rdm_pkt_next_proto(p->b, p->len));
	f->pkt = p->b;
	f->pkt_len = p->len;
	if (rdm_pkt_flow_key(p->b, p->len, &f->key) == 0)
		f->present |= RDM_F_FLOW_KEY;
}

/* Runs one packet through the stage as a batch of one; every verdict must be PASS. */
static void run1(void *rt, const struct pkt *p, struct rdm_frame *f)
{
	struct rdm_frame *fp = f;
	int verdict = -99;

	frame_of(f, p);
	ops->process(rt, &fp, 1, &verdict);
	cr_assert_eq(verdict, RDM_STAGE_PASS, "the stage never drops");
}

static int str_is(struct rdm_str s, const char *want)
{
	return s.len == strlen(want) && !memcmp(s.p, want, s.len);
}

#define STR(s) (int)(s).len, (s).p

static void expect_app(const struct rdm_frame *f, const char *name, uint16_t master, uint16_t app)
{
	cr_assert(f->present & RDM_F_APP_ID, "APP_ID present");
	cr_assert(f->present & RDM_F_APP_NAME, "APP_NAME present");
	cr_assert(str_is(f->app_name, name), "app name '%.*s', want '%s'", STR(f->app_name), name);
	cr_assert_eq(f->master_proto, master, "master %u, want %u", f->master_proto, master);
	cr_assert_eq(f->app_proto, app, "app %u, want %u", f->app_proto, app);
	cr_assert(f->present & RDM_F_CATEGORY, "CATEGORY present");
	cr_assert_gt(f->category.len, 0, "category has a name");
}

static void expect_host(const struct rdm_frame *f, const char *host)
{
	cr_assert(f->present & RDM_F_HOST, "HOST present");
	cr_assert(str_is(f->host, host), "host '%.*s', want '%s'", STR(f->host), host);
}

static int done(const struct rdm_frame *f)
{
	return (f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_DPI_DONE);
}

/* nDPI 4.2 protocol ids (ndpi_protocol_ids.h). */
#define P_DNS	 5
#define P_HTTP	 7
#define P_TLS	 91
#define P_GOOGLE 126

/* ---- tests ---- */

Test(dpi, dns_query_and_answer_name_the_flow)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct pkt q, a;
	struct rdm_frame fq, fa;
	uint8_t d[512];

	udp4(&q, CLIENT, 41000, SERVER, 53, d, dns(d, 0x4242, "www.example.test", 0));
	udp4(&a, SERVER, 53, CLIENT, 41000, d, dns(d, 0x4242, "www.example.test", 1));
	run1(rt, &q, &fq);
	expect_app(&fq, "DNS", 0, P_DNS);
	expect_host(&fq, "www.example.test");
	run1(rt, &a, &fa);
	expect_app(&fa, "DNS", 0, P_DNS);
	expect_host(&fa, "www.example.test");
	cr_assert(done(&fa), "final once the answer is seen");
	cr_assert_eq(counter(rt, "flows"), 1, "query and answer are one flow");
	cr_assert_eq(counter(rt, "flows_detected"), 1);
	cr_assert_eq(counter(rt, "packets_inspected"), 2);
	ops->deinit(rt);
	ops->conf_free(c);
}

/* The HTTP exchange: handshake, GET with a Host, the server's answer. Returns the
 * frame of the answer in *last. */
static void http_flow(void *rt, struct conn *cn, struct rdm_frame *get, struct rdm_frame *last)
{
	static const char req[] = "GET /index.html HTTP/1.1\r\nHost: www.example.test\r\n"
				  "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
	static const char rsp[] = "HTTP/1.1 200 OK\r\nServer: test\r\nContent-Type: text/html\r\n"
				  "Content-Length: 5\r\n\r\nhello";
	struct pkt p;
	struct rdm_frame f;

	tcp(&p, cn, 0, SYN, NULL, 0);
	run1(rt, &p, &f);
	tcp(&p, cn, 1, SYN | ACK, NULL, 0);
	run1(rt, &p, &f);
	tcp(&p, cn, 0, ACK, NULL, 0);
	run1(rt, &p, &f);
	cr_assert_not(f.present & (RDM_F_APP_ID | RDM_F_HOST), "nothing known before data");
	tcp(&p, cn, 0, PSH | ACK, req, sizeof(req) - 1);
	run1(rt, &p, get);
	tcp(&p, cn, 1, PSH | ACK, rsp, sizeof(rsp) - 1);
	run1(rt, &p, last);
}

Test(dpi, http_get_names_host_and_both_directions_share_the_flow)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct conn cn = {{CLIENT, SERVER}, {45000, 80}, {1000, 5000}};
	struct rdm_frame get, rsp;

	http_flow(rt, &cn, &get, &rsp);
	expect_app(&get, "HTTP", 0, P_HTTP);
	expect_host(&get, "www.example.test");
	cr_assert_not(done(&get), "nDPI waits for the response, the GET already carries state");
	expect_app(&rsp, "HTTP", 0, P_HTTP);
	expect_host(&rsp, "www.example.test");
	cr_assert(done(&rsp), "final after the response");
	cr_assert_not(rsp.flags & RDM_FF_DPI_GAVEUP);
	cr_assert_eq(counter(rt, "flows"), 1, "both directions hit one flow");
	cr_assert_eq(counter(rt, "packets_inspected"), 5);
	ops->deinit(rt);
	ops->conf_free(c);
}

/* Handshake and ClientHello for sni; the ClientHello's frame in *hello. */
static void tls_hello(void *rt, struct conn *cn, const char *sni, struct rdm_frame *hello)
{
	uint8_t ch[512];
	struct pkt p;
	struct rdm_frame f;

	tcp(&p, cn, 0, SYN, NULL, 0);
	run1(rt, &p, &f);
	tcp(&p, cn, 1, SYN | ACK, NULL, 0);
	run1(rt, &p, &f);
	tcp(&p, cn, 0, ACK, NULL, 0);
	run1(rt, &p, &f);
	tcp(&p, cn, 0, PSH | ACK, ch, client_hello(ch, sni));
	run1(rt, &p, hello);
}

Test(dpi, tls_clienthello_carries_sni_before_final)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct conn cn = {{CLIENT, SERVER}, {45001, 443}, {7000, 9000}};
	struct rdm_frame hello;

	tls_hello(rt, &cn, "www.example.test", &hello);
	expect_app(&hello, "TLS", 0, P_TLS);
	expect_host(&hello, "www.example.test");
	cr_assert_not(done(&hello), "nDPI still wants the server's side of the handshake");
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(dpi, tls_sni_of_a_known_service_names_it)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct conn cn = {{CLIENT, IP(142, 250, 0, 1)}, {45002, 443}, {1, 2}};
	struct rdm_frame hello;

	tls_hello(rt, &cn, "www.google.com", &hello);
	expect_app(&hello, "TLS.Google", P_TLS, P_GOOGLE);
	expect_host(&hello, "www.google.com");
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(dpi, final_flows_take_the_fast_path_and_keep_their_state)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct conn cn = {{CLIENT, SERVER}, {45003, 80}, {1000, 5000}};
	struct rdm_frame get, rsp, f;
	struct pkt p;
	uint64_t inspected, ns;

	http_flow(rt, &cn, &get, &rsp);
	cr_assert(done(&rsp));
	inspected = counter(rt, "packets_inspected");
	ns = counter(rt, "ndpi_ns");
	cr_assert_gt(ns, 0, "time inside nDPI is measured");
	for (int i = 0; i < 10; i++) {
		tcp(&p, &cn, i & 1, ACK | PSH, "more data", 9);
		run1(rt, &p, &f);
		expect_app(&f, "HTTP", 0, P_HTTP);
		expect_host(&f, "www.example.test");
		cr_assert(done(&f));
	}
	tcp(&p, &cn, 0, FIN | ACK, NULL, 0);
	run1(rt, &p, &f);
	cr_assert(done(&f));
	cr_assert_eq(counter(rt, "packets_inspected"), inspected, "nDPI is not called again");
	cr_assert_eq(counter(rt, "ndpi_ns"), ns);
	cr_assert_eq(counter(rt, "packets_fastpath"), 11);
	cr_assert_eq(counter(rt, "packets"), inspected + 11);
	ops->deinit(rt);
	ops->conf_free(c);
}

/* The id of a frame's state (state_src): while DPI inspects a flow, what it writes may
 * change, so its frames leave with none (the sender compares fields); once final, the
 * same state in gives one id out per direction, and another state in another id. */
Test(dpi, a_final_flows_frames_leave_with_one_state_id_per_state_in)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct conn cn = {{CLIENT, SERVER}, {45004, 80}, {1000, 5000}};
	struct conn other = {{CLIENT, SERVER}, {45005, 80}, {1000, 5000}};
	struct rdm_frame f, *fp = &f;
	uint64_t out[2] = {0, 0};
	struct pkt p;
	int verdict;

	cr_assert(ops->keeps_state, "dpi keeps its frames' state ids true itself");
	tcp(&p, &other, 0, SYN, NULL, 0);
	frame_of(&f, &p);
	f.state_src = 40;
	ops->process(rt, &fp, 1, &verdict);
	cr_assert_not(done(&f));
	cr_assert_eq(f.state_src, 0, "still inspected: no id");
	http_flow(rt, &cn, &f, &f);
	cr_assert(done(&f));
	for (int i = 0; i < 6; i++) {
		int d = i & 1;

		tcp(&p, &cn, d, ACK | PSH, "more data", 9);
		frame_of(&f, &p);
		f.state_src = 41 + (uint64_t)d; /* each direction its own state in */
		ops->process(rt, &fp, 1, &verdict);
		cr_assert(done(&f));
		cr_assert_neq(f.state_src, 0);
		cr_assert_neq(f.state_src, 41 + (uint64_t)d, "dpi's writes make another state");
		if (i < 2)
			out[d] = f.state_src;
		cr_assert_eq(f.state_src, out[d], "packet %d: the same state in, the same out", i);
	}
	cr_assert_neq(out[0], out[1]);
	tcp(&p, &cn, 0, ACK, NULL, 0);
	frame_of(&f, &p);
	f.state_src = 43; /* the upstream's state changed */
	ops->process(rt, &fp, 1, &verdict);
	cr_assert_neq(f.state_src, 0);
	cr_assert_neq(f.state_src, out[0], "another state in, another out");
	tcp(&p, &cn, 0, ACK, NULL, 0);
	frame_of(&f, &p);
	f.state_src = 0; /* unknown in: unknown out */
	ops->process(rt, &fp, 1, &verdict);
	cr_assert(done(&f));
	cr_assert_eq(f.state_src, 0);
	ops->deinit(rt);
	ops->conf_free(c);
}

/* A final flow's packets are counted, not parsed again: one cut short inside its TCP
 * header, sent with the flow's key, takes the fast path and the flow's state. Once the
 * connection closed, a SYN on its tuple opens a new flow, inspected afresh. */
Test(dpi, final_flows_packets_are_not_parsed_again)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct conn cn = {{CLIENT, SERVER}, {45004, 80}, {1000, 5000}};
	struct rdm_frame get, rsp, f, *fp = &f;
	struct pkt p;
	uint64_t inspected;
	int verdict = -99;

	http_flow(rt, &cn, &get, &rsp);
	cr_assert(done(&rsp));
	inspected = counter(rt, "packets_inspected");
	tcp(&p, &cn, 1, ACK, NULL, 0);
	rdm_put_be16(p.b + 2, 30); /* IP says 30 bytes: 10 of a 20-byte TCP header */
	p.len = 30;
	rdm_frame_init(&f, 7, 255, 4);
	f.pkt = p.b;
	f.pkt_len = p.len;
	f.key = rsp.key;
	f.present |= RDM_F_FLOW_KEY;
	ops->process(rt, &fp, 1, &verdict);
	cr_assert_eq(verdict, RDM_STAGE_PASS);
	expect_host(&f, "www.example.test");
	cr_assert(done(&f));
	cr_assert_eq(counter(rt, "packets_fastpath"), 1);
	cr_assert_eq(counter(rt, "malformed"), 0);

	tcp(&p, &cn, 0, FIN | ACK, NULL, 0);
	run1(rt, &p, &f);
	tcp(&p, &cn, 1, FIN | ACK, NULL, 0);
	run1(rt, &p, &f);
	cr_assert_eq(counter(rt, "packets_fastpath"), 3);
	tcp(&p, &cn, 0, SYN, NULL, 0);
	run1(rt, &p, &f);
	cr_assert_not(done(&f), "a new connection, not the closed one's tail");
	cr_assert_eq(counter(rt, "flows"), 2);
	cr_assert_eq(counter(rt, "packets_inspected"), inspected + 1);
	cr_assert_eq(counter(rt, "packets_fastpath"), 3);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(dpi, budget_spent_gives_up)
{
	char err[256];
	void *c = conf_from("- name: dpi\n  packet_budget: 4\n", err, sizeof(err)), *rt;
	struct rdm_frame f;
	struct pkt p;
	uint8_t junk[64];

	cr_assert_not_null(c, "%s", err);
	rt = rt_new(c, NULL);
	for (int i = 0; i < 3; i++) {
		for (size_t k = 0; k < sizeof(junk); k++)
			junk[k] = (uint8_t)(k * 37 + (size_t)i * 11 + 0x80);
		udp4(&p, CLIENT, 33333, SERVER, 44444, junk, sizeof(junk));
		run1(rt, &p, &f);
		cr_assert_not(done(&f), "packet %d: not final within the budget", i + 1);
		cr_assert_not(f.present & RDM_F_APP_ID, "nothing to say yet");
	}
	udp4(&p, SERVER, 44444, CLIENT, 33333, junk, sizeof(junk));
	run1(rt, &p, &f);
	cr_assert(done(&f), "the 4th packet (a reply: both directions count) spends the budget");
	cr_assert(f.flags & RDM_FF_DPI_GAVEUP);
	expect_app(&f, "Unknown", 0, 0);
	run1(rt, &p, &f);
	cr_assert(done(&f) && (f.flags & RDM_FF_DPI_GAVEUP), "gave up stays on the flow");
	cr_assert_eq(counter(rt, "packets_inspected"), 4);
	cr_assert_eq(counter(rt, "packets_fastpath"), 1);
	cr_assert_eq(counter(rt, "flows_gaveup"), 1);
	cr_assert_eq(counter(rt, "flows_unknown"), 1);
	cr_assert_eq(counter(rt, "flows_detected"), 0);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(dpi, upstream_flags_are_kept)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct rdm_frame f, *fp = &f;
	struct pkt q, a;
	uint8_t d[512];
	int v;

	udp4(&q, CLIENT, 41001, SERVER, 53, d, dns(d, 1, "a.example.test", 0));
	udp4(&a, SERVER, 53, CLIENT, 41001, d, dns(d, 1, "a.example.test", 1));
	run1(rt, &q, &f);
	frame_of(&f, &a);
	f.flags = RDM_FF_ID_UNKNOWN;
	f.present |= RDM_F_FLAGS;
	ops->process(rt, &fp, 1, &v);
	cr_assert_eq(f.flags, RDM_FF_ID_UNKNOWN | RDM_FF_DPI_DONE);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(dpi, workers_are_isolated)
{
	void *c = conf_from(NULL, NULL, 0), *a = rt_new(c, NULL), *b = rt_new(c, NULL);
	struct conn cn = {{CLIENT, SERVER}, {45004, 80}, {1000, 5000}};
	static const char rsp[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	struct rdm_frame get, fa, fb;
	struct pkt p;

	http_flow(a, &cn, &get, &fa);
	expect_host(&fa, "www.example.test");
	/* Worker b sees the flow's next packet only: it knows nothing of a's flow. */
	tcp(&p, &cn, 1, PSH | ACK, rsp, sizeof(rsp) - 1);
	run1(b, &p, &fb);
	cr_assert_not(fb.present & RDM_F_HOST, "b never saw the Host header");
	cr_assert_not(done(&fb));
	cr_assert_eq(counter(b, "flows"), 1);
	cr_assert_eq(counter(b, "packets"), 1);
	cr_assert_eq(counter(a, "flows"), 1);
	cr_assert_eq(counter(a, "packets"), 5, "b's packet is not counted by a");
	ops->deinit(a);
	ops->deinit(b);
	ops->conf_free(c);
}

Test(dpi, malformed_packets_are_counted_and_passed_untouched)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct pkt p[8];
	struct rdm_frame f[8], *fp[8];
	int verdict[8], n = 0;
	uint8_t d[512];
	uint32_t dl = dns(d, 9, "frag.example.test", 0);

	/* 0: not IP (version 5) */
	memset(p[n].b, 0x55, 40);
	p[n].len = 40;
	n++;
	/* 1: IPv4 cut inside its header */
	udp4(&p[n], CLIENT, 1, SERVER, 2, d, dl);
	p[n].len = 12;
	n++;
	/* 2: IPv4 whose total length runs past the packet */
	udp4(&p[n], CLIENT, 1, SERVER, 2, d, dl);
	p[n].len = 30;
	n++;
	/* 3: TCP header cut short */
	{
		struct conn cn = {{CLIENT, SERVER}, {1, 2}, {0, 0}};
		tcp(&p[n], &cn, 0, SYN, NULL, 0);
		rdm_put_be16(p[n].b + 2, 30);
		p[n].len = 30;
		n++;
	}
	/* 4: a later fragment (offset 185 * 8) */
	udp4(&p[n], CLIENT, 1, SERVER, 2, d, dl);
	rdm_put_be16(p[n].b + 6, 185);
	n++;
	/* 5: a frame without a flow key: the ingress could not parse it */
	udp4(&p[n], CLIENT, 1, SERVER, 2, d, dl);
	n++;
	/* 6: an empty packet */
	p[n].len = 0;
	n++;

	for (int i = 0; i < n; i++) {
		rdm_frame_init(&f[i], 7, 255, 0);
		f[i].pkt = p[i].b;
		f[i].pkt_len = p[i].len;
		/* A key as if parsed: the stage must not trust it to mean the packet is sane. */
		f[i].key = (struct rdm_flow_key){
		    .family = 4, .proto = IPPROTO_UDP, .sport = 1, .dport = 2};
		if (i != 5)
			f[i].present |= RDM_F_FLOW_KEY;
		fp[i] = &f[i];
		verdict[i] = -99;
	}
	ops->process(rt, fp, n, verdict);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(verdict[i], RDM_STAGE_PASS, "frame %d passes", i);
		cr_assert_eq(f[i].present & ~(uint32_t)RDM_F_FLOW_KEY, 0, "frame %d untouched", i);
	}
	cr_assert_eq(counter(rt, "not_ip"), 2, "version 5 and the empty packet");
	cr_assert_eq(counter(rt, "malformed"), 3);
	cr_assert_eq(counter(rt, "fragments"), 1);
	cr_assert_eq(counter(rt, "no_key"), 1);
	cr_assert_eq(counter(rt, "packets_inspected"), 0, "nDPI never saw them");
	cr_assert_eq(counter(rt, "flows"), 0);
	cr_assert_eq(counter(rt, "packets"), (uint64_t)n);
	ops->deinit(rt);
	ops->conf_free(c);
}

/* Garbage behind valid IP and transport headers, on ports whose dissectors will try
 * to parse it, both directions, with truncated TCP options and odd lengths: nDPI sees
 * every packet, and the stage must come through with every frame passed. */
Test(dpi, random_payloads_never_crash, .timeout = 60)
{
	static const uint16_t ports[] = {53, 80, 443, 5060, 1194, 3478, 8080, 123, 0};
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint8_t payload[1400];
	struct pkt p;
	struct rdm_frame f;
	int n = 4000;

	for (int i = 0; i < n; i++) {
		uint32_t len;
		uint16_t sp, dp;

		for (size_t k = 0; k < sizeof(payload); k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			payload[k] = (uint8_t)x;
		}
		len = (uint32_t)(x % sizeof(payload));
		sp = (uint16_t)(40000 + (x >> 20) % 64);
		dp = ports[(x >> 32) % (sizeof(ports) / sizeof(ports[0]))];
		if (!dp)
			dp = (uint16_t)(x >> 40);
		if (x & 1) {
			if ((x >> 8) & 1)
				udp4(&p, CLIENT, sp, SERVER, dp, payload, len);
			else
				udp4(&p, SERVER, dp, CLIENT, sp, payload, len);
		} else {
			struct conn cn = {
			    {CLIENT, SERVER}, {sp, dp}, {(uint32_t)x, (uint32_t)(x >> 32)}};

			tcp(&p, &cn, (int)((x >> 8) & 1), (uint8_t)(x >> 16), payload, len);
			p.b[32] =
			    (uint8_t)((x >> 24) & 0xf0); /* any data offset, even past the end */
		}
		run1(rt, &p, &f);
	}
	cr_assert_eq(counter(rt, "packets"), (uint64_t)n);
	cr_assert_gt(counter(rt, "packets_inspected"), 0);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(dpi, ipv6_dns_is_detected)
{
	void *c = conf_from(NULL, NULL, 0), *rt = rt_new(c, NULL);
	struct pkt p;
	struct rdm_frame f;
	uint8_t d[512];
	uint32_t dl = dns(d, 77, "six.example.test", 0);
	uint8_t *h = p.b;

	memset(h, 0, 48);
	h[0] = 0x60;
	rdm_put_be16(h + 4, (uint16_t)(8 + dl));
	h[6] = IPPROTO_UDP;
	h[7] = 64;
	h[8] = 0xfd;
	h[23] = 1;
	h[24] = 0xfd;
	h[39] = 2;
	rdm_put_be16(h + 40, 40000);
	rdm_put_be16(h + 42, 53);
	rdm_put_be16(h + 44, (uint16_t)(8 + dl));
	memcpy(h + 48, d, dl);
	p.len = 48 + dl;
	run1(rt, &p, &f);
	expect_app(&f, "DNS", 0, P_DNS);
	expect_host(&f, "six.example.test");
	ops->deinit(rt);
	ops->conf_free(c);
}

/* A flow evicted by a later packet of the same batch: the frames already written keep
 * valid strings (they live in the batch's arena, not in the reused flow entry), and
 * evicted flows give their nDPI memory back (LeakSanitizer checks under SANITIZE). */
Test(dpi, eviction_within_a_batch_keeps_written_strings)
{
	struct rdm_flow_conf small = {.max_flows = 1};
	void *c = conf_from(NULL, NULL, 0), *rt;
	struct pkt p[6];
	struct rdm_frame f[6], *fp[6];
	int verdict[6];
	char name[6][32];
	uint8_t d[512];

	ops = rdm_stage_find("dpi");
	rt = rt_new(c, &small);
	for (int i = 0; i < 6; i++) {
		snprintf(name[i], sizeof(name[i]), "host%d.example.test", i);
		udp4(&p[i], CLIENT, (uint16_t)(42000 + i), SERVER, 53, d, dns(d, 1, name[i], 0));
		frame_of(&f[i], &p[i]);
		fp[i] = &f[i];
	}
	ops->process(rt, fp, 6, verdict);
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(verdict[i], RDM_STAGE_PASS);
		expect_host(&f[i], name[i]);
		expect_app(&f[i], "DNS", 0, P_DNS);
	}
	cr_assert_eq(counter(rt, "flows"), 6);
	cr_assert_eq(counter(rt, "flows_evicted"), 5);
	cr_assert_eq(counter(rt, "flows_active"), 1);
	cr_assert_eq(counter(rt, "flows_unfinished"), 5, "evicted before their answers came");
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(dpi, config_is_strict)
{
	char err[256];
	void *c;

	c = conf_from("- name: dpi\n  packet_budget: 1000\n", err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	ops->conf_free(c);
	c = conf_from("- name: dpi\n  packet_budgt: 5\n", err, sizeof(err));
	cr_assert_null(c);
	cr_assert_str_eq(err,
			 "t.yaml:2:3: unknown key 'packet_budgt' (did you mean 'packet_budget'?)");
	c = conf_from("- name: dpi\n  packet_budget: 0\n", err, sizeof(err));
	cr_assert_null(c);
	cr_assert(strstr(err, "t.yaml:2:18: packet_budget: ") == err, "%s", err);
	c = conf_from("- name: dpi\n  packet_budget: 1001\n", err, sizeof(err));
	cr_assert_null(c);
	cr_assert(strstr(err, "1..1000"), "%s", err);
	c = conf_from("- name: dpi\n  packet_budget: lots\n", err, sizeof(err));
	cr_assert_null(c);
	cr_assert(strstr(err, "t.yaml:2:18:") == err, "%s", err);
}
