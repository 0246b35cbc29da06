/* The generator's HTTP/1.1 content: a browser's GET request, nginx's response header, and
 * the bytes of the response body (HTML, JavaScript, JSON, JPEG or binary). */
#include "node/gen_int.h"

#include <string.h>

enum body_kind { B_HTML, B_JS, B_JSON, B_JPEG, B_BIN };

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
void rdm_gen__http_body_fill(const struct flow *f, uint64_t len, uint64_t off, uint8_t *dst,
			     size_t n)
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
				rdm_gen__rnd_fill(rdm_gen__stream_key(f, RS_BODY), off, dst, k);
			}
		}
		dst += k;
		off += k;
		n -= k;
	}
}
void rdm_gen__http_req(struct flow *f, struct wbuf *w)
{
	const struct gen_path *p = &gen_paths[f->path];

	rdm_gen__wfmt(w, "GET ");
	rdm_gen__wfmt(w, p->fmt, f->pnum);
	rdm_gen__wfmt(w, " HTTP/1.1\r\nHost: ");
	rdm_gen__w_host(w, f);
	rdm_gen__wfmt(w, "\r\nUser-Agent: %s\r\n", gen_uas[f->ua]);
	if (strncmp(gen_uas[f->ua], "curl/", 5) == 0) {
		rdm_gen__wfmt(w, "Accept: */*\r\n\r\n");
		return;
	}
	rdm_gen__wfmt(
	    w,
	    "Accept: %s\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
	    "Connection: keep-alive\r\n\r\n",
	    p->accept);
}

void rdm_gen__http_resp_hdr(const struct flow *f, struct wbuf *w, uint64_t body)
{
	uint32_t t = f->index % 86400;

	rdm_gen__wfmt(
	    w,
	    "HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Mon, 01 Jan 2024 %02u:%02u:%02u "
	    "GMT\r\n"
	    "Content-Type: %s\r\nContent-Length: %llu\r\nConnection: keep-alive\r\n"
	    "Cache-Control: max-age=3600\r\n\r\n",
	    t / 3600, t / 60 % 60, t % 60, gen_paths[f->path].ctype, (unsigned long long)body);
}

/* Draws a flow's User-Agent, path and the number in its path. */
void rdm_gen__http_pick(struct flow *f)
{
	f->ua = (uint8_t)rdm_gen__rnd_below(&f->rng, GEN_N_UAS);
	f->path = (uint8_t)rdm_gen__rnd_below(&f->rng, GEN_N_PATHS);
	f->pnum = (uint32_t)rdm_gen__rnd(&f->rng) % 100000;
}
