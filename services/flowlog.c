/* flowlog: writes one JSON line per flow when it ends, and a periodic line for long
 * flows, at the chain's egress node. Frames always pass; logging never drops or delays
 * traffic. Config:
 *   - name: flowlog
 *     file: /var/log/rdmesh/flows.json  # required; relative to the node's working dir
 *     max_bytes: 67108864   # rotate before the file would exceed this (>= 4096)
 *     keep: 5               # rotated files kept: FILE.1 (newest) .. FILE.keep; 0 = none
 *     interval_s: 60        # "update" line for flows living longer; 0 = off
 *     buffer_bytes: 65536   # write buffer (>= 4096)
 *
 * Files: worker 0 writes FILE, worker N > 0 writes FILE.wN (a stage cannot see how many
 * workers its node runs, so worker 0 never takes a suffix). Each worker rotates its own
 * file: FILE.(keep-1) -> FILE.keep, ..., FILE -> FILE.1, then a fresh FILE. A line is
 * never split across files; a single line longer than max_bytes goes alone into an
 * otherwise empty file. Only regular files are rotated or size-tracked, so pointing
 * file at a device or pipe (/dev/stdout) works. An existing file is appended to; new
 * files are mode 0640 (lines name users). Lines are buffered and written when the
 * buffer fills, at least once a second (from tick(), and from process() in case ticks
 * are rare), and at deinit. Output errors (ENOSPC, EACCES at open, a failed rename) are
 * counted in write_errors and logged to stderr at most once a second; the lines they
 * cost are counted in lines_lost (a partly written batch is cut back off a regular
 * file so that no half line stays). A file that cannot be opened is retried at most
 * once a second.
 *
 * Line (keys always present, always in this order; a field no frame carried is null,
 * so every line has the same shape; the two flags identity_unknown and dpi_done are
 * false rather than null when no FLAGS TLV was seen):
 *   ts        when the line was made (ISO-8601 UTC, microseconds)
 *   event     "end" or "update" (periodic; counters are totals since the flow began)
 *   reason    end: "closed" | "timeout" | "evicted" | "shutdown"; update: null
 *   proto     "tcp" "udp" "icmp" "icmpv6" "sctp" "gre" "esp" "udplite", else the number
 *             as a string; src, sport, dst, dport in the initiator's orientation
 *   tenant user groups identity_unknown   (identity; groups is a list)
 *   app master_proto app_proto category category_id host risk dpi_done   (DPI)
 *   verdict   "allow" "deny" "reject" "log", "none" when no policy verdict was seen
 *   rule rule_id
 *   packets_fwd bytes_fwd packets_rev bytes_rev   (fwd = initiator to responder)
 *   first last duration_ms   (first and last packet)
 *   hops      [{"from","to","count","min_us","mean_us","max_us","skew"}], one entry per
 *             (from, to) node pair seen in the frames' hop timestamps, in order of first
 *             appearance; skew counts samples where the later hop's clock was behind
 *             (they are left out of count/min/mean/max, which are null when count is 0)
 * State fields (identity, DPI, verdict) come from the latest frame that carried each.
 * Strings are JSON-escaped; bytes that are not valid UTF-8 become \u00XX of the byte. */
#include "services/stage.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "lib/clock.h"

/* Worst line: 6 strings of 255 bytes at 6 output bytes each, 16 such groups and 32 hop
 * entries come to about 40 KiB; the rest is small. */
#define FL_LINE_MAX	  (64 * 1024)
#define FL_MAX_HOP_PAIRS  32
#define FL_EXPIRE_PROCESS 64   /* flows ended per process() call at most */
#define FL_EXPIRE_TICK	  8192 /* and per tick() */
#define FL_SEC		  1000000000ull
/* Room after the path for ".w" + worker + "." + rotation index. */
#define FL_PATH_MAX (PATH_MAX - 32)

struct fl_conf {
	char *path;
	uint64_t max_bytes, buffer_bytes, interval_ns;
	unsigned keep;
};

/* An owned copy of a frame string (or of the groups, serialized as len-prefixed
 * strings). p is NULL when len is 0. */
struct fl_blob {
	char *p;
	uint16_t len;
};

struct fl_hop {
	uint32_t from, to;
	uint64_t count, skew;
	uint64_t min_ns, max_ns, sum_ns;
};

enum { FS_TENANT, FS_USER, FS_GROUPS, FS_APP, FS_CATEGORY, FS_HOST, FS_RULE, FS_COUNT };

/* Per-flow data in the flow table, zeroed when the flow is created; the end callback
 * frees what it points at. */
struct fl_flow {
	struct fl_blob s[FS_COUNT];
	struct fl_hop *hops;
	uint64_t risk, next_update_ns;
	uint32_t present; /* RDM_F_* bits of the state fields seen */
	uint32_t flags, rule_id;
	uint16_t master_proto, app_proto, category_id;
	uint8_t verdict, n_groups, n_hops, cap_hops;
};

struct fl_rt {
	const struct fl_conf *c;
	int worker;
	char *path; /* this worker's file */
	int fd;	    /* -1 while not open */
	int regular;
	uint64_t file_size; /* bytes in the current file (regular files only) */
	char *buf;
	size_t buf_len;
	uint64_t buf_lines;
	char *line;
	struct rdm_flowtab *tab;
	int64_t wall_off; /* CLOCK_REALTIME - CLOCK_MONOTONIC, taken at init */
	uint64_t now_ns;  /* monotonic time of the current call */
	uint64_t last_flush_ns, last_scan_ns;
	/* Real monotonic times for rate limits, independent of the now_ns callers pass. */
	uint64_t last_log_ns, retry_open_ns, retry_rotate_ns;
	int logged;

	uint64_t frames, flows, lines, lines_update, bytes_written, rotations, write_errors,
	    lines_lost, clock_skew, no_flow_key, hops_untracked, oom;
};

/* ---- configuration ---- */

static void fl_conf_free(void *p)
{
	struct fl_conf *c = p;

	if (!c)
		return;
	free(c->path);
	free(c);
}

static void *fl_conf_new(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err,
			 size_t errlen)
{
	static const char *const keys[] = {"name",	 "file",	 "max_bytes", "keep",
					   "interval_s", "buffer_bytes", NULL};
	struct fl_conf *c = calloc(1, sizeof(*c));
	const struct rdm_ynode *v;
	const char *s;
	uint64_t u;

	if (!c) {
		snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
		return NULL;
	}
	if (n && rdm_ymap_check_keys(d, n, keys, err, errlen) < 0)
		goto err;
	if (!n || !(v = rdm_ymap_get(n, "file"))) {
		rdm_yerr(d, n, err, errlen, "stage flowlog needs file");
		goto err;
	}
	if (rdm_yget_str(d, v, &s, err, errlen) < 0)
		goto err;
	if (!*s || strlen(s) > FL_PATH_MAX) {
		rdm_yerr(d, v, err, errlen, "file: must be 1 to %d bytes", FL_PATH_MAX);
		goto err;
	}
	if (!(c->path = strdup(s))) {
		snprintf(err, errlen, "%s: out of memory", rdm_ydoc_name(d));
		goto err;
	}
	if (rdm_ymap_u64(d, n, "max_bytes", 4096, 1ull << 50, 64ull << 20, &c->max_bytes, err,
			 errlen) < 0 ||
	    rdm_ymap_u64(d, n, "buffer_bytes", 4096, 64ull << 20, 64ull << 10, &c->buffer_bytes,
			 err, errlen) < 0)
		goto err;
	if (rdm_ymap_u64(d, n, "keep", 0, 1000, 5, &u, err, errlen) < 0)
		goto err;
	c->keep = (unsigned)u;
	if (rdm_ymap_u64(d, n, "interval_s", 0, 7 * 86400, 60, &u, err, errlen) < 0)
		goto err;
	c->interval_ns = u * FL_SEC;
	return c;
err:
	fl_conf_free(c);
	return NULL;
}

/* ---- output file ---- */

/* Counts an output error and says so on stderr, at most once a second. */
static void fl_err(struct fl_rt *rt, const char *what, const char *path, int e)
{
	uint64_t now = rdm_now_ns();

	rt->write_errors++;
	if (rt->logged && now - rt->last_log_ns < FL_SEC)
		return;
	rt->logged = 1;
	rt->last_log_ns = now;
	fprintf(stderr,
		"flowlog w%d: %s %s: %s (write errors %" PRIu64 ", lines lost %" PRIu64 ")\n",
		rt->worker, what, path, strerror(e), rt->write_errors, rt->lines_lost);
}

/* Opens the worker's file for appending (emptied first when trunc). 0 or -errno; on
 * failure the error is counted and the next try waits a second. */
static int fl_open(struct fl_rt *rt, int trunc)
{
	struct stat st;
	int fd =
	    open(rt->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (trunc ? O_TRUNC : 0), 0640);

	if (fd < 0) {
		int e = errno;

		rt->retry_open_ns = rdm_now_ns() + FL_SEC;
		fl_err(rt, "open", rt->path, e);
		return -e;
	}
	rt->fd = fd;
	rt->regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	rt->file_size = rt->regular ? (uint64_t)st.st_size : 0;
	return 0;
}

/* Writes len bytes holding nlines whole lines. On failure the lines count as lost and
 * a regular file is cut back to where it was, so it never ends in half a line. */
static void fl_write(struct fl_rt *rt, const char *p, size_t len, uint64_t nlines)
{
	size_t done = 0;

	if (rt->fd < 0 && (rdm_now_ns() < rt->retry_open_ns || fl_open(rt, 0) < 0)) {
		rt->lines_lost += nlines;
		return;
	}
	while (done < len) {
		ssize_t w = write(rt->fd, p + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;

			/* Cut a partial write back off; if that fails, keep the size true. */
			if (done && rt->regular && ftruncate(rt->fd, (off_t)rt->file_size) < 0)
				rt->file_size += done;
			rt->lines_lost += nlines;
			fl_err(rt, "write", rt->path, e);
			return;
		}
		done += (size_t)w;
	}
	rt->bytes_written += len;
	if (rt->regular)
		rt->file_size += len;
}

static void fl_flush(struct fl_rt *rt)
{
	if (rt->buf_len)
		fl_write(rt, rt->buf, rt->buf_len, rt->buf_lines);
	rt->buf_len = 0;
	rt->buf_lines = 0;
}

/* Shifts FILE.i to FILE.(i+1) and FILE to FILE.1, then opens a fresh FILE. The buffer
 * must be empty. On a failed rename nothing further is moved (the next rename would
 * overwrite the file that stayed), the current file is kept, and the next try waits a
 * second. */
static void fl_rotate(struct fl_rt *rt)
{
	char from[PATH_MAX], to[PATH_MAX];
	int e;

	if (!rt->c->keep) {
		if (unlink(rt->path) < 0 && errno != ENOENT)
			goto fail;
	} else {
		for (unsigned i = rt->c->keep - 1; i >= 1; i--) {
			snprintf(from, sizeof(from), "%s.%u", rt->path, i);
			snprintf(to, sizeof(to), "%s.%u", rt->path, i + 1);
			if (rename(from, to) < 0 && errno != ENOENT)
				goto fail_named;
		}
		snprintf(to, sizeof(to), "%s.1", rt->path);
		if (rename(rt->path, to) < 0 && errno != ENOENT)
			goto fail;
	}
	rt->rotations++;
	close(rt->fd);
	rt->fd = -1;
	rt->file_size = 0;
	fl_open(rt, 1);
	return;
fail_named:
	e = errno;
	rt->retry_rotate_ns = rdm_now_ns() + FL_SEC;
	fl_err(rt, "rotate", from, e);
	return;
fail:
	e = errno;
	rt->retry_rotate_ns = rdm_now_ns() + FL_SEC;
	fl_err(rt, "rotate", rt->path, e);
}

/* Queues one finished line (len bytes, ending in '\n'), rotating first when the file
 * would grow past max_bytes. */
static void fl_put(struct fl_rt *rt, const char *line, size_t len)
{
	const struct fl_conf *c = rt->c;
	uint64_t pending = rt->file_size + rt->buf_len;

	if (rt->fd >= 0 && rt->regular && pending && pending + len > c->max_bytes &&
	    rdm_now_ns() >= rt->retry_rotate_ns) {
		fl_flush(rt);
		fl_rotate(rt);
	}
	if (rt->buf_len + len > c->buffer_bytes)
		fl_flush(rt);
	if (len > c->buffer_bytes) {
		fl_write(rt, line, len, 1);
		return;
	}
	memcpy(rt->buf + rt->buf_len, line, len);
	rt->buf_len += len;
	rt->buf_lines++;
}

/* ---- JSON ---- */

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

static const char *const reason_name[] = {
    [RDM_FLOW_END_TIMEOUT] = "timeout",
    [RDM_FLOW_END_CLOSED] = "closed",
    [RDM_FLOW_END_EVICTED] = "evicted",
    [RDM_FLOW_END_SHUTDOWN] = "shutdown",
};

static uint64_t fl_wall(const struct fl_rt *rt, uint64_t mono_ns)
{
	return (uint64_t)((int64_t)mono_ns + rt->wall_off);
}

/* Formats the line of flow f and queues it; reason is NULL for an update. */
static void fl_line(struct fl_rt *rt, const struct rdm_flow *f, const char *reason)
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
	fl_put(rt, b.p, b.len);
}

/* ---- flows ---- */

static void fl_flow_release(struct fl_flow *d)
{
	for (int i = 0; i < FS_COUNT; i++)
		free(d->s[i].p);
	free(d->hops);
	memset(d, 0, sizeof(*d));
}

/* The flow table's end callback: the flow's last line. */
static void fl_end(void *arg, struct rdm_flow *f, enum rdm_flow_end why)
{
	struct fl_rt *rt = arg;

	fl_line(rt, f, reason_name[why]);
	fl_flow_release(rdm_flow_data(f));
}

/* Makes b a copy of the n bytes at s. 0, or -ENOMEM with b unchanged. */
static int blob_set(struct fl_blob *b, const char *s, size_t n)
{
	char *p = NULL;

	if (b->len == n && (!n || !memcmp(b->p, s, n)))
		return 0;
	if (n && !(p = malloc(n)))
		return -ENOMEM;
	if (n)
		memcpy(p, s, n);
	free(b->p);
	b->p = p;
	b->len = (uint16_t)n;
	return 0;
}

/* Takes the state fields f carries into d (newer values win). */
static void fl_learn(struct fl_rt *rt, struct fl_flow *d, const struct rdm_frame *f)
{
	static const struct {
		uint32_t bit;
		int slot;
		size_t off;
	} strs[] = {
	    {RDM_F_TENANT, FS_TENANT, offsetof(struct rdm_frame, tenant)},
	    {RDM_F_USER, FS_USER, offsetof(struct rdm_frame, user)},
	    {RDM_F_APP_NAME, FS_APP, offsetof(struct rdm_frame, app_name)},
	    {RDM_F_CATEGORY, FS_CATEGORY, offsetof(struct rdm_frame, category)},
	    {RDM_F_HOST, FS_HOST, offsetof(struct rdm_frame, host)},
	    {RDM_F_RULE, FS_RULE, offsetof(struct rdm_frame, rule)},
	};
	uint32_t p = f->present;

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const struct rdm_str *s = (const void *)((const char *)f + strs[i].off);

		if (!(p & strs[i].bit))
			continue;
		if (blob_set(&d->s[strs[i].slot], s->p, s->len) < 0)
			rt->oom++;
		else
			d->present |= strs[i].bit;
	}
	if (p & RDM_F_GROUPS) {
		char g[RDM_MAX_GROUPS * (RDM_STR_MAX + 1)];
		size_t len = 0;
		int n = f->n_groups < RDM_MAX_GROUPS ? f->n_groups : RDM_MAX_GROUPS;

		for (int i = 0; i < n; i++) {
			g[len++] = (char)f->groups[i].len;
			memcpy(g + len, f->groups[i].p, f->groups[i].len);
			len += f->groups[i].len;
		}
		if (blob_set(&d->s[FS_GROUPS], g, len) < 0) {
			rt->oom++;
		} else {
			d->present |= RDM_F_GROUPS;
			d->n_groups = (uint8_t)n;
		}
	}
	if (p & RDM_F_APP_ID) {
		d->master_proto = f->master_proto;
		d->app_proto = f->app_proto;
	}
	if (p & RDM_F_CATEGORY)
		d->category_id = f->category_id;
	if (p & RDM_F_VERDICT) {
		d->verdict = f->verdict;
		d->rule_id = f->rule_id;
	}
	if (p & RDM_F_FLAGS)
		d->flags = f->flags;
	if (p & RDM_F_RISK)
		d->risk = f->risk;
	d->present |= p & (RDM_F_APP_ID | RDM_F_VERDICT | RDM_F_FLAGS | RDM_F_RISK);
}

/* The stats entry of hop from -> to, created when new; NULL when the flow already has
 * FL_MAX_HOP_PAIRS of them or memory ran out. */
static struct fl_hop *fl_hop(struct fl_rt *rt, struct fl_flow *d, uint32_t from, uint32_t to)
{
	struct fl_hop *h;

	for (int i = 0; i < d->n_hops; i++)
		if (d->hops[i].from == from && d->hops[i].to == to)
			return &d->hops[i];
	if (d->n_hops == FL_MAX_HOP_PAIRS) {
		rt->hops_untracked++;
		return NULL;
	}
	if (d->n_hops == d->cap_hops) {
		int cap = d->cap_hops ? d->cap_hops * 2 : 4;

		h = realloc(d->hops, (size_t)cap * sizeof(*h));
		if (!h) {
			rt->oom++;
			return NULL;
		}
		d->hops = h;
		d->cap_hops = (uint8_t)cap;
	}
	h = &d->hops[d->n_hops++];
	memset(h, 0, sizeof(*h));
	h->from = from;
	h->to = to;
	return h;
}

/* Adds the latency between each pair of consecutive hop timestamps of f. */
static void fl_hops(struct fl_rt *rt, struct fl_flow *d, const struct rdm_frame *f)
{
	int n = f->n_hops < RDM_MAX_HOPS ? f->n_hops : RDM_MAX_HOPS;

	if (!(f->present & RDM_F_HOPS))
		return;
	for (int i = 0; i + 1 < n; i++) {
		struct fl_hop *h = fl_hop(rt, d, f->hops[i].node, f->hops[i + 1].node);
		uint64_t a = f->hops[i].ns, b = f->hops[i + 1].ns, dt;

		if (b < a) {
			/* The clocks disagree (not PTP-synced): no latency to learn. */
			rt->clock_skew++;
			if (h)
				h->skew++;
			continue;
		}
		if (!h)
			continue;
		dt = b - a;
		if (!h->count || dt < h->min_ns)
			h->min_ns = dt;
		if (dt > h->max_ns)
			h->max_ns = dt;
		h->sum_ns += dt;
		h->count++;
	}
}

static void fl_update_one(void *arg, struct rdm_flow *f)
{
	struct fl_rt *rt = arg;
	struct fl_flow *d = rdm_flow_data(f);

	if (rt->now_ns < d->next_update_ns)
		return;
	fl_line(rt, f, NULL);
	d->next_update_ns = rt->now_ns + rt->c->interval_ns;
}

/* ---- stage ---- */

static void fl_deinit(void *p)
{
	struct fl_rt *rt = p;

	if (!rt)
		return;
	rt->now_ns = rdm_now_ns();
	/* Ends every flow with reason shutdown, through fl_end. */
	rdm_flowtab_free(rt->tab);
	rt->tab = NULL;
	if (rt->buf)
		fl_flush(rt);
	if (rt->fd >= 0)
		close(rt->fd);
	free(rt->buf);
	free(rt->line);
	free(rt->path);
	free(rt);
}

static void *fl_init(const void *conf, const struct rdm_stage_env *env)
{
	const struct fl_conf *c = conf;
	struct rdm_flow_conf fc = {0};
	struct fl_rt *rt = calloc(1, sizeof(*rt));
	int rc;

	if (!rt)
		return NULL;
	rt->c = c;
	rt->fd = -1;
	rt->worker = env->worker;
	if (env->flows)
		fc = *env->flows;
	if (env->worker > 0)
		rc = asprintf(&rt->path, "%s.w%d", c->path, env->worker);
	else
		rc = (rt->path = strdup(c->path)) ? 0 : -1;
	if (rc < 0) {
		rt->path = NULL;
		goto nomem;
	}
	rt->buf = malloc(c->buffer_bytes);
	rt->line = malloc(FL_LINE_MAX);
	if (!rt->buf || !rt->line)
		goto nomem;
	rt->tab = rdm_flowtab_new(&fc, sizeof(struct fl_flow), fl_end, rt);
	if (!rt->tab) {
		rc = errno;
		fl_deinit(rt);
		errno = rc;
		return NULL;
	}
	rt->wall_off = (int64_t)(rdm_wall_ns() - rdm_now_ns());
	/* A file that cannot be opened yet is counted and retried: the traffic matters more
	 * than its log. */
	fl_open(rt, 0);
	return rt;
nomem:
	fl_deinit(rt);
	errno = ENOMEM;
	return NULL;
}

static void fl_process(void *p, struct rdm_frame *const *fr, int n, int *verdict)
{
	struct fl_rt *rt = p;

	rt->now_ns = rdm_now_ns();
	for (int i = 0; i < n; i++) {
		const struct rdm_frame *f = fr[i];
		struct rdm_flow_key k;
		struct rdm_flow *fl;
		struct fl_flow *d;
		uint8_t tcp = 0;
		int dir, created;

		verdict[i] = RDM_STAGE_PASS;
		rt->frames++;
		if (f->present & RDM_F_FLOW_KEY)
			k = f->key;
		else if (!f->pkt || rdm_pkt_flow_key(f->pkt, f->pkt_len, &k) < 0) {
			rt->no_flow_key++;
			continue;
		}
		if (f->pkt && k.proto == IPPROTO_TCP)
			tcp = rdm_pkt_tcp_flags(f->pkt, f->pkt_len, &k);
		fl = rdm_flowtab_track(rt->tab, &k,
				       (f->present & RDM_F_FLOW_KEY)
					   ? rdm_frame_flow_hash(f, &f->key)
					   : rdm_flow_hash(&k),
				       f->pkt_len, tcp, rt->now_ns, &dir, &created);
		d = rdm_flow_data(fl);
		if (created) {
			rt->flows++;
			d->next_update_ns = rt->now_ns + rt->c->interval_ns;
		}
		fl_learn(rt, d, f);
		fl_hops(rt, d, f);
	}
	rdm_flowtab_expire(rt->tab, rt->now_ns, FL_EXPIRE_PROCESS);
	/* tick() flushes too; this keeps lines from waiting on a node that ticks rarely. */
	if (rt->buf_len &&
	    (rt->now_ns < rt->last_flush_ns || rt->now_ns - rt->last_flush_ns >= FL_SEC)) {
		rt->last_flush_ns = rt->now_ns;
		fl_flush(rt);
	}
}

static void fl_tick(void *p, uint64_t now_ns)
{
	struct fl_rt *rt = p;

	rt->now_ns = now_ns;
	rdm_flowtab_expire(rt->tab, now_ns, FL_EXPIRE_TICK);
	/* Periodic lines: a walk over the table, so once a second rather than every tick. */
	if (rt->c->interval_ns &&
	    (now_ns < rt->last_scan_ns || now_ns - rt->last_scan_ns >= FL_SEC)) {
		rt->last_scan_ns = now_ns;
		rdm_flowtab_foreach(rt->tab, fl_update_one, rt);
	}
	if (now_ns < rt->last_flush_ns || now_ns - rt->last_flush_ns >= FL_SEC) {
		rt->last_flush_ns = now_ns;
		fl_flush(rt);
	}
}

static void fl_report(void *p, rdm_stage_emit emit, void *arg)
{
	struct fl_rt *rt = p;
	struct rdm_flowtab_stats st;

	rdm_flowtab_get_stats(rt->tab, &st);
	emit(arg, "frames", rt->frames);
	emit(arg, "flows", rt->flows);
	emit(arg, "lines", rt->lines);
	emit(arg, "lines_update", rt->lines_update);
	emit(arg, "bytes_written", rt->bytes_written);
	emit(arg, "rotations", rt->rotations);
	emit(arg, "write_errors", rt->write_errors);
	emit(arg, "lines_lost", rt->lines_lost);
	emit(arg, "clock_skew", rt->clock_skew);
	emit(arg, "no_flow_key", rt->no_flow_key);
	emit(arg, "hops_untracked", rt->hops_untracked);
	emit(arg, "oom", rt->oom);
	emit(arg, "flows_active", st.flows);
	emit(arg, "flows_evicted", st.evicted);
	emit(arg, "flows_timeout", st.timeouts);
	emit(arg, "flows_closed", st.closed);
}

const struct rdm_stage_ops rdm_stage_flowlog = {
    .name = "flowlog",
    .conf_new = fl_conf_new,
    .conf_free = fl_conf_free,
    .init = fl_init,
    .deinit = fl_deinit,
    .process = fl_process,
    .report = fl_report,
    .tick = fl_tick,
};
