/* The flow generator.
 *
 * Flows are created lazily, at most GEN_ACTIVE at a time, so memory does not grow with
 * the packet count. Each flow is planned when it is created: its kind and its exact
 * packet count come from a streaming split of the remaining packet budget over the
 * remaining flows, and its plan is a short list of phases (control segments, and
 * messages that are cut into MSS-sized segments and acknowledged the way a delayed-ACK
 * receiver does). Payload bytes are computed from the flow's key and the offset in the
 * message, so nothing but the current message's head is stored.
 *
 * Every flow has its own PRNG seeded from (seed, flow index), so a flow's bytes do not
 * depend on how flows interleave; the generator's PRNG draws the interleaving and the
 * flow kinds and sizes. */
#include "node/gen.h"
#include "lib/byteorder.h"
#include "lib/csum.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#define GEN_ACTIVE     64   /* flows in progress at once */
#define GEN_MSS	       1448 /* 1500 MTU less IPv4, TCP and the timestamp option */
#define GEN_MAX_PKT    1500
#define GEN_MIN_HTTP   9  /* handshake, request, 1 segment + ACK, teardown */
#define GEN_MIN_TLS    11 /* handshake, hello, 1-segment server flight, finished, 1 + ACK, FIN */
#define GEN_MIN_DNS    2  /* query, answer */
#define GEN_MAX_PHASES 12

/* Client (address, port) pairs: 10.1.0.1 .. 10.1.255.254 times ports 32768 .. 60999
 * (Linux's ephemeral range). Each flow index maps to its own pair, so 5-tuples never
 * repeat and a capture holds exactly conf->flows distinct flows. */
#define GEN_CLIENT_HOSTS 65534u
#define GEN_CLIENT_PORTS 28232u
#define GEN_CLIENT_PAIRS (GEN_CLIENT_HOSTS * GEN_CLIENT_PORTS)
#define GEN_SITES	 5000u /* www.example1.test .. www.example5000.test */

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
enum body_kind { B_HTML, B_JS, B_JSON, B_JPEG, B_BIN };

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

struct rdm_gen {
	struct rdm_gen_conf conf;
	uint64_t rng;
	uint32_t next_flow; /* index of the next flow to create */
	uint64_t budget;    /* packets not yet given to a created flow */
	uint32_t n_active;
	struct flow act[GEN_ACTIVE];
	struct flow saved;
	uint8_t scratch[GEN_MAX_PKT];
};

/* ---- PRNG and keyed bytes ---- */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ull;
	return mix64(*s);
}

/* Uniform in [0, n), n > 0 (multiply-shift; the bias is below 2^-32). */
static uint32_t rnd_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(((rnd(s) >> 32) * n) >> 32);
}

static uint32_t rnd_range(uint64_t *s, uint32_t lo, uint32_t hi)
{
	return lo + rnd_below(s, hi - lo + 1);
}

static double rnd_unit(uint64_t *s)
{
	return (double)(rnd(s) >> 11) * 0x1.0p-53;
}

static uint64_t stream_key(const struct flow *f, unsigned stream)
{
	return mix64(f->key + stream * 0xd6e8feb86659fd93ull);
}

/* Word i of the pseudo-random stream named by key: wyrand on a counter, so any offset
 * can be computed directly, at one 128-bit multiply per 8 bytes. */
static uint64_t stream_word(uint64_t key, uint64_t i)
{
	uint64_t s = key + i * 0xa0761d6478bd642full;
	__uint128_t t = (__uint128_t)s * (s ^ 0xe7037ed1a0b428dbull);

	return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

/* Bytes [pos, pos + n) of the pseudo-random stream named by key (words little-endian,
 * so the bytes are the same on every host). */
static void rnd_fill(uint64_t key, uint64_t pos, uint8_t *dst, size_t n)
{
	uint64_t w;

	for (; n && (pos & 7); n--, pos++)
		*dst++ = (uint8_t)(stream_word(key, pos >> 3) >> (8 * (pos & 7)));
	for (; n >= 8; n -= 8, pos += 8, dst += 8) {
		w = htole64(stream_word(key, pos >> 3));
		memcpy(dst, &w, 8);
	}
	for (unsigned i = 0; i < n; i++)
		dst[i] = (uint8_t)(stream_word(key, pos >> 3) >> (8 * i));
}

/* ---- byte writers ---- */

/* A bounded writer for message heads; ovf marks a head that did not fit (a bug: every
 * head is sized to fit pre). */
struct wbuf {
	uint8_t *p;
	uint32_t n, cap;
	int ovf;
};

static uint8_t *w_take(struct wbuf *w, uint32_t n)
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

static void w8(struct wbuf *w, uint32_t v)
{
	uint8_t *p = w_take(w, 1);

	if (p)
		p[0] = (uint8_t)v;
}

static void w16(struct wbuf *w, uint32_t v)
{
	uint8_t *p = w_take(w, 2);

	if (p)
		rdm_put_be16(p, v);
}

static void w32(struct wbuf *w, uint32_t v)
{
	uint8_t *p = w_take(w, 4);

	if (p)
		rdm_put_be32(p, v);
}

static void wmem(struct wbuf *w, const void *src, uint32_t n)
{
	uint8_t *p = w_take(w, n);

	if (p)
		memcpy(p, src, n);
}

static void wrnd(struct wbuf *w, uint64_t key, uint32_t n)
{
	uint8_t *p = w_take(w, n);

	if (p)
		rnd_fill(key, 0, p, n);
}

/* Opens a length field of size bytes; w_close fills it with the bytes written since. */
static uint32_t w_open(struct wbuf *w, uint32_t size)
{
	uint32_t at = w->n;

	if (w_take(w, size))
		memset(w->p + at, 0, size);
	return at;
}

static void w_close(struct wbuf *w, uint32_t at, uint32_t size)
{
	uint32_t v = w->n - at - size;

	if (w->ovf)
		return;
	for (uint32_t i = 0; i < size; i++)
		w->p[at + i] = (uint8_t)(v >> (8 * (size - 1 - i)));
}

static void wfmt(struct wbuf *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void wfmt(struct wbuf *w, const char *fmt, ...)
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

/* ---- checksums ---- */

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

/* ---- message content ---- */

static const char *const gen_uas[] = {
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "curl/7.88.1",
};
#define GEN_N_UAS (sizeof(gen_uas) / sizeof(gen_uas[0]))

struct gen_path {
	const char *fmt; /* takes the flow's pnum */
	const char *ctype;
	const char *accept;
	uint8_t body; /* enum body_kind */
};

static const struct gen_path gen_paths[] = {
    {"/%.0u", "text/html; charset=utf-8", "text/html,application/xhtml+xml,*/*;q=0.8", B_HTML},
    {"/index.html%.0u", "text/html; charset=utf-8", "text/html,application/xhtml+xml,*/*;q=0.8",
     B_HTML},
    {"/news/article-%u.html", "text/html; charset=utf-8",
     "text/html,application/xhtml+xml,*/*;q=0.8", B_HTML},
    {"/static/js/app.%08x.js", "application/javascript", "*/*", B_JS},
    {"/api/v1/items?page=%u", "application/json", "application/json", B_JSON},
    {"/images/photo-%u.jpg", "image/jpeg", "image/avif,image/webp,*/*", B_JPEG},
    {"/downloads/update-%u.bin", "application/octet-stream", "*/*", B_BIN},
};
#define GEN_N_PATHS (sizeof(gen_paths) / sizeof(gen_paths[0]))

/* A body: a fixed head, a middle that repeats fill (or is random when fill is NULL),
 * and a fixed tail. */
struct body_fmt {
	const char *head, *fill, *tail;
	uint32_t head_len, tail_len;
};

static const uint8_t jpeg_head[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J',  'F',  'I',  'F',
				    0x00, 0x01, 0x01, 0x00, 0x00, 0x48, 0x00, 0x48, 0x00, 0x00};
static const uint8_t jpeg_tail[] = {0xff, 0xd9};

static const struct body_fmt gen_bodies[] = {
    [B_HTML] = {"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
		"<title>Example</title>\n</head>\n<body>\n",
		"<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod "
		"tempor incididunt ut labore et dolore magna aliqua.</p>\n",
		"</body>\n</html>\n", 0, 0},
    [B_JS] = {"\"use strict\";\n", "function add(a, b) {\n\treturn a + b;\n}\n", "", 0, 0},
    [B_JSON] = {"{\"items\":[", "{\"id\":42,\"name\":\"widget\",\"price\":9.99},", "{}]}\n", 0, 0},
    [B_JPEG] = {(const char *)jpeg_head, NULL, (const char *)jpeg_tail, sizeof(jpeg_head),
		sizeof(jpeg_tail)},
    [B_BIN] = {"", NULL, "", 0, 0},
};

static uint32_t slen(const struct body_fmt *b, int tail)
{
	if (b->fill == NULL) /* binary: lengths are explicit */
		return tail ? b->tail_len : b->head_len;
	return (uint32_t)strlen(tail ? b->tail : b->head);
}

/* Bytes [off, off + n) of an HTTP body of total length len. */
static void body_fill(const struct flow *f, uint64_t len, uint64_t off, uint8_t *dst, size_t n)
{
	const struct body_fmt *b = &gen_bodies[gen_paths[f->path].body];
	uint64_t hl = slen(b, 0), tl = slen(b, 1), fl = b->fill ? strlen(b->fill) : 0;

	if (len < hl + tl)
		hl = tl = 0; /* too short for the frame: all middle */
	while (n) {
		size_t k;

		if (off < hl) {
			k = (size_t)(hl - off) < n ? (size_t)(hl - off) : n;
			memcpy(dst, b->head + off, k);
		} else if (off >= len - tl) {
			k = n;
			memcpy(dst, b->tail + (off - (len - tl)), k);
		} else {
			uint64_t end = len - tl;

			k = (size_t)(end - off) < n ? (size_t)(end - off) : n;
			if (b->fill) {
				uint64_t m = (off - hl) % fl;

				if (k > fl - m)
					k = (size_t)(fl - m);
				memcpy(dst, b->fill + m, k);
			} else {
				rnd_fill(stream_key(f, RS_BODY), off, dst, k);
			}
		}
		dst += k;
		off += k;
		n -= k;
	}
}

static void w_host(struct wbuf *w, const struct flow *f)
{
	wfmt(w, "www.example%u.test", f->site);
}

static void http_req(struct flow *f, struct wbuf *w)
{
	const struct gen_path *p = &gen_paths[f->path];

	wfmt(w, "GET ");
	wfmt(w, p->fmt, f->pnum);
	wfmt(w, " HTTP/1.1\r\nHost: ");
	w_host(w, f);
	wfmt(w, "\r\nUser-Agent: %s\r\n", gen_uas[f->ua]);
	if (strncmp(gen_uas[f->ua], "curl/", 5) == 0) {
		wfmt(w, "Accept: */*\r\n\r\n");
		return;
	}
	wfmt(w,
	     "Accept: %s\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
	     "Connection: keep-alive\r\n\r\n",
	     p->accept);
}

static void http_resp_hdr(const struct flow *f, struct wbuf *w, uint64_t body)
{
	uint32_t t = f->index % 86400;

	wfmt(w,
	     "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Mon, 01 Jan 2024 %02u:%02u:%02u "
	     "GMT\r\n"
	     "Content-Type: %s\r\nContent-Length: %llu\r\nConnection: keep-alive\r\n"
	     "Cache-Control: max-age=3600\r\n\r\n",
	     t / 3600, t / 60 % 60, t % 60, gen_paths[f->path].ctype, (unsigned long long)body);
}

/* A TLS 1.3 ClientHello as a current browser sends it: SNI, ALPN, supported_versions,
 * key_share (x25519), and padding to 512 bytes as BoringSSL does. */
static void tls_ch(struct flow *f, struct wbuf *w)
{
	static const uint16_t suites[] = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f,
					  0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
					  0xc014, 0x009c, 0x009d, 0x002f, 0x0035};
	static const uint16_t sigalgs[] = {0x0403, 0x0804, 0x0401, 0x0503,
					   0x0805, 0x0501, 0x0806, 0x0601};
	uint32_t rec, hs, exts, e, l;

	w8(w, 0x16); /* handshake record */
	w16(w, 0x0301);
	rec = w_open(w, 2);
	w8(w, 0x01); /* client_hello */
	hs = w_open(w, 3);
	w16(w, 0x0303);
	wrnd(w, stream_key(f, RS_CH_RANDOM), 32);
	w8(w, 32); /* a session id, for middlebox compatibility mode */
	wrnd(w, stream_key(f, RS_SESSION_ID), 32);
	w16(w, sizeof(suites));
	for (unsigned i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		w16(w, suites[i]);
	w8(w, 1);
	w8(w, 0); /* null compression */
	exts = w_open(w, 2);

	w16(w, 0x0000); /* server_name */
	e = w_open(w, 2);
	l = w_open(w, 2);
	w8(w, 0); /* host_name */
	{
		uint32_t n = w_open(w, 2);

		w_host(w, f);
		w_close(w, n, 2);
	}
	w_close(w, l, 2);
	w_close(w, e, 2);

	w16(w, 0x0017); /* extended_master_secret */
	w16(w, 0);
	w16(w, 0xff01); /* renegotiation_info */
	w16(w, 1);
	w8(w, 0);
	w16(w, 0x000a); /* supported_groups: x25519, secp256r1, secp384r1 */
	w16(w, 8);
	w16(w, 6);
	w16(w, 0x001d);
	w16(w, 0x0017);
	w16(w, 0x0018);
	w16(w, 0x000b); /* ec_point_formats: uncompressed */
	w16(w, 2);
	w8(w, 1);
	w8(w, 0);
	w16(w, 0x0023); /* session_ticket */
	w16(w, 0);
	w16(w, 0x0010); /* ALPN: h2, http/1.1 */
	e = w_open(w, 2);
	l = w_open(w, 2);
	w8(w, 2);
	wmem(w, "h2", 2);
	w8(w, 8);
	wmem(w, "http/1.1", 8);
	w_close(w, l, 2);
	w_close(w, e, 2);
	w16(w, 0x0005); /* status_request: OCSP */
	w16(w, 5);
	w8(w, 1);
	w32(w, 0);
	w16(w, 0x000d); /* signature_algorithms */
	w16(w, 2 + sizeof(sigalgs));
	w16(w, sizeof(sigalgs));
	for (unsigned i = 0; i < sizeof(sigalgs) / sizeof(sigalgs[0]); i++)
		w16(w, sigalgs[i]);
	w16(w, 0x0012); /* signed_certificate_timestamp */
	w16(w, 0);
	w16(w, 0x0033); /* key_share: one x25519 share */
	w16(w, 2 + 4 + 32);
	w16(w, 4 + 32);
	w16(w, 0x001d);
	w16(w, 32);
	wrnd(w, stream_key(f, RS_CLIENT_KEY), 32);
	w16(w, 0x002d); /* psk_key_exchange_modes: psk_dhe_ke */
	w16(w, 2);
	w8(w, 1);
	w8(w, 1);
	w16(w, 0x002b); /* supported_versions: TLS 1.3, TLS 1.2 */
	w16(w, 5);
	w8(w, 4);
	w16(w, 0x0304);
	w16(w, 0x0303);
	w16(w, 0x001b); /* compress_certificate: brotli */
	w16(w, 3);
	w8(w, 2);
	w16(w, 0x0002);

	/* BoringSSL pads a hello of 256..511 bytes to 512 (RFC 7685) to dodge F5 bugs. */
	l = w->n - hs + 1; /* handshake message length so far, with its 4-byte header */
	if (!w->ovf && l > 0xff && l < 0x200) {
		uint32_t pad = 0x200 - l;

		pad = pad >= 5 ? pad - 4 : 1;
		w16(w, 0x0015);
		w16(w, pad);
		if (w_take(w, pad))
			memset(w->p + w->n - pad, 0, pad);
	}
	w_close(w, exts, 2);
	w_close(w, hs, 3);
	w_close(w, rec, 2);
}

/* ServerHello (TLS 1.3: supported_versions and key_share), ChangeCipherSpec, and the
 * header of the record holding the encrypted rest of the server's handshake. */
static void tls_sflight_head(struct flow *f, struct wbuf *w)
{
	uint32_t rec, hs, exts;

	w8(w, 0x16);
	w16(w, 0x0303);
	rec = w_open(w, 2);
	w8(w, 0x02); /* server_hello */
	hs = w_open(w, 3);
	w16(w, 0x0303);
	wrnd(w, stream_key(f, RS_SH_RANDOM), 32);
	w8(w, 32);
	wrnd(w, stream_key(f, RS_SESSION_ID), 32); /* echoes the client's */
	w16(w, 0x1301);				   /* TLS_AES_128_GCM_SHA256 */
	w8(w, 0);
	exts = w_open(w, 2);
	w16(w, 0x002b);
	w16(w, 2);
	w16(w, 0x0304);
	w16(w, 0x0033);
	w16(w, 2 + 2 + 32);
	w16(w, 0x001d);
	w16(w, 32);
	wrnd(w, stream_key(f, RS_SERVER_KEY), 32);
	w_close(w, exts, 2);
	w_close(w, hs, 3);
	w_close(w, rec, 2);
	/* change_cipher_spec, then application_data: EncryptedExtensions .. Finished */
	wmem(w, "\x14\x03\x03\x00\x01\x01", 6);
	w8(w, 0x17);
	w16(w, 0x0303);
	w16(w, f->tls_e);
}

/* The client's second flight: ChangeCipherSpec, Finished (53 bytes of ciphertext for
 * SHA-256), then its first request. */
static void tls_cfin(struct flow *f, struct wbuf *w)
{
	uint64_t k = stream_key(f, RS_CFIN);
	uint8_t *p;

	wmem(w, "\x14\x03\x03\x00\x01\x01", 6);
	w8(w, 0x17);
	w16(w, 0x0303);
	w16(w, 53);
	p = w_take(w, 53);
	if (p)
		rnd_fill(k, 0, p, 53);
	w8(w, 0x17);
	w16(w, 0x0303);
	w16(w, f->tls_rq);
	p = w_take(w, f->tls_rq);
	if (p)
		rnd_fill(k, 53, p, f->tls_rq);
}

/* Bytes [off, off + n) of a stream of full-size application_data records totalling len. */
static void tls_records_fill(const struct flow *f, uint64_t len, uint64_t off, uint8_t *dst,
			     size_t n)
{
	uint64_t key = stream_key(f, RS_RESP);

	while (n) {
		uint64_t rec = off / TLS_REC_MAX, at = off % TLS_REC_MAX;
		uint64_t rlen = len - rec * TLS_REC_MAX;
		size_t k;

		if (rlen > TLS_REC_MAX)
			rlen = TLS_REC_MAX;
		if (at < 5) {
			uint8_t h[5] = {0x17, 0x03, 0x03, (uint8_t)((rlen - 5) >> 8),
					(uint8_t)(rlen - 5)};

			*dst = h[at];
			k = 1;
		} else {
			k = (size_t)(rlen - at) < n ? (size_t)(rlen - at) : n;
			rnd_fill(key, off, dst, k);
		}
		dst += k;
		off += k;
		n -= k;
	}
}

/* Builds the head of the message of phase p into f->pre. Single-segment messages are
 * all head, and get their length here. */
static int msg_build(struct flow *f, struct phase *p)
{
	struct wbuf w = {f->pre, 0, sizeof(f->pre), 0};

	switch (p->src) {
	case M_HTTP_REQ:
		http_req(f, &w);
		p->len = w.n;
		break;
	case M_HTTP_RESP:
		http_resp_hdr(f, &w, f->body);
		if (w.n + f->body != p->len)
			return -EPROTO; /* the plan's header length was wrong */
		break;
	case M_TLS_CH:
		tls_ch(f, &w);
		p->len = w.n;
		break;
	case M_TLS_SFLIGHT:
		tls_sflight_head(f, &w);
		if (w.n + f->tls_e != p->len)
			return -EPROTO;
		break;
	case M_TLS_CFIN:
		tls_cfin(f, &w);
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
static void msg_fill(const struct flow *f, const struct phase *p, uint64_t off, uint8_t *dst,
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
		body_fill(f, f->body, off, dst, n);
		break;
	case M_TLS_SFLIGHT:
		rnd_fill(stream_key(f, RS_SFLIGHT), off, dst, n);
		break;
	case M_TLS_RESP:
		tls_records_fill(f, p->len, off, dst, n);
		break;
	default: /* single-segment messages are all head */
		memset(dst, 0, n);
	}
}

/* ---- packets ---- */

/* One TCP segment from side d, with n payload bytes of message p at f->off. */
static uint32_t tcp_pkt(struct flow *f, uint8_t *b, int d, uint8_t flags, const struct phase *p,
			uint32_t n)
{
	uint8_t *t = b + 20;
	uint32_t optlen = (flags & TCP_SYN) ? 20 : 12, tl = 20 + optlen + n;
	uint8_t *o = t + 20;

	f->clock_ms += rnd_below(&f->rng, 3);
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
		msg_fill(f, p, f->off, t + 20 + optlen, n);
	l4_csum(b, t, tl, 16, 0);
	f->seq[d] += n + ((flags & TCP_SYN) ? 1 : 0) + ((flags & TCP_FIN) ? 1 : 0);
	return 20 + tl;
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

static int tcp_next(struct flow *f, uint8_t *b)
{
	struct phase *p = &f->phs[f->ph];
	uint32_t len;
	int d = p->dir;

	if (p->kind == PH_CTL) {
		len = tcp_pkt(f, b, d, p->flags, NULL, 0);
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
		len = tcp_pkt(f, b, !d, TCP_ACK, NULL, 0);
		f->acked++;
	} else {
		uint64_t left = p->len - f->off;
		uint32_t n = left < GEN_MSS ? (uint32_t)left : GEN_MSS;

		len = tcp_pkt(f, b, d, TCP_ACK | (n == left ? TCP_PSH : 0), p, n);
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

/* The server address of www.exampleN.test: 10.2.1.1 onwards, 250 to a /24. */
static uint32_t site_ip(uint32_t site)
{
	return 10u << 24 | 2u << 16 | (1 + (site - 1) / 250) << 8 | (1 + (site - 1) % 250);
}

static void dns_name(struct wbuf *w, const struct flow *f)
{
	uint32_t l;

	wmem(w, "\x03www", 4);
	l = w_open(w, 1);
	wfmt(w, "example%u", f->site);
	w_close(w, l, 1);
	wmem(w, "\x04test", 6); /* with the root label */
}

/* Packet i of a DNS flow: query/answer pairs for A then AAAA, alternating; an odd count
 * starts with a query retransmitted after a timeout. */
static int dns_next(struct flow *f, uint8_t *b)
{
	uint64_t i = f->dns_i++, t;
	int answer, d;
	struct wbuf w = {b + 28, 0, GEN_MAX_PKT - 28, 0};
	uint16_t qtype;
	uint32_t ul;

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
	w16(&w, (uint16_t)mix64(stream_key(f, RS_DNS_ID) + t));
	w16(&w, answer ? 0x8180 : 0x0100); /* RD; answer: QR RD RA */
	w16(&w, 1);
	w16(&w, answer ? 1 : 0);
	w16(&w, 0);
	w16(&w, 1); /* EDNS(0) OPT */
	dns_name(&w, f);
	w16(&w, qtype);
	w16(&w, 1); /* IN */
	if (answer) {
		w16(&w, 0xc00c); /* the question's name */
		w16(&w, qtype);
		w16(&w, 1);
		w32(&w, f->dns_ttl);
		if (qtype == 1) {
			w16(&w, 4);
			w32(&w, site_ip(f->site)); /* where the HTTP and TLS flows go */
		} else {
			w16(&w, 16);
			w32(&w, 0xfd000000);
			w32(&w, 0x00020000);
			w32(&w, 0);
			w32(&w, f->site);
		}
	}
	/* OPT: root name, type 41, UDP payload size 1232, no extended flags */
	wmem(&w, "\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00", 11);
	if (w.ovf)
		return -EOVERFLOW;

	ul = 8 + w.n;
	ip_hdr(f, b, d, IPPROTO_UDP, ul);
	rdm_put_be16(b + 20, f->port[d]);
	rdm_put_be16(b + 22, f->port[!d]);
	rdm_put_be16(b + 24, ul);
	rdm_put_be16(b + 26, 0);
	l4_csum(b, b + 20, ul, 6, 1);
	return (int)(20 + ul);
}

static int flow_done(const struct flow *f)
{
	return f->kind == FK_DNS ? f->dns_i == f->dns_n : f->ph == f->n_ph;
}

static int flow_next(struct flow *f, uint8_t *b)
{
	return f->kind == FK_DNS ? dns_next(f, b) : tcp_next(f, b);
}

/* ---- planning ---- */

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

	return (n - 1) * GEN_MSS + rnd_range(&f->rng, lo, GEN_MSS);
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

static int plan_http(struct flow *f, uint64_t pkts)
{
	struct wbuf w = {f->pre, 0, sizeof(f->pre), 0};
	uint64_t n, total, base;
	int extra;

	f->ua = (uint8_t)rnd_below(&f->rng, GEN_N_UAS);
	f->path = (uint8_t)rnd_below(&f->rng, GEN_N_PATHS);
	f->pnum = (uint32_t)rnd(&f->rng) % 100000;
	n = split_segs(pkts - 7, &extra);

	/* The header holds the body's length: find a body length whose header makes the
	 * response exactly total bytes, nudging total where a digit boundary allows none. */
	http_resp_hdr(f, &w, 0);
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

static int plan_tls(struct flow *f, uint64_t pkts)
{
	static const uint32_t sh_len = 127 + 6 + 5; /* ServerHello, CCS, record header */
	uint64_t k = 1 + rnd_below(&f->rng, 4), fixed, n, total, rest;
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
	f->tls_rq = rnd_range(&f->rng, 120, 700);
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

/* Draws the next flow's kind and packet count from the remaining budget: DNS flows take
 * 2 (sometimes 4), TCP flows share the rest around the mean with +-50% jitter. A TCP
 * flow is kept only where the budget can pay its minimum, and the last flow takes
 * whatever is left, so the counts always add up. */
static void flow_size(struct rdm_gen *g, uint32_t remaining, int *kind, uint64_t *pkts)
{
	uint64_t b = g->budget, maxp = b - GEN_MIN_DNS * (uint64_t)(remaining - 1), p, min;
	uint32_t u = rnd_below(&g->rng, 100);
	int k = u < 40 ? FK_HTTP : u < 75 ? FK_TLS : FK_DNS;

	if (remaining == 1) {
		if (k == FK_DNS && b > 8)
			k = rnd_below(&g->rng, 2) ? FK_TLS : FK_HTTP;
		if (k == FK_TLS && b < GEN_MIN_TLS)
			k = FK_HTTP;
		if (k == FK_HTTP && b < GEN_MIN_HTTP)
			k = FK_DNS;
		*kind = k;
		*pkts = b;
		return;
	}
	if (k == FK_DNS) {
		*kind = k;
		*pkts = (rnd_below(&g->rng, 8) == 0 && maxp >= 4) ? 4 : 2;
		return;
	}
	min = k == FK_TLS ? GEN_MIN_TLS : GEN_MIN_HTTP;
	{
		/* The mean TCP flow, with a quarter of the flows being DNS of 2.25 packets. */
		double at = ((double)b - 0.5625 * remaining) / (0.75 * remaining);

		if (at < (double)min) {
			/* Too few packets for every TCP flow: keep this one in proportion. */
			if (rnd_unit(&g->rng) >= (at - 2) / (double)(min - 2))
				p = 0;
			else
				p = min;
		} else {
			p = (uint64_t)(at * (0.5 + rnd_unit(&g->rng)));
		}
	}
	if (p && p < min)
		p = min;
	if (p > maxp)
		p = maxp;
	if (p < min && k == FK_TLS && p >= GEN_MIN_HTTP)
		k = FK_HTTP;
	else if (p < min) {
		k = FK_DNS;
		p = GEN_MIN_DNS;
	}
	*kind = k;
	*pkts = p;
}

/* The client's (address, port) for flow i: a keyed permutation of 31-bit values, cycled
 * until it lands below the number of pairs, is a bijection on the pairs. */
static uint32_t client_pair(uint32_t i, uint64_t seed)
{
	const uint32_t m = 0x7fffffff;
	uint32_t x = i, s0 = (uint32_t)mix64(seed), s1 = (uint32_t)(mix64(seed) >> 32);

	do {
		x = (x ^ s0) & m;
		x = (x * 0x2c1b3c6du) & m;
		x ^= x >> 12;
		x = (x + s1) & m;
		x = (x * 0x297a2d39u) & m;
		x ^= x >> 15;
	} while (x >= GEN_CLIENT_PAIRS);
	return x;
}

static int flow_new(struct rdm_gen *g, struct flow *f)
{
	uint32_t i = g->next_flow++, pair;
	uint64_t pkts;
	int kind;

	flow_size(g, g->conf.flows - i, &kind, &pkts);
	g->budget -= pkts;

	memset(f, 0, offsetof(struct flow, pre));
	f->kind = (uint8_t)kind;
	f->index = i;
	f->rng = mix64(g->conf.seed ^ mix64(i + 0x632be59bd9b4e019ull));
	f->key = rnd(&f->rng);

	pair = client_pair(i, g->conf.seed);
	f->ip[0] = 10u << 24 | 1u << 16 | (1 + pair % GEN_CLIENT_HOSTS);
	f->port[0] = (uint16_t)(32768 + pair / GEN_CLIENT_HOSTS);
	/* Half the lookups go to the 50 most popular sites. */
	f->site =
	    rnd_below(&f->rng, 2) ? rnd_range(&f->rng, 1, 50) : rnd_range(&f->rng, 1, GEN_SITES);
	f->ttl[0] = rnd_below(&f->rng, 4) ? 64 : 128; /* Linux and macOS, or Windows */
	{
		static const uint8_t init[] = {64, 64, 128, 255};

		f->ttl[1] = (uint8_t)(init[rnd_below(&f->rng, 4)] - rnd_range(&f->rng, 4, 20));
	}
	f->ipid[0] = (uint16_t)rnd(&f->rng);
	f->ipid[1] = (uint16_t)rnd(&f->rng);

	if (kind == FK_DNS) {
		f->ip[1] = 10u << 24 | 2u << 16 | (53 + rnd_below(&f->rng, 2)); /* 10.2.0.53/54 */
		f->port[1] = 53;
		f->dns_n = pkts;
		f->dns_ttl = rnd_range(&f->rng, 60, 3600);
		return 0;
	}
	f->ip[1] = site_ip(f->site);
	f->port[1] = kind == FK_TLS ? 443 : 80;
	f->seq[0] = (uint32_t)rnd(&f->rng);
	f->seq[1] = (uint32_t)rnd(&f->rng);
	f->tsbase[0] = (uint32_t)rnd(&f->rng);
	f->tsbase[1] = (uint32_t)rnd(&f->rng);
	f->win[0] = (uint16_t)rnd_range(&f->rng, 400, 2000); /* scaled by 2^7 */
	f->win[1] = (uint16_t)rnd_range(&f->rng, 400, 600);
	return kind == FK_TLS ? plan_tls(f, pkts) : plan_http(f, pkts);
}

/* ---- API ---- */

struct rdm_gen *rdm_gen_new(const struct rdm_gen_conf *conf)
{
	struct rdm_gen *g;

	/* Every flow needs at least a DNS query and its answer. */
	if (!conf || conf->flows < 1 || conf->flows > GEN_CLIENT_PAIRS ||
	    conf->packets < GEN_MIN_DNS * (uint64_t)conf->flows) {
		errno = EINVAL;
		return NULL;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->conf = *conf;
	g->rng = mix64(conf->seed ^ 0x5851f42d4c957f2dull);
	g->budget = conf->packets;
	while (g->n_active < GEN_ACTIVE && g->next_flow < conf->flows) {
		if (flow_new(g, &g->act[g->n_active]) < 0) {
			free(g);
			errno = EOVERFLOW;
			return NULL;
		}
		g->n_active++;
	}
	return g;
}

int rdm_gen_next(struct rdm_gen *g, uint8_t *buf, uint32_t cap)
{
	uint64_t rng = g->rng;
	uint32_t slot;
	struct flow *f;
	int len;

	if (!g->n_active)
		return 0;
	slot = rnd_below(&g->rng, g->n_active);
	f = &g->act[slot];
	if (cap >= GEN_MAX_PKT) {
		len = flow_next(f, buf);
	} else {
		/* Build aside, and undo if it does not fit, so that no packet is lost. */
		memcpy(&g->saved, f, sizeof(*f));
		len = flow_next(f, g->scratch);
		if (len > 0 && (uint32_t)len > cap) {
			memcpy(f, &g->saved, sizeof(*f));
			g->rng = rng;
			return -EMSGSIZE;
		}
		if (len > 0)
			memcpy(buf, g->scratch, (size_t)len);
	}
	if (len < 0)
		return len;
	if (flow_done(f)) {
		if (g->next_flow < g->conf.flows) {
			int rc = flow_new(g, f);

			if (rc < 0)
				return rc;
		} else if (f != &g->act[--g->n_active]) {
			*f = g->act[g->n_active];
		}
	}
	return len;
}

void rdm_gen_free(struct rdm_gen *g)
{
	free(g);
}
