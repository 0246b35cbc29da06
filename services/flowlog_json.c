/* The flowlog stage's JSON line: one flow's record, its keys always present and always in
 * the same order (the line format is in services/flowlog.c). */
#include "services/flowlog_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/pkt.h"

/* A bounded line under construction; full is set (and the rest ignored) on overflow. */
struct jb {
	char *p;
	size_t len, cap;
	int full;
};

static void jb_raw(struct jb *b, const char *s, size_t n)
{
	if (b->full || n > b->cap - b->len) {
		b->full = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void __attribute__((format(printf, 2, 3))) jb_fmt(struct jb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len)
		b->full = 1;
	else
		b->len += (size_t)n;
}

/* The length of the valid UTF-8 sequence (2 to 4 bytes) at s, or 0 if there is none:
 * overlong forms, surrogates and code points above U+10FFFF are not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t need;

	if (c < 0xc2 || c > 0xf4)
		return 0;
	need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	if (n < need)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need;
}

/* A JSON string of n bytes at s (which may be NULL when n is 0). */
static void jb_str(struct jb *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	jb_raw(b, "\"", 1);
	for (size_t i = 0; i < n && !b->full;) {
		unsigned char c = u[i];
		size_t run = i;
		char esc[8];

		/* Copy plain ASCII and valid UTF-8 in runs. */
		while (run < n) {
			size_t l;

			if (u[run] >= 0x20 && u[run] < 0x7f && u[run] != '"' && u[run] != '\\') {
				run++;
				continue;
			}
			if (u[run] >= 0x80 && (l = utf8_len(u + run, n - run))) {
				run += l;
				continue;
			}
			break;
		}
		if (run > i) {
			jb_raw(b, s + i, run - i);
			i = run;
			continue;
		}
		switch (c) {
		case '"':
			jb_raw(b, "\\\"", 2);
			break;
		case '\\':
			jb_raw(b, "\\\\", 2);
			break;
		case '\n':
			jb_raw(b, "\\n", 2);
			break;
		case '\r':
			jb_raw(b, "\\r", 2);
			break;
		case '\t':
			jb_raw(b, "\\t", 2);
			break;
		default: /* other control bytes, DEL, and bytes that are not UTF-8 */
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jb_raw(b, esc, 6);
		}
		i++;
	}
	jb_raw(b, "\"", 1);
}

/* ,"key": (the comma only when something came before in this object or array). */
static void jb_key(struct jb *b, const char *k)
{
	if (b->len && b->p[b->len - 1] != '{' && b->p[b->len - 1] != '[')
		jb_raw(b, ",", 1);
	jb_fmt(b, "\"%s\":", k);
}

static void jb_blob(struct jb *b, const char *k, const struct fl_flow *d, uint32_t bit, int s)
{
	jb_key(b, k);
	if (d->present & bit)
		jb_str(b, d->s[s].p, d->s[s].len);
	else
		jb_raw(b, "null", 4);
}

static void jb_time(struct jb *b, const char *k, uint64_t wall_ns)
{
	time_t sec = (time_t)(wall_ns / FL_SEC);
	struct tm tm;

	jb_key(b, k);
	gmtime_r(&sec, &tm);
	jb_fmt(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06uZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
	       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(wall_ns % FL_SEC / 1000));
}

static const char *proto_name(uint8_t p)
{
	switch (p) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_ICMP:
		return "icmp";
	case IPPROTO_ICMPV6:
		return "icmpv6";
	case IPPROTO_SCTP:
		return "sctp";
	case IPPROTO_GRE:
		return "gre";
	case IPPROTO_ESP:
		return "esp";
	case IPPROTO_UDPLITE:
		return "udplite";
	}
	return NULL;
}

static const char *verdict_name(uint8_t v)
{
	static const char *const names[] = {"none", "allow", "deny", "reject", "log"};

	return v < sizeof(names) / sizeof(names[0]) ? names[v] : "unknown";
}

static uint64_t fl_wall(const struct fl_rt *rt, uint64_t mono_ns)
{
	return (uint64_t)((int64_t)mono_ns + rt->wall_off);
}

/* Formats the line of flow f and queues it; reason is NULL for an update. */
void rdm_flowlog__line(struct fl_rt *rt, const struct rdm_flow *f, const char *reason)
{
	const struct fl_flow *d = rdm_flow_data((struct rdm_flow *)f);
	struct jb b = {.p = rt->line, .cap = FL_LINE_MAX - 1};
	const char *pn = proto_name(f->key.proto);
	char addr[INET6_ADDRSTRLEN];
	int af = f->key.family == 6 ? AF_INET6 : AF_INET;

	jb_raw(&b, "{", 1);
	jb_time(&b, "ts", fl_wall(rt, rt->now_ns));
	jb_key(&b, "event");
	jb_fmt(&b, "\"%s\"", reason ? "end" : "update");
	jb_key(&b, "reason");
	if (reason)
		jb_fmt(&b, "\"%s\"", reason);
	else
		jb_raw(&b, "null", 4);
	jb_key(&b, "proto");
	if (pn)
		jb_fmt(&b, "\"%s\"", pn);
	else
		jb_fmt(&b, "\"%u\"", f->key.proto);
	jb_key(&b, "src");
	jb_fmt(&b, "\"%s\"", inet_ntop(af, f->key.src, addr, sizeof(addr)) ? addr : "?");
	jb_key(&b, "sport");
	jb_fmt(&b, "%u", f->key.sport);
	jb_key(&b, "dst");
	jb_fmt(&b, "\"%s\"", inet_ntop(af, f->key.dst, addr, sizeof(addr)) ? addr : "?");
	jb_key(&b, "dport");
	jb_fmt(&b, "%u", f->key.dport);

	jb_blob(&b, "tenant", d, RDM_F_TENANT, FS_TENANT);
	jb_blob(&b, "user", d, RDM_F_USER, FS_USER);
	jb_key(&b, "groups");
	if (d->present & RDM_F_GROUPS) {
		const struct fl_blob *g = &d->s[FS_GROUPS];

		jb_raw(&b, "[", 1);
		for (size_t off = 0; off < g->len; off += 1 + (uint8_t)g->p[off]) {
			if (off)
				jb_raw(&b, ",", 1);
			jb_str(&b, g->p + off + 1, (uint8_t)g->p[off]);
		}
		jb_raw(&b, "]", 1);
	} else {
		jb_raw(&b, "null", 4);
	}
	jb_key(&b, "identity_unknown");
	jb_fmt(&b, "%s", d->flags & RDM_FF_ID_UNKNOWN ? "true" : "false");

	jb_blob(&b, "app", d, RDM_F_APP_NAME, FS_APP);
	jb_key(&b, "master_proto");
	if (d->present & RDM_F_APP_ID)
		jb_fmt(&b, "%u", d->master_proto);
	else
		jb_raw(&b, "null", 4);
	jb_key(&b, "app_proto");
	if (d->present & RDM_F_APP_ID)
		jb_fmt(&b, "%u", d->app_proto);
	else
		jb_raw(&b, "null", 4);
	jb_blob(&b, "category", d, RDM_F_CATEGORY, FS_CATEGORY);
	jb_key(&b, "category_id");
	if (d->present & RDM_F_CATEGORY)
		jb_fmt(&b, "%u", d->category_id);
	else
		jb_raw(&b, "null", 4);
	jb_blob(&b, "host", d, RDM_F_HOST, FS_HOST);
	jb_key(&b, "risk");
	if (d->present & RDM_F_RISK)
		jb_fmt(&b, "%" PRIu64, d->risk);
	else
		jb_raw(&b, "null", 4);
	jb_key(&b, "dpi_done");
	jb_fmt(&b, "%s", d->flags & RDM_FF_DPI_DONE ? "true" : "false");

	jb_key(&b, "verdict");
	jb_fmt(&b, "\"%s\"", d->present & RDM_F_VERDICT ? verdict_name(d->verdict) : "none");
	jb_blob(&b, "rule", d, RDM_F_RULE, FS_RULE);
	jb_key(&b, "rule_id");
	if (d->present & RDM_F_VERDICT)
		jb_fmt(&b, "%" PRIu32, d->rule_id);
	else
		jb_raw(&b, "null", 4);

	jb_fmt(&b,
	       ",\"packets_fwd\":%" PRIu64 ",\"bytes_fwd\":%" PRIu64 ",\"packets_rev\":%" PRIu64
	       ",\"bytes_rev\":%" PRIu64,
	       f->packets[0], f->bytes[0], f->packets[1], f->bytes[1]);
	jb_time(&b, "first", fl_wall(rt, f->first_ns));
	jb_time(&b, "last", fl_wall(rt, f->last_ns));
	jb_key(&b, "duration_ms");
	jb_fmt(&b, "%.3f", (double)(f->last_ns - f->first_ns) / 1e6);

	jb_key(&b, "hops");
	jb_raw(&b, "[", 1);
	for (int i = 0; i < d->n_hops; i++) {
		const struct fl_hop *h = &d->hops[i];

		if (i)
			jb_raw(&b, ",", 1);
		jb_fmt(&b, "{\"from\":%" PRIu32 ",\"to\":%" PRIu32 ",\"count\":%" PRIu64, h->from,
		       h->to, h->count);
		if (h->count)
			jb_fmt(&b, ",\"min_us\":%.3f,\"mean_us\":%.3f,\"max_us\":%.3f",
			       (double)h->min_ns / 1e3, (double)h->sum_ns / (double)h->count / 1e3,
			       (double)h->max_ns / 1e3);
		else
			jb_fmt(&b, "%s", ",\"min_us\":null,\"mean_us\":null,\"max_us\":null");
		jb_fmt(&b, ",\"skew\":%" PRIu64 "}", h->skew);
	}
	jb_raw(&b, "]}", 2);

	rt->lines++;
	if (!reason)
		rt->lines_update++;
	if (b.full) { /* cannot happen within FL_LINE_MAX; never write half a line */
		rt->lines_lost++;
		return;
	}
	b.p[b.len++] = '\n';
	rdm_flowlog__put(rt, b.p, b.len);
}
