/* The read-only YAML DOM (lib/yaml.h): built from libyaml's events, with typed getters
 * that report "FILE:LINE:COL: message". */
#include "lib/yaml.h"
#include "lib/file.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Files larger than this are refused rather than read into memory. */
#define RDM_YMAX_FILE (16u << 20)

struct rdm_ynode {
	enum rdm_ykind kind;
	int line, col;
	int plain;		  /* scalar written without quotes */
	char *str;		  /* scalar text, NUL-terminated */
	size_t slen;		  /* scalar length (may hold NUL bytes) */
	struct rdm_ynode **items; /* sequence items, or mapping key, value, key, value... */
	size_t n, cap;
};

struct rdm_ydoc {
	char *name;
	struct rdm_ynode *root;
};

static void node_free(struct rdm_ynode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->n; i++)
		node_free(n->items[i]);
	free(n->items);
	free(n->str);
	free(n);
}

void rdm_ydoc_free(struct rdm_ydoc *d)
{
	if (!d)
		return;
	node_free(d->root);
	free(d->name);
	free(d);
}

static void sanitize(char *s)
{
	for (; *s; s++)
		if (iscntrl((unsigned char)*s))
			*s = '?';
}

static int verr(const char *name, int line, int col, char *err, size_t len, const char *fmt,
		va_list ap)
{
	if (!err || !len)
		return -EINVAL;
	int k;
	if (line > 0)
		k = snprintf(err, len, "%s:%d:%d: ", name, line, col);
	else
		k = snprintf(err, len, "%s: ", name);
	if (k >= 0 && (size_t)k < len)
		vsnprintf(err + k, len - (size_t)k, fmt, ap);
	sanitize(err);
	return -EINVAL;
}

static int perr(const char *name, int line, int col, char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int perr(const char *name, int line, int col, char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verr(name, line, col, err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Reports "FILE: out of memory"; returns -ENOMEM. */
static int oom(const char *name, char *err, size_t len)
{
	perr(name, 0, 0, err, len, "out of memory");
	return -ENOMEM;
}

int rdm_yerr(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err, size_t len,
	     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verr(d ? d->name : "?", n ? n->line : 0, n ? n->col : 0, err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Parser state while building a document. */
struct builder {
	struct rdm_ydoc *doc;
	struct rdm_ynode *stack[RDM_YMAX_DEPTH];
	int depth;
	size_t nodes; /* made so far (RDM_YMAX_NODES) */
	char *err;
	size_t errlen;
};

static int add_item(struct rdm_ynode *parent, struct rdm_ynode *child)
{
	if (parent->n == parent->cap) {
		size_t cap = parent->cap ? parent->cap * 2 : 8;
		struct rdm_ynode **items = realloc(parent->items, cap * sizeof(*items));
		if (!items)
			return -ENOMEM;
		parent->items = items;
		parent->cap = cap;
	}
	parent->items[parent->n++] = child;
	return 0;
}

static int same_scalar(const struct rdm_ynode *a, const struct rdm_ynode *b)
{
	return a->slen == b->slen && memcmp(a->str, b->str, a->slen) == 0;
}

/* Hangs n under the innermost open collection (or makes it the root). On failure n is
 * freed unless it was already attached. */
static int attach(struct builder *b, struct rdm_ynode *n)
{
	const char *name = b->doc->name;
	if (b->depth == 0) {
		b->doc->root = n;
		return 0;
	}
	struct rdm_ynode *parent = b->stack[b->depth - 1];
	int is_key = parent->kind == RDM_YMAP && parent->n % 2 == 0;
	if (++b->nodes > RDM_YMAX_NODES) {
		perr(name, n->line, n->col, b->err, b->errlen,
		     "more than %d values, keys and lists in one document: refused",
		     RDM_YMAX_NODES);
		node_free(n);
		return -EFBIG;
	}
	if (is_key && n->kind != RDM_YSCALAR) {
		perr(name, n->line, n->col, b->err, b->errlen, "mapping keys must be scalars");
		node_free(n);
		return -EINVAL;
	}
	if (add_item(parent, n) < 0) {
		node_free(n);
		return oom(name, b->err, b->errlen);
	}
	return 0;
}

/* Keys by content, then by where they stand. */
static int key_cmp(const void *x, const void *y)
{
	const struct rdm_ynode *a = *(const struct rdm_ynode *const *)x;
	const struct rdm_ynode *b = *(const struct rdm_ynode *const *)y;
	size_t n = a->slen < b->slen ? a->slen : b->slen;
	int d = memcmp(a->str, b->str, n);

	if (d)
		return d;
	if (a->slen != b->slen)
		return a->slen < b->slen ? -1 : 1;
	return a->line != b->line ? a->line - b->line : a->col - b->col;
}

/* A mapping is complete: refuses a key given twice, naming the first repeat in the
 * document. Sorting keeps it n log n: a file of 100,000 keys is checked in milliseconds,
 * where comparing each key with every earlier one took seconds to minutes. */
static int check_dup_keys(struct builder *b, const struct rdm_ynode *map)
{
	size_t nk = map->n / 2;
	const struct rdm_ynode **k, *dup = NULL, *first = NULL;

	if (nk < 2)
		return 0;
	k = malloc(nk * sizeof(*k));
	if (!k)
		return oom(b->doc->name, b->err, b->errlen);
	for (size_t i = 0; i < nk; i++)
		k[i] = map->items[2 * i];
	qsort(k, nk, sizeof(*k), key_cmp);
	/* In each run of equal keys the first is where the key was first given and the
	 * second is its first repeat; report the repeat that comes first in the file. */
	for (size_t i = 1; i < nk; i++)
		if (same_scalar(k[i - 1], k[i]) && (i < 2 || !same_scalar(k[i - 2], k[i])) &&
		    (!dup || k[i]->line < dup->line ||
		     (k[i]->line == dup->line && k[i]->col < dup->col))) {
			dup = k[i];
			first = k[i - 1];
		}
	free(k);
	if (!dup)
		return 0;
	return perr(b->doc->name, dup->line, dup->col, b->err, b->errlen,
		    "duplicate key '%s' (first at line %d)", dup->str, first->line);
}

static struct rdm_ynode *node_new(enum rdm_ykind kind, const yaml_mark_t *m)
{
	struct rdm_ynode *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->kind = kind;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	return n;
}

/* Refuses anchors and explicit tags on a node event. */
static int check_props(struct builder *b, const yaml_event_t *ev, const yaml_char_t *anchor,
		       const yaml_char_t *tag)
{
	int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
	if (anchor)
		return perr(b->doc->name, line, col, b->err, b->errlen,
			    "anchors are not supported ('&%s')", (const char *)anchor);
	if (tag)
		return perr(b->doc->name, line, col, b->err, b->errlen,
			    "tags are not supported ('%s')", (const char *)tag);
	return 0;
}

/* Handles one event; 1 at the end of the stream, 0 to go on, or a negative errno. */
static int on_event(struct builder *b, const yaml_event_t *ev, int *docs)
{
	const char *name = b->doc->name;
	int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
	struct rdm_ynode *n;
	int rc;

	switch (ev->type) {
	case YAML_STREAM_START_EVENT:
	case YAML_DOCUMENT_END_EVENT:
	case YAML_NO_EVENT:
		return 0;
	case YAML_STREAM_END_EVENT:
		return 1;
	case YAML_DOCUMENT_START_EVENT:
		if (++*docs > 1)
			return perr(name, line, col, b->err, b->errlen,
				    "only one YAML document is allowed");
		return 0;
	case YAML_ALIAS_EVENT:
		return perr(name, line, col, b->err, b->errlen, "aliases are not supported ('*%s')",
			    (const char *)ev->data.alias.anchor);
	case YAML_SCALAR_EVENT:
		rc = check_props(b, ev, ev->data.scalar.anchor, ev->data.scalar.tag);
		if (rc)
			return rc;
		n = node_new(RDM_YSCALAR, &ev->start_mark);
		if (n) {
			n->str = malloc(ev->data.scalar.length + 1);
			if (!n->str) {
				free(n);
				n = NULL;
			}
		}
		if (!n)
			return oom(name, b->err, b->errlen);
		memcpy(n->str, ev->data.scalar.value, ev->data.scalar.length);
		n->str[ev->data.scalar.length] = '\0';
		n->slen = ev->data.scalar.length;
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		return attach(b, n);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (ev->type == YAML_SEQUENCE_START_EVENT)
			rc = check_props(b, ev, ev->data.sequence_start.anchor,
					 ev->data.sequence_start.tag);
		else
			rc = check_props(b, ev, ev->data.mapping_start.anchor,
					 ev->data.mapping_start.tag);
		if (rc)
			return rc;
		if (b->depth == RDM_YMAX_DEPTH)
			return perr(name, line, col, b->err, b->errlen,
				    "nesting is deeper than %d levels", RDM_YMAX_DEPTH);
		n = node_new(ev->type == YAML_SEQUENCE_START_EVENT ? RDM_YSEQ : RDM_YMAP,
			     &ev->start_mark);
		if (!n)
			return oom(name, b->err, b->errlen);
		rc = attach(b, n);
		if (rc)
			return rc;
		b->stack[b->depth++] = n;
		return 0;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		if (b->depth > 0)
			b->depth--;
		if (ev->type == YAML_MAPPING_END_EVENT)
			return check_dup_keys(b, b->stack[b->depth]);
		return 0;
	}
	return 0;
}

static void syntax_error(struct builder *b, const yaml_parser_t *p)
{
	const char *problem = p->problem ? p->problem : "malformed YAML";
	const yaml_mark_t *m = &p->problem_mark;

	if (p->error == YAML_MEMORY_ERROR) {
		oom(b->doc->name, b->err, b->errlen);
		return;
	}
	if (p->error == YAML_READER_ERROR) {
		/* Reader errors carry a byte offset, not a mark. */
		perr(b->doc->name, 0, 0, b->err, b->errlen, "%s at byte %zu", problem,
		     p->problem_offset);
		return;
	}
	if (p->context)
		perr(b->doc->name, (int)m->line + 1, (int)m->column + 1, b->err, b->errlen,
		     "%s (%s at line %d column %d)", problem, p->context,
		     (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
	else
		perr(b->doc->name, (int)m->line + 1, (int)m->column + 1, b->err, b->errlen, "%s",
		     problem);
}

static struct rdm_ydoc *parse_buf(const char *name, const char *text, size_t n, char *err,
				  size_t errlen)
{
	struct builder b = {.err = err, .errlen = errlen};
	yaml_parser_t p;
	int docs = 0, rc = 0;

	b.doc = calloc(1, sizeof(*b.doc));
	if (b.doc)
		b.doc->name = strdup(name);
	if (!b.doc || !b.doc->name) {
		rdm_ydoc_free(b.doc);
		errno = -oom(name, err, errlen);
		return NULL;
	}
	if (!yaml_parser_initialize(&p)) {
		rdm_ydoc_free(b.doc);
		errno = -oom(name, err, errlen);
		return NULL;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)text, n);
	while (rc == 0) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev)) {
			syntax_error(&b, &p);
			rc = p.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
			break;
		}
		rc = on_event(&b, &ev, &docs);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&p);
	if (rc < 0) {
		rdm_ydoc_free(b.doc);
		errno = -rc;
		return NULL;
	}
	return b.doc;
}

struct rdm_ydoc *rdm_ydoc_parse_string(const char *name, const char *text, char *err, size_t errlen)
{
	return parse_buf(name, text, strlen(text), err, errlen);
}

struct rdm_ydoc *rdm_ydoc_load(const char *path, char *err, size_t errlen)
{
	size_t n = 0;
	char *buf = rdm_read_regular(path, RDM_YMAX_FILE, &n);
	struct rdm_ydoc *d;
	int e;

	if (!buf) {
		e = errno;
		if (e == EFBIG)
			perr(path, 0, 0, err, errlen, "file is larger than %u bytes",
			     RDM_YMAX_FILE);
		else
			perr(path, 0, 0, err, errlen, "%s", rdm_file_why(e));
		errno = e;
		return NULL;
	}
	d = parse_buf(path, buf, n, err, errlen);
	e = errno;
	free(buf);
	errno = e;
	return d;
}

const struct rdm_ynode *rdm_ydoc_root(const struct rdm_ydoc *d)
{
	return d ? d->root : NULL;
}

const char *rdm_ydoc_name(const struct rdm_ydoc *d)
{
	return d ? d->name : NULL;
}

enum rdm_ykind rdm_ynode_kind(const struct rdm_ynode *n)
{
	return n->kind;
}

int rdm_ynode_line(const struct rdm_ynode *n)
{
	return n->line;
}

int rdm_ynode_col(const struct rdm_ynode *n)
{
	return n->col;
}

const char *rdm_ykind_name(enum rdm_ykind kind)
{
	switch (kind) {
	case RDM_YSCALAR:
		return "scalar";
	case RDM_YMAP:
		return "mapping";
	case RDM_YSEQ:
		return "sequence";
	}
	return "?";
}

const char *rdm_ynode_scalar(const struct rdm_ynode *n)
{
	return n && n->kind == RDM_YSCALAR ? n->str : NULL;
}

int rdm_ynode_is_null(const struct rdm_ynode *n)
{
	if (!n || n->kind != RDM_YSCALAR || !n->plain)
		return 0;
	return !strcmp(n->str, "") || !strcmp(n->str, "~") || !strcmp(n->str, "null") ||
	       !strcmp(n->str, "Null") || !strcmp(n->str, "NULL");
}

size_t rdm_ymap_size(const struct rdm_ynode *map)
{
	return map && map->kind == RDM_YMAP ? map->n / 2 : 0;
}

const struct rdm_ynode *rdm_ymap_key(const struct rdm_ynode *map, size_t i)
{
	return i < rdm_ymap_size(map) ? map->items[2 * i] : NULL;
}

const struct rdm_ynode *rdm_ymap_value(const struct rdm_ynode *map, size_t i)
{
	return i < rdm_ymap_size(map) ? map->items[2 * i + 1] : NULL;
}

const struct rdm_ynode *rdm_ymap_get(const struct rdm_ynode *map, const char *key)
{
	size_t n = rdm_ymap_size(map), klen = strlen(key);
	for (size_t i = 0; i < n; i++) {
		const struct rdm_ynode *k = map->items[2 * i];
		if (k->slen == klen && !memcmp(k->str, key, klen))
			return map->items[2 * i + 1];
	}
	return NULL;
}

size_t rdm_yseq_size(const struct rdm_ynode *seq)
{
	return seq && seq->kind == RDM_YSEQ ? seq->n : 0;
}

const struct rdm_ynode *rdm_yseq_item(const struct rdm_ynode *seq, size_t i)
{
	return i < rdm_yseq_size(seq) ? seq->items[i] : NULL;
}

/* How n reads in "got ..." messages. */
static int describe(const struct rdm_ynode *n, char *buf, size_t len)
{
	if (n->kind != RDM_YSCALAR)
		return snprintf(buf, len, "a %s", rdm_ykind_name(n->kind));
	if (rdm_ynode_is_null(n))
		return snprintf(buf, len, "null");
	if (n->slen > 40)
		return snprintf(buf, len, "'%.37s...'", n->str);
	return snprintf(buf, len, "'%s'", n->str);
}

/* rdm_yerr with "KEY: " in front of the message when key is not NULL. */
static int kerr(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *key, char *err,
		size_t len, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int kerr(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *key, char *err,
		size_t len, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (key)
		return rdm_yerr(d, n, err, len, "%s: %s", key, msg);
	return rdm_yerr(d, n, err, len, "%s", msg);
}

int rdm_yexpect(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *what,
		enum rdm_ykind kind, char *err, size_t len)
{
	char got[64];
	if (n->kind == kind)
		return 0;
	describe(n, got, sizeof(got));
	return kerr(d, n, what, err, len, "expected a %s, got %s", rdm_ykind_name(kind), got);
}

static int get_str(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *key,
		   const char **out, char *err, size_t len)
{
	char got[64];
	if (n->kind != RDM_YSCALAR || rdm_ynode_is_null(n)) {
		describe(n, got, sizeof(got));
		return kerr(d, n, key, err, len, "expected a string, got %s", got);
	}
	if (strlen(n->str) != n->slen)
		return kerr(d, n, key, err, len, "string contains a NUL byte");
	*out = n->str;
	return 0;
}

static int get_u64(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *key,
		   uint64_t min, uint64_t max, uint64_t *out, char *err, size_t len)
{
	char got[64];
	uint64_t v = 0;
	int overflow = 0;

	describe(n, got, sizeof(got));
	if (n->kind != RDM_YSCALAR || n->slen == 0 || strlen(n->str) != n->slen)
		return kerr(d, n, key, err, len, "expected an integer, got %s", got);
	for (const char *p = n->str; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return kerr(d, n, key, err, len, "expected a non-negative integer, got %s",
				    got);
		unsigned digit = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - digit) / 10)
			overflow = 1;
		else
			v = v * 10 + digit;
	}
	if (overflow || v < min || v > max)
		return kerr(d, n, key, err, len, "%.40s%s is out of range (%llu..%llu)", n->str,
			    n->slen > 40 ? "..." : "", (unsigned long long)min,
			    (unsigned long long)max);
	*out = v;
	return 0;
}

static int get_double(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *key,
		      double min, double max, double *out, char *err, size_t len)
{
	char got[64], *end;
	double v;

	describe(n, got, sizeof(got));
	if (n->kind != RDM_YSCALAR || strlen(n->str) != n->slen)
		return kerr(d, n, key, err, len, "expected a number, got %s", got);
	const char *s = n->str;
	/* strtod would also take signs, spaces, hex, "inf" and "nan". */
	if (!isdigit((unsigned char)s[0]) && !(s[0] == '.' && isdigit((unsigned char)s[1])))
		return kerr(d, n, key, err, len, "expected a non-negative number, got %s", got);
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p) && !strchr(".eE+-", *p))
			return kerr(d, n, key, err, len, "expected a number, got %s", got);
	errno = 0;
	v = strtod(s, &end);
	if (*end || end == s)
		return kerr(d, n, key, err, len, "expected a number, got %s", got);
	if (!isfinite(v) || errno == ERANGE || v < min || v > max)
		return kerr(d, n, key, err, len, "%.40s%s is out of range (%g..%g)", n->str,
			    n->slen > 40 ? "..." : "", min, max);
	*out = v;
	return 0;
}

static int get_bool(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *key, int *out,
		    char *err, size_t len)
{
	char got[64];
	if (n->kind == RDM_YSCALAR) {
		if (!strcasecmp(n->str, "true") || !strcasecmp(n->str, "yes")) {
			*out = 1;
			return 0;
		}
		if (!strcasecmp(n->str, "false") || !strcasecmp(n->str, "no")) {
			*out = 0;
			return 0;
		}
	}
	describe(n, got, sizeof(got));
	return kerr(d, n, key, err, len, "expected true or false, got %s", got);
}

int rdm_yget_str(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char **out, char *err,
		 size_t len)
{
	return get_str(d, n, NULL, out, err, len);
}

int rdm_yget_u64(const struct rdm_ydoc *d, const struct rdm_ynode *n, uint64_t min, uint64_t max,
		 uint64_t *out, char *err, size_t len)
{
	return get_u64(d, n, NULL, min, max, out, err, len);
}

int rdm_yget_double(const struct rdm_ydoc *d, const struct rdm_ynode *n, double min, double max,
		    double *out, char *err, size_t len)
{
	return get_double(d, n, NULL, min, max, out, err, len);
}

int rdm_yget_bool(const struct rdm_ydoc *d, const struct rdm_ynode *n, int *out, char *err,
		  size_t len)
{
	return get_bool(d, n, NULL, out, err, len);
}

int rdm_ymap_str(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key,
		 const char *def, const char **out, char *err, size_t len)
{
	const struct rdm_ynode *v = rdm_ymap_get(map, key);
	if (!v) {
		*out = def;
		return 0;
	}
	return get_str(d, v, key, out, err, len);
}

int rdm_ymap_u64(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key,
		 uint64_t min, uint64_t max, uint64_t def, uint64_t *out, char *err, size_t len)
{
	const struct rdm_ynode *v = rdm_ymap_get(map, key);
	if (!v) {
		*out = def;
		return 0;
	}
	return get_u64(d, v, key, min, max, out, err, len);
}

int rdm_ymap_double(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key,
		    double min, double max, double def, double *out, char *err, size_t len)
{
	const struct rdm_ynode *v = rdm_ymap_get(map, key);
	if (!v) {
		*out = def;
		return 0;
	}
	return get_double(d, v, key, min, max, out, err, len);
}

int rdm_ymap_bool(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key, int def,
		  int *out, char *err, size_t len)
{
	const struct rdm_ynode *v = rdm_ymap_get(map, key);
	if (!v) {
		*out = def;
		return 0;
	}
	return get_bool(d, v, key, out, err, len);
}

int rdm_ymap_check_keys(const struct rdm_ydoc *d, const struct rdm_ynode *map,
			const char *const allowed[], char *err, size_t len)
{
	size_t n = rdm_ymap_size(map), na = 0;

	while (allowed[na])
		na++;
	for (size_t i = 0; i < n; i++) {
		const struct rdm_ynode *k = map->items[2 * i];
		size_t j;
		for (j = 0; j < na; j++)
			if (strlen(allowed[j]) == k->slen && !memcmp(allowed[j], k->str, k->slen))
				break;
		if (j < na)
			continue;
		const char *hint = rdm_yclosest(k->str, allowed, na, 2);
		if (hint)
			return rdm_yerr(d, k, err, len, "unknown key '%s' (did you mean '%s'?)",
					k->str, hint);
		return rdm_yerr(d, k, err, len, "unknown key '%s'", k->str);
	}
	return 0;
}

size_t rdm_yedit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	/* Three rows of the optimal-string-alignment table: i-2, i-1 and i. */
	size_t *m = malloc(3 * (lb + 1) * sizeof(*m));
	if (!m)
		return SIZE_MAX;
	size_t *pp = m, *prev = m + lb + 1, *cur = m + 2 * (lb + 1);

	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (prev[j - 1] + cost < v)
				v = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    pp[j - 2] + 1 < v)
				v = pp[j - 2] + 1;
			cur[j] = v;
		}
		size_t *t = pp;
		pp = prev;
		prev = cur;
		cur = t;
	}
	size_t r = prev[lb];
	free(m);
	return r;
}

const char *rdm_yclosest(const char *word, const char *const cands[], size_t n, size_t maxdist)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX, wl = strlen(word);

	for (size_t i = 0; i < n; i++) {
		size_t dist = rdm_yedit_distance(word, cands[i]);
		if (dist <= maxdist && dist < wl && dist < best_d) {
			best = cands[i];
			best_d = dist;
		}
	}
	return best;
}

int rdm_ystrdup(const struct rdm_ydoc *d, const char *s, char **out, char *err, size_t len)
{
	*out = strdup(s);
	if (*out)
		return 0;
	rdm_yerr(d, NULL, err, len, "out of memory");
	return -ENOMEM;
}
