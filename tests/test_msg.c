/* The control channel's messages (lib/msg.c): the RDMESH/1 text format on its own
 * (build, parse, what each refuses), then over a real mutual-TLS connection on loopback
 * (rdm_msg_send, rdm_msg_recv and how a bad message, a timeout and a close come out). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/certs.h"
#include "lib/msg.h"
#include "lib/tls.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* 1 when every byte of *m is zero: what a failed parse or recv must leave. */
static int zeroed(const struct rdm_msg *m)
{
	static const struct rdm_msg zero;

	return !memcmp(m, &zero, sizeof(zero));
}

/* Parses len bytes at data into *m, asserting success. */
static void parse_ok(const void *data, size_t len, struct rdm_msg *m)
{
	char err[256] = "";
	int rc = rdm_msg_parse(data, len, m, err, sizeof(err));

	cr_assert_eq(rc, 0, "parse gave %d (%s)", rc, err);
}

/* Parses len bytes at data, asserting -EPROTO, a reason containing want (when not NULL),
 * and a zeroed *m that rdm_msg_free takes; m starts as garbage so zeroing is checked. */
static void parse_bad_n(const void *data, size_t len, const char *want, const char *what)
{
	struct rdm_msg m;
	char err[256] = "";
	int rc;

	memset(&m, 0xa5, sizeof(m));
	rc = rdm_msg_parse(data, len, &m, err, sizeof(err));
	cr_assert_eq(rc, -EPROTO, "%s: parse gave %d (%s)", what, rc, err);
	cr_assert(err[0], "%s: no reason", what);
	cr_assert(!strchr(err, '\n'), "%s: reason is not one line: %s", what, err);
	if (want)
		cr_assert(strstr(err, want), "%s: reason '%s' lacks '%s'", what, err, want);
	cr_assert(zeroed(&m), "%s: *m not zeroed", what);
	rdm_msg_free(&m);
	rdm_msg_free(&m);
}

static void parse_bad(const char *text, const char *want)
{
	parse_bad_n(text, strlen(text), want, text);
}

/* Builds a message, asserting success, and parses it back into *m. */
static void round_trip(const char *type, uint64_t epoch, const char *const *kv, const void *body,
		       size_t body_len, struct rdm_msg *m)
{
	size_t len = 0;
	char *b = rdm_msg_build(type, epoch, kv, body, body_len, &len);

	cr_assert_not_null(b, "build %s: %s", type, strerror(errno));
	parse_ok(b, len, m);
	free(b);
}

/* Asserts that build refuses with EINVAL. */
static void build_bad(const char *type, uint64_t epoch, const char *const *kv, const char *what)
{
	size_t len = 12345;
	char *b;

	errno = 0;
	b = rdm_msg_build(type, epoch, kv, "x", 1, &len);
	cr_assert_null(b, "%s: built", what);
	cr_assert_eq(errno, EINVAL, "%s: errno %d", what, errno);
	free(b);
}

/* ---- round trips ---- */

Test(msg, round_trip_headers_in_order_and_binary_body)
{
	/* clang-format off */ /* key, value pairs */
	static const char *const kv[] = {"replicas", "dpi-1 dpi-3",
					 "heartbeat_ms", "500",
					 "note", "a: b: c", /* ": " inside a value */
					 "empty", "",
					 "x_9", "  leading spaces kept",
					 "utf8", "caf\xc3\xa9",
					 NULL};
	/* clang-format on */
	uint8_t body[256 + 8];
	struct rdm_msg m;

	/* Every byte value, NUL and '\n' included, then an empty line and a header-like line. */
	for (int i = 0; i < 256; i++)
		body[i] = (uint8_t)i;
	memcpy(body + 256, "\n\nk: v\n", 8);
	round_trip("assign", 7, kv, body, sizeof(body), &m);
	cr_assert_str_eq(m.type, "assign");
	cr_assert_eq(m.epoch, 7);
	cr_assert_eq(m.n_hdr, 6);
	for (int i = 0; i < 6; i++) {
		cr_assert_str_eq(m.key[i], kv[2 * i], "key %d", i);
		cr_assert_str_eq(m.value[i], kv[2 * i + 1], "value %d", i);
	}
	cr_assert_eq(m.body_len, sizeof(body));
	cr_assert_eq(memcmp(m.body, body, sizeof(body)), 0);
	cr_assert_eq(m.body[m.body_len], 0, "body not NUL-terminated");
	rdm_msg_free(&m);
	cr_assert(zeroed(&m));
}

Test(msg, round_trip_empty_body_and_no_headers)
{
	static const char *const none[] = {NULL};
	struct rdm_msg m;
	size_t len = 0;
	char *b;

	/* The exact bytes: a first line and the empty line that ends an empty header. */
	b = rdm_msg_build("hello", 1, NULL, NULL, 0, &len);
	cr_assert_not_null(b);
	cr_assert_eq(len, strlen("RDMESH/1 hello 1\n\n"));
	cr_assert_eq(memcmp(b, "RDMESH/1 hello 1\n\n", len), 0, "%.*s", (int)len, b);
	parse_ok(b, len, &m);
	free(b);
	cr_assert_str_eq(m.type, "hello");
	cr_assert_eq(m.epoch, 1);
	cr_assert_eq(m.n_hdr, 0);
	cr_assert_not_null(m.body);
	cr_assert_eq(m.body_len, 0);
	cr_assert_str_eq(m.body, "");
	rdm_msg_free(&m);

	/* An empty kv list and a body pointer with length 0 are the same message. */
	round_trip("heartbeat", 2, none, "ignored", 0, &m);
	cr_assert_str_eq(m.type, "heartbeat");
	cr_assert_eq(m.n_hdr, 0);
	cr_assert_eq(m.body_len, 0);
	rdm_msg_free(&m);

	/* A body with no header lines, and one that is only newlines. */
	round_trip("reply", 3, NULL, "\nline 1\nline 2\n", 15, &m);
	cr_assert_eq(m.n_hdr, 0);
	cr_assert_eq(m.body_len, 15);
	cr_assert_eq(memcmp(m.body, "\nline 1\nline 2\n", 15), 0);
	rdm_msg_free(&m);
	round_trip("reply", 3, NULL, "\n\n\n", 3, &m);
	cr_assert_eq(m.body_len, 3);
	cr_assert_str_eq(m.body, "\n\n\n");
	rdm_msg_free(&m);
}

Test(msg, every_type_of_the_protocol_and_limits_of_type)
{
	static const char *const types[] = {"hello",	 "assign",	    "applied",
					    "heartbeat", "request",	    "reply",
					    "a",	 "snake_case_type", "_"};
	struct rdm_msg m;

	cr_assert_eq(strlen("snake_case_type"), RDM_MSG_TYPE_MAX);
	for (size_t i = 0; i < N(types); i++) {
		round_trip(types[i], i, NULL, NULL, 0, &m);
		cr_assert_str_eq(m.type, types[i]);
		cr_assert_eq(m.epoch, i);
		rdm_msg_free(&m);
	}
	build_bad("", 1, NULL, "empty type");
	build_bad("HELLO", 1, NULL, "uppercase type");
	build_bad("Hello", 1, NULL, "capitalised type");
	build_bad("hel-lo", 1, NULL, "type with '-'");
	build_bad("hello1", 1, NULL, "type with a digit");
	build_bad("hel lo", 1, NULL, "type with a space");
	build_bad("hello\n", 1, NULL, "type with a newline");
	build_bad("snake_case_types", 1, NULL, "16-character type");
}

Test(msg, get_present_and_absent)
{
	static const char *const kv[] = {"cmd", "scale", "args", "dpi 3", "node", "", NULL};
	struct rdm_msg m, z;

	round_trip("request", 9, kv, NULL, 0, &m);
	cr_assert_str_eq(rdm_msg_get(&m, "cmd"), "scale");
	cr_assert_str_eq(rdm_msg_get(&m, "args"), "dpi 3");
	cr_assert_str_eq(rdm_msg_get(&m, "node"), ""); /* present, empty: not NULL */
	cr_assert_null(rdm_msg_get(&m, "status"));
	cr_assert_null(rdm_msg_get(&m, "cm"));	 /* a prefix of a key */
	cr_assert_null(rdm_msg_get(&m, "cmdx")); /* a key plus more */
	cr_assert_null(rdm_msg_get(&m, "CMD"));	 /* keys are case-sensitive */
	cr_assert_null(rdm_msg_get(&m, ""));
	cr_assert_null(rdm_msg_get(&m, "scale")); /* a value is not a key */
	rdm_msg_free(&m);
	memset(&z, 0, sizeof(z));
	cr_assert_null(rdm_msg_get(&z, "cmd"));
}

Test(msg, parse_copies_its_input)
{
	char text[] = "RDMESH/1 applied 4\nresult: ok\n\nbody";
	struct rdm_msg m;

	parse_ok(text, strlen(text), &m);
	memset(text, 'Z', strlen(text));
	cr_assert_str_eq(m.type, "applied");
	cr_assert_str_eq(rdm_msg_get(&m, "result"), "ok");
	cr_assert_eq(m.body_len, 4);
	cr_assert_str_eq(m.body, "body");
	rdm_msg_free(&m);
}

/* ---- epochs ---- */

Test(msg, epoch_zero_and_int64_max)
{
	struct rdm_msg m;
	size_t len;
	char *b;

	round_trip("hello", 0, NULL, NULL, 0, &m);
	cr_assert_eq(m.epoch, 0);
	rdm_msg_free(&m);
	round_trip("assign", INT64_MAX, NULL, NULL, 0, &m);
	cr_assert_eq(m.epoch, (uint64_t)INT64_MAX);
	rdm_msg_free(&m);
	parse_ok("RDMESH/1 hello 9223372036854775807\n\n", 36, &m);
	cr_assert_eq(m.epoch, (uint64_t)INT64_MAX);
	rdm_msg_free(&m);

	/* Above INT64_MAX: refused by build... */
	errno = 0;
	b = rdm_msg_build("assign", (uint64_t)INT64_MAX + 1, NULL, NULL, 0, &len);
	cr_assert_null(b);
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	b = rdm_msg_build("assign", UINT64_MAX, NULL, NULL, 0, &len);
	cr_assert_null(b);
	cr_assert_eq(errno, EINVAL);
	/* ...and by parse, whether or not it fits 64 bits. */
	parse_bad("RDMESH/1 assign 9223372036854775808\n\n", "epoch");
	parse_bad("RDMESH/1 assign 18446744073709551615\n\n", "epoch");
	parse_bad("RDMESH/1 assign 18446744073709551616\n\n", "epoch");
	parse_bad("RDMESH/1 assign 99999999999999999999999999\n\n", "epoch");
}

/* ---- first lines ---- */

Test(msg, other_protocol_version_names_both)
{
	parse_bad("RDMESH/2 hello 1\n\n", "'RDMESH/2'");
	parse_bad("RDMESH/2 hello 1\n\n", "RDMESH/1");
	parse_bad("RDMESH/10 hello 1\n\n", "'RDMESH/10'");
	parse_bad("RDMESH/0 hello 1\nk: v\n\nbody", "'RDMESH/0'");
	parse_bad("rdmesh/1 hello 1\n\n", "'rdmesh/1'");
	parse_bad("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "protocol");
	/* What is quoted from the peer stays printable, and short. */
	{
		const char bin[] = "\x01\x02\x1b[31mRDMESH\x7f\xff\xfe/9 hello 1\n\n";
		char err[256];
		struct rdm_msg m;

		cr_assert_eq(rdm_msg_parse(bin, sizeof(bin) - 1, &m, err, sizeof(err)), -EPROTO);
		for (const char *q = err; *q; q++)
			cr_assert((unsigned char)*q >= 0x20 && (unsigned char)*q < 0x7f,
				  "unprintable byte in '%s'", err);
		cr_assert(strstr(err, RDM_MSG_PROTO), "%s", err);
	}
	{
		char text[4096];
		char err[256];
		struct rdm_msg m;

		memset(text, 'A', sizeof(text));
		text[sizeof(text) - 2] = '\n';
		text[sizeof(text) - 1] = '\n';
		cr_assert_eq(rdm_msg_parse(text, sizeof(text), &m, err, sizeof(err)), -EPROTO);
		cr_assert_lt(strlen(err), 120, "%s", err);
		cr_assert(strstr(err, RDM_MSG_PROTO), "%s", err);
	}
}

Test(msg, garbage_first_lines_refused)
{
	static const char *const bad[] = {
	    "\n",
	    "\n\n",
	    "RDMESH/1\n\n",
	    "RDMESH/1 \n\n",
	    "RDMESH/1 hello\n\n",
	    "RDMESH/1 hello \n\n",
	    "RDMESH/1 hello x1\n\n",
	    "RDMESH/1 hello 1x\n\n",
	    "RDMESH/1 hello 0x10\n\n",
	    "RDMESH/1 hello 1 2\n\n",
	    "RDMESH/1 hello 1 \n\n",
	    "RDMESH/1 hello +1\n\n",
	    "RDMESH/1 hello -1\n\n",
	    "RDMESH/1 hello -0\n\n",
	    "RDMESH/1 hello  1\n\n",
	    "RDMESH/1  hello 1\n\n",
	    "RDMESH/1 hello 1\r\n\r\n",
	    "RDMESH/1 HELLO 1\n\n",
	    "RDMESH/1 Hello 1\n\n",
	    "RDMESH/1 hEllo 1\n\n",
	    "RDMESH/1 hello1 1\n\n",
	    "RDMESH/1 hel-lo 1\n\n",
	    "RDMESH/1 snake_case_types 1\n\n",		      /* 16 characters */
	    "RDMESH/1 a_much_longer_type_than_allowed 1\n\n", /* 34 characters */
	    " RDMESH/1 hello 1\n\n",
	    "RDMESH/1\thello 1\n\n",
	};

	/* The empty message, and a first line with no newline at all. */
	parse_bad_n("", 0, NULL, "empty message");
	parse_bad("RDMESH/1 hello 1", NULL);
	parse_bad("RDMESH/1 hello", NULL);
	for (size_t i = 0; i < N(bad); i++)
		parse_bad(bad[i], NULL);
	/* The reasons say what is wrong. */
	parse_bad("RDMESH/1 hello\n\n", "epoch");
	parse_bad("RDMESH/1 hello x\n\n", "epoch");
	parse_bad("RDMESH/1 hello -1\n\n", "epoch");
	parse_bad("RDMESH/1 HELLO 1\n\n", "type");
	parse_bad("RDMESH/1 snake_case_types 1\n\n", "type");
	/* Our version without a type is not "another version". */
	parse_bad("RDMESH/1\n\n", "no message type");
	parse_bad("RDMESH/1", "no first line");
	/* No bytes at all may come as a NULL pointer. */
	parse_bad_n(NULL, 0, "no first line", "NULL, 0");
}

Test(msg, nul_byte_in_first_line_refused)
{
	static const char a[] = "RDMESH/1 hello 1\0junk\n\n";
	static const char b[] = "RDMESH/1 hello 1\0\n\n";
	static const char c[] = "RDMESH/1\0hello 1\n\n";

	parse_bad_n(a, sizeof(a) - 1, "first line: NUL", "NUL then junk after the epoch");
	parse_bad_n(b, sizeof(b) - 1, "first line: NUL", "NUL after the epoch");
	parse_bad_n(c, sizeof(c) - 1, "first line: NUL", "NUL after the version");
}

/* ---- header lines ---- */

Test(msg, bad_header_lines_refused_by_parse)
{
	static const char *const bad[] = {
	    "RDMESH/1 hello 1\nkey value\n\n",
	    "RDMESH/1 hello 1\nkey:value\n\n",
	    "RDMESH/1 hello 1\nkey :value\n\n",
	    "RDMESH/1 hello 1\nkey\n\n",
	    "RDMESH/1 hello 1\n: value\n\n",	/* empty key */
	    "RDMESH/1 hello 1\nKey: value\n\n", /* uppercase */
	    "RDMESH/1 hello 1\nmy-key: value\n\n",
	    "RDMESH/1 hello 1\nmy key: value\n\n",
	    "RDMESH/1 hello 1\n key: value\n\n",
	    "RDMESH/1 hello 1\nkey.x: value\n\n",
	    "RDMESH/1 hello 1\nkey: a\tb\n\n", /* control characters in the value */
	    "RDMESH/1 hello 1\nkey: a\rb\n\n",
	    "RDMESH/1 hello 1\nkey: value\r\n\r\n",
	    "RDMESH/1 hello 1\nkey: a\x1b[0m\n\n",
	    "RDMESH/1 hello 1\nkey: a\x7f\n\n",
	    "RDMESH/1 hello 1\nk: v\nnot a header\n\nbody",
	};

	for (size_t i = 0; i < N(bad); i++)
		parse_bad(bad[i], "header line");
	/* Lines are counted from the first line, which is line 1. */
	parse_bad("RDMESH/1 hello 1\nkey value\n\n", "header line 2");
	parse_bad("RDMESH/1 hello 1\nok: 1\nkey value\n\n", "header line 3");
	parse_bad("RDMESH/1 hello 1\nok: 1\nfine: 2\nKey: v\n\n", "header line 4");
	/* Without an empty line, a line that is no header is not taken as the body either. */
	parse_bad("RDMESH/1 hello 1\nk: v\nchain: x\nnot a header", "header line 4");
	/* The reason says which rule the line broke. */
	parse_bad("RDMESH/1 hello 1\nkey value\n\n", "': '");
	parse_bad("RDMESH/1 hello 1\nmy-key: value\n\n", "bad key");
	parse_bad("RDMESH/1 hello 1\nkey: a\tb\n\n", "control character");
}

Test(msg, nul_byte_in_header_refused_by_parse)
{
	static const char v[] = "RDMESH/1 hello 1\nkey: ab\0cd\n\n";
	static const char v2[] = "RDMESH/1 hello 1\nkey: \0\n\n";
	static const char k[] = "RDMESH/1 hello 1\nke\0y: v\n\n";

	parse_bad_n(v, sizeof(v) - 1, "header line 2: NUL", "NUL inside a value");
	parse_bad_n(v2, sizeof(v2) - 1, "header line 2: NUL", "NUL as a value");
	parse_bad_n(k, sizeof(k) - 1, "header line 2: NUL", "NUL inside a key");
}

Test(msg, bad_header_lines_refused_by_build)
{
	static const char *const upper[] = {"Key", "v", NULL};
	static const char *const dash[] = {"my-key", "v", NULL};
	static const char *const space[] = {"my key", "v", NULL};
	static const char *const colon[] = {"key:", "v", NULL};
	static const char *const empty[] = {"", "v", NULL};
	static const char *const nl[] = {"key", "a\nb", NULL};
	static const char *const nl_end[] = {"key", "value\n", NULL};
	static const char *const tab[] = {"key", "a\tb", NULL};
	static const char *const cr[] = {"key", "a\r", NULL};
	static const char *const del[] = {"key", "a\x7f", NULL};
	static const char *const esc[] = {"key", "\x1b[2J", NULL};
	static const char *const odd[] = {"key", "v", "lonely", NULL};
	static const char *const second[] = {"ok", "v", "Bad", "v", NULL};

	build_bad("hello", 1, upper, "uppercase key");
	build_bad("hello", 1, dash, "key with '-'");
	build_bad("hello", 1, space, "key with a space");
	build_bad("hello", 1, colon, "key with ':'");
	build_bad("hello", 1, empty, "empty key");
	build_bad("hello", 1, nl, "newline in a value");
	build_bad("hello", 1, nl_end, "newline ending a value");
	build_bad("hello", 1, tab, "tab in a value");
	build_bad("hello", 1, cr, "CR in a value");
	build_bad("hello", 1, del, "DEL in a value");
	build_bad("hello", 1, esc, "escape in a value");
	build_bad("hello", 1, odd, "key without a value");
	build_bad("hello", 1, second, "a bad second key");
}

Test(msg, header_line_limit)
{
	const char *kv[2 * (RDM_MSG_MAX_HDR + 1) + 1];
	char keys[RDM_MSG_MAX_HDR + 1][8], vals[RDM_MSG_MAX_HDR + 1][8];
	char text[4096];
	struct rdm_msg m;
	size_t len, off;
	char *b;

	for (int i = 0; i <= RDM_MSG_MAX_HDR; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		snprintf(vals[i], sizeof(vals[i]), "v%d", i);
		kv[2 * i] = keys[i];
		kv[2 * i + 1] = vals[i];
	}
	/* RDM_MSG_MAX_HDR lines: fine both ways, in order. */
	kv[2 * RDM_MSG_MAX_HDR] = NULL;
	round_trip("heartbeat", 5, kv, "b", 1, &m);
	cr_assert_eq(m.n_hdr, RDM_MSG_MAX_HDR);
	for (int i = 0; i < RDM_MSG_MAX_HDR; i++) {
		cr_assert_str_eq(m.key[i], keys[i]);
		cr_assert_str_eq(m.value[i], vals[i]);
	}
	cr_assert_str_eq(rdm_msg_get(&m, "k31"), "v31");
	cr_assert_str_eq(m.body, "b");
	rdm_msg_free(&m);

	/* One more: build refuses it... */
	kv[2 * RDM_MSG_MAX_HDR] = keys[RDM_MSG_MAX_HDR];
	kv[2 * RDM_MSG_MAX_HDR + 1] = vals[RDM_MSG_MAX_HDR];
	kv[2 * RDM_MSG_MAX_HDR + 2] = NULL;
	errno = 0;
	b = rdm_msg_build("heartbeat", 5, kv, NULL, 0, &len);
	cr_assert_null(b);
	cr_assert_eq(errno, EINVAL);

	/* ...and parse refuses it when written by hand, with or without a body. */
	off = (size_t)snprintf(text, sizeof(text), "RDMESH/1 heartbeat 5\n");
	for (int i = 0; i <= RDM_MSG_MAX_HDR; i++)
		off +=
		    (size_t)snprintf(text + off, sizeof(text) - off, "%s: %s\n", keys[i], vals[i]);
	cr_assert_lt(off + 8, sizeof(text));
	parse_bad_n(text, off, "32", "33 header lines, no body");
	memcpy(text + off, "\nbody", 5);
	parse_bad_n(text, off + 5, "more than 32 header lines", "33 header lines and a body");
}

Test(msg, headers_without_empty_line_mean_empty_body)
{
	static const char a[] = "RDMESH/1 applied 3\nresult: ok\nreplicas: dpi-1\n";
	static const char b[] = "RDMESH/1 applied 3\nresult: ok\nreplicas: dpi-1";
	static const char c[] = "RDMESH/1 hello 0\n";
	struct rdm_msg m;

	parse_ok(a, sizeof(a) - 1, &m);
	cr_assert_eq(m.n_hdr, 2);
	cr_assert_str_eq(rdm_msg_get(&m, "result"), "ok");
	cr_assert_str_eq(rdm_msg_get(&m, "replicas"), "dpi-1");
	cr_assert_not_null(m.body);
	cr_assert_eq(m.body_len, 0);
	cr_assert_str_eq(m.body, "");
	rdm_msg_free(&m);

	/* The last header line may even lack its newline. */
	parse_ok(b, sizeof(b) - 1, &m);
	cr_assert_eq(m.n_hdr, 2);
	cr_assert_str_eq(rdm_msg_get(&m, "replicas"), "dpi-1");
	cr_assert_eq(m.body_len, 0);
	rdm_msg_free(&m);

	/* A first line alone. */
	parse_ok(c, sizeof(c) - 1, &m);
	cr_assert_str_eq(m.type, "hello");
	cr_assert_eq(m.n_hdr, 0);
	cr_assert_eq(m.body_len, 0);
	cr_assert_not_null(m.body);
	rdm_msg_free(&m);
}

Test(msg, free_is_safe_twice_and_on_null)
{
	struct rdm_msg m;

	round_trip("hello", 1, NULL, "x", 1, &m);
	rdm_msg_free(&m);
	cr_assert(zeroed(&m));
	rdm_msg_free(&m);
	rdm_msg_free(NULL);
}

/* ---- over a TLS connection ---- */

static char dir[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	return remove(p);
}

static void tls_setup(void)
{
	static const char *const names[] = {"orch", "n1"};
	char err[256];
	int rc;

	strcpy(dir, "/tmp/rdm-test-msg-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	rc = rdm_certs_make(dir, names, 2, 30, err, sizeof(err));
	cr_assert_eq(rc, 2, "%d %s", rc, err);
}

static void tls_teardown(void)
{
	if (dir[0])
		nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* Both ends of one connection: orch (the server) and n1 (the client). */
struct pair {
	struct rdm_tls_ctx *sctx, *cctx;
	struct rdm_tls_conn *srv, *cli;
	int lfd;
	char err[512];
};

static struct rdm_tls_ctx *ctx_for(const char *name, int server)
{
	char err[256];
	struct rdm_tls_ctx *ctx = rdm_tls_ctx_load(dir, name, server, err, sizeof(err));

	cr_assert_not_null(ctx, "%s", err);
	return ctx;
}

static void *accept_main(void *arg)
{
	struct pair *p = arg;

	p->srv = rdm_tls_accept(p->sctx, p->lfd, 5000, NULL, NULL, p->err, sizeof(p->err));
	return NULL;
}

/* Connects n1 to orch over loopback; both ends are then used from the test's thread
 * (control messages are small enough for the socket buffers to hold). */
static void pair_open(struct pair *p)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	char addr[32], err[512];
	pthread_t th;

	memset(p, 0, sizeof(*p));
	p->sctx = ctx_for("orch", 1);
	p->cctx = ctx_for("n1", 0);
	p->lfd = rdm_tls_listen("127.0.0.1:0", err, sizeof(err));
	cr_assert_geq(p->lfd, 0, "%s", err);
	cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
	cr_assert_eq(pthread_create(&th, NULL, accept_main, p), 0);
	p->cli = rdm_tls_connect(p->cctx, addr, "orch", 5000, err, sizeof(err));
	pthread_join(th, NULL);
	cr_assert_not_null(p->cli, "connect: %s", err);
	cr_assert_not_null(p->srv, "accept: %s", p->err);
}

static void pair_close(struct pair *p)
{
	rdm_tls_close(p->cli);
	rdm_tls_close(p->srv);
	close(p->lfd);
	rdm_tls_ctx_free(p->cctx);
	rdm_tls_ctx_free(p->sctx);
}

TestSuite(msg_tls, .init = tls_setup, .fini = tls_teardown, .timeout = 30);

Test(msg_tls, send_and_recv_both_ways)
{
	static const char *const kv[] = {"replicas", "dpi-1 dpi-3", "heartbeat_ms", "500", NULL};
	static const char chain[] = "nodes:\n  - name: dpi-1\n\0binary\xff\n";
	struct rdm_msg m;
	struct pair p;
	char err[256] = "";
	int rc;

	pair_open(&p);
	cr_assert_eq(rdm_msg_send(p.srv, "assign", 7, kv, chain, sizeof(chain) - 1, 5000), 0);
	rc = rdm_msg_recv(p.cli, &m, 5000, err, sizeof(err));
	cr_assert_eq(rc, 0, "recv %d (%s)", rc, err);
	cr_assert_str_eq(m.type, "assign");
	cr_assert_eq(m.epoch, 7);
	cr_assert_eq(m.n_hdr, 2);
	cr_assert_str_eq(m.key[0], "replicas");
	cr_assert_str_eq(m.value[0], "dpi-1 dpi-3");
	cr_assert_str_eq(rdm_msg_get(&m, "heartbeat_ms"), "500");
	cr_assert_eq(m.body_len, sizeof(chain) - 1);
	cr_assert_eq(memcmp(m.body, chain, m.body_len), 0);
	rdm_msg_free(&m);

	/* The other way, several in a row, in order; an empty body; epoch 0. */
	for (int i = 0; i < 3; i++) {
		char n[8];
		const char *kv2[] = {"result", "ok", "seq", n, NULL};

		snprintf(n, sizeof(n), "%d", i);
		cr_assert_eq(rdm_msg_send(p.cli, "applied", (uint64_t)i, kv2, NULL, 0, 5000), 0);
	}
	for (int i = 0; i < 3; i++) {
		char n[8];

		snprintf(n, sizeof(n), "%d", i);
		rc = rdm_msg_recv(p.srv, &m, 5000, err, sizeof(err));
		cr_assert_eq(rc, 0, "recv %d (%s)", rc, err);
		cr_assert_str_eq(m.type, "applied");
		cr_assert_eq(m.epoch, (uint64_t)i);
		cr_assert_str_eq(rdm_msg_get(&m, "seq"), n);
		cr_assert_eq(m.body_len, 0);
		rdm_msg_free(&m);
	}
	pair_close(&p);
}

Test(msg_tls, send_refuses_what_build_refuses_and_oversize)
{
	static const char *const bad_kv[] = {"Bad", "v", NULL};
	struct rdm_msg m;
	struct pair p;
	char err[256] = "";
	size_t big = RDM_TLS_MAX_MSG;
	char *body = malloc(big);
	int rc;

	cr_assert_not_null(body);
	memset(body, 'x', big);
	pair_open(&p);
	cr_assert_eq(rdm_msg_send(p.srv, "HELLO", 1, NULL, NULL, 0, 5000), -EINVAL);
	cr_assert_eq(rdm_msg_send(p.srv, "hello", 1, bad_kv, NULL, 0, 5000), -EINVAL);
	cr_assert_eq(rdm_msg_send(p.srv, "hello", (uint64_t)INT64_MAX + 1, NULL, NULL, 0, 5000),
		     -EINVAL);
	/* A body of RDM_TLS_MAX_MSG bytes makes a message past it, with its first line. */
	cr_assert_eq(rdm_msg_send(p.srv, "assign", 1, NULL, body, big, 5000), -EMSGSIZE);
	/* None of these sent anything, and the connection is fine. (The test's one thread
	 * does both ends, so the next body stays well inside the socket buffers.) */
	cr_assert_eq(rdm_msg_recv(p.cli, &m, 0, err, sizeof(err)), -ETIMEDOUT);
	cr_assert_eq(rdm_msg_send(p.srv, "assign", 2, NULL, body, 1000, 5000), 0);
	rc = rdm_msg_recv(p.cli, &m, 5000, err, sizeof(err));
	cr_assert_eq(rc, 0, "recv %d (%s)", rc, err);
	cr_assert_eq(m.epoch, 2);
	cr_assert_eq(m.body_len, 1000);
	rdm_msg_free(&m);
	pair_close(&p);
	free(body);
}

Test(msg_tls, bad_message_is_eproto_and_the_next_still_arrives)
{
	static const char *const junk[] = {
	    "RDMESH/2 hello 1\n\n",    "",
	    "RDMESH/1 hello\n\n",      "RDMESH/1 hello 1\nNot A Header\n\n",
	    "\xff\xfe\x00\x01 binary",
	};
	static const size_t junk_len[] = {18, 0, 16, 31, 11};
	static const char *const want[] = {"RDMESH/2", NULL, "epoch", "header line 2", NULL};
	struct rdm_msg m;
	struct pair p;
	char err[256];
	int rc;

	pair_open(&p);
	for (size_t i = 0; i < N(junk); i++) {
		cr_assert_eq(rdm_tls_send(p.cli, junk[i], (uint32_t)junk_len[i], 5000), 0);
		cr_assert_eq(rdm_msg_send(p.cli, "hello", i, NULL, "after", 5, 5000), 0);
	}
	for (size_t i = 0; i < N(junk); i++) {
		memset(&m, 0xa5, sizeof(m));
		err[0] = 0;
		rc = rdm_msg_recv(p.srv, &m, 5000, err, sizeof(err));
		cr_assert_eq(rc, -EBADMSG, "junk %zu: recv %d", i, rc);
		cr_assert(err[0], "junk %zu: no reason", i);
		if (want[i])
			cr_assert(strstr(err, want[i]), "junk %zu: '%s' lacks '%s'", i, err,
				  want[i]);
		cr_assert(zeroed(&m), "junk %zu: *m not zeroed", i);
		rdm_msg_free(&m);
		rc = rdm_msg_recv(p.srv, &m, 5000, err, sizeof(err));
		cr_assert_eq(rc, 0, "after junk %zu: recv %d (%s)", i, rc, err);
		cr_assert_str_eq(m.type, "hello");
		cr_assert_eq(m.epoch, i);
		cr_assert_str_eq(m.body, "after");
		rdm_msg_free(&m);
	}
	/* The version mismatch's reason names both versions. */
	cr_assert_eq(rdm_tls_send(p.cli, junk[0], (uint32_t)junk_len[0], 5000), 0);
	cr_assert_eq(rdm_msg_recv(p.srv, &m, 5000, err, sizeof(err)), -EBADMSG);
	cr_assert(strstr(err, "RDMESH/2") && strstr(err, "RDMESH/1"), "%s", err);
	pair_close(&p);
}

Test(msg_tls, nothing_there_is_etimedout)
{
	struct rdm_msg m;
	struct pair p;
	char err[256];

	pair_open(&p);
	memset(&m, 0xa5, sizeof(m));
	cr_assert_eq(rdm_msg_recv(p.cli, &m, 0, err, sizeof(err)), -ETIMEDOUT);
	cr_assert(zeroed(&m));
	cr_assert_eq(rdm_msg_recv(p.srv, &m, 0, err, sizeof(err)), -ETIMEDOUT);
	cr_assert_eq(rdm_msg_recv(p.cli, &m, 50, err, sizeof(err)), -ETIMEDOUT);
	rdm_msg_free(&m);
	/* A timeout loses nothing: a message sent afterwards arrives. */
	cr_assert_eq(rdm_msg_send(p.srv, "heartbeat", 3, NULL, NULL, 0, 5000), 0);
	cr_assert_eq(rdm_msg_recv(p.cli, &m, 5000, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(m.type, "heartbeat");
	rdm_msg_free(&m);
	pair_close(&p);
}

Test(msg_tls, peer_close_is_epipe)
{
	struct rdm_msg m;
	struct pair p;
	char err[256];
	int rc;

	signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill this test */
	pair_open(&p);
	/* What was sent before the close still arrives, then the close. */
	cr_assert_eq(rdm_msg_send(p.srv, "reply", 9, NULL, "bye", 3, 5000), 0);
	rdm_tls_close(p.srv);
	p.srv = NULL;
	rc = rdm_msg_recv(p.cli, &m, 5000, err, sizeof(err));
	cr_assert_eq(rc, 0, "recv %d (%s)", rc, err);
	cr_assert_str_eq(m.body, "bye");
	rdm_msg_free(&m);
	memset(&m, 0xa5, sizeof(m));
	err[0] = 0;
	cr_assert_eq(rdm_msg_recv(p.cli, &m, 5000, err, sizeof(err)), -EPIPE);
	cr_assert(err[0], "no reason for the close");
	cr_assert(zeroed(&m));
	cr_assert_eq(rdm_msg_recv(p.cli, &m, 0, err, sizeof(err)), -EPIPE); /* and stays so */
	/* Sending to the closed peer ends in -EPIPE too, never SIGPIPE. */
	rc = 0;
	for (int i = 0; i < 100 && rc == 0; i++) {
		rc = rdm_msg_send(p.cli, "heartbeat", 1, NULL, "x", 1, 5000);
		usleep(1000);
	}
	cr_assert_eq(rc, -EPIPE, "send gave %d", rc);
	pair_close(&p);
}
