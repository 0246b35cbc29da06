/* The frame codec (transport/frame.c): encode/decode round trips and strict decoding. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "transport/frame.h"
#include "tests/lib/raw.h"

static const uint8_t pkt[] = {0x45, 0, 0,  28, 0, 1, 0,	   0,	 64, 17, 0, 0, 10, 0,
			      0,    1, 10, 0,  0, 2, 0x30, 0x39, 0,  53, 0, 8, 0,  0};

static struct rdm_str S(const char *s) {
	return (struct rdm_str){s, (uint8_t)strlen(s)};
}

static void
full_frame(struct rdm_frame *f)
{
	rdm_frame_init(f, 0xABCDEF, 200, RDM_NSH_NP_IPV4);
	f->present = RDM_F_FLOW_KEY | RDM_F_FLOW_ID | RDM_F_SEQ | RDM_F_TENANT | RDM_F_USER |
		     RDM_F_GROUPS | RDM_F_APP_ID | RDM_F_APP_NAME | RDM_F_CATEGORY | RDM_F_HOST |
		     RDM_F_VERDICT;
	f->key.family = 4;
	f->key.proto = 17;
	f->key.sport = 12345;
	f->key.dport = 53;
	memset(f->key.src, 0, 16);
	memset(f->key.dst, 0, 16);
	f->key.src[0] = 10;
	f->key.dst[0] = 10;
	f->key.src[3] = 1;
	f->key.dst[3] = 2;
	f->flow_id = 0x1122334455667788ull;
	f->origin = 0x0102;
	f->seq = 99;
	f->tenant = S("acme");
	f->user = S("alice@acme.test");
	f->n_groups = 2;
	f->groups[0] = S("eng");
	f->groups[1] = S("vpn-users");
	f->master_proto = 91;
	f->app_proto = 126;
	f->app_name = S("TLS.Google");
	f->category_id = 5;
	f->category = S("Web");
	f->host = S("www.example.test");
	f->verdict = RDM_V_ALLOW;
	f->verdict_flags = 3;
	f->rule_id = 42;
	rdm_frame_add_hop(f, 1, 1000);
	rdm_frame_add_hop(f, 2, 2500);
	f->pkt = pkt;
	f->pkt_len = sizeof(pkt);
}

static int str_eq(struct rdm_str a, struct rdm_str b)
{
	return a.len == b.len && !memcmp(a.p, b.p, a.len);
}

Test(frame, round_trip_every_field)
{
	struct rdm_frame f, g;
	uint8_t buf[2048];
	int len;

	full_frame(&f);
	len = rdm_frame_encode(&f, buf, sizeof(buf));
	cr_assert_gt(len, 0);
	cr_assert_eq(len % 4, sizeof(pkt) % 4);
	cr_assert_eq(rdm_frame_decode(&g, buf, (size_t)len), 0);
	cr_assert_eq(g.ttl, RDM_NSH_TTL_DEFAULT);
	cr_assert_eq(g.spi, 0xABCDEF);
	cr_assert_eq(g.si, 200);
	cr_assert_eq(g.next_proto, RDM_NSH_NP_IPV4);
	cr_assert_eq(g.present, f.present);
	cr_assert_eq(memcmp(&g.key, &f.key, sizeof(f.key)), 0);
	cr_assert_eq(g.flow_id, f.flow_id);
	cr_assert_eq(g.origin, f.origin);
	cr_assert_eq(g.seq, 99);
	cr_assert(str_eq(g.tenant, f.tenant));
	cr_assert(str_eq(g.user, f.user));
	cr_assert_eq(g.n_groups, 2);
	cr_assert(str_eq(g.groups[1], f.groups[1]));
	cr_assert_eq(g.master_proto, 91);
	cr_assert_eq(g.app_proto, 126);
	cr_assert(str_eq(g.app_name, f.app_name));
	cr_assert_eq(g.category_id, 5);
	cr_assert(str_eq(g.category, f.category));
	cr_assert(str_eq(g.host, f.host));
	cr_assert_eq(g.verdict, RDM_V_ALLOW);
	cr_assert_eq(g.verdict_flags, 3);
	cr_assert_eq(g.rule_id, 42);
	cr_assert_eq(g.n_hops, 2);
	cr_assert_eq(g.hops[1].node, 2);
	cr_assert_eq(g.hops[1].ns, 2500);
	cr_assert_eq(g.pkt_len, sizeof(pkt));
	cr_assert_eq(memcmp(g.pkt, pkt, sizeof(pkt)), 0);
	/* Decoding borrows: the strings point into buf. */
	cr_assert(g.host.p >= (const char *)buf && g.host.p < (const char *)buf + len);
}

Test(frame, small_header_is_plain_rfc8300)
{
	struct rdm_frame f;
	uint8_t buf[512];
	int len;

	rdm_frame_init(&f, 7, 255, RDM_NSH_NP_IPV4);
	f.present = RDM_F_FLOW_ID;
	f.flow_id = 1;
	len = rdm_frame_encode_hdr(&f, buf, sizeof(buf));
	cr_assert_eq(len, 8 + 4 + 8);
	cr_assert_eq(buf[0] >> 6, 0, "version 0");
	cr_assert_eq(buf[1] & 0x3F, len / 4, "length in words in the RFC's 6 bits");
	cr_assert_eq(buf[2] >> 4, 0, "high length bits unused");
	cr_assert_eq(buf[2] & 0x0F, 2, "MD type 2");
	cr_assert_eq(buf[8], 0xFF);
	cr_assert_eq(buf[9], 0xF6, "experimental metadata class");
}

Test(frame, large_header_uses_extended_length)
{
	struct rdm_frame f, g;
	uint8_t buf[4096];
	char big[255];
	int len;

	memset(big, 'a', sizeof(big));
	full_frame(&f);
	f.host = (struct rdm_str){big, 255};
	f.user = (struct rdm_str){big, 200};
	len = rdm_frame_encode(&f, buf, sizeof(buf));
	cr_assert_gt(len, 252 + (int)sizeof(pkt));
	cr_assert_eq(rdm_frame_decode(&g, buf, (size_t)len), 0);
	cr_assert_eq(g.host.len, 255);
	cr_assert_eq(g.user.len, 200);
	cr_assert_eq(g.pkt_len, sizeof(pkt));
}

Test(frame, encode_refuses_small_buffer_and_bad_counts)
{
	struct rdm_frame f;
	uint8_t buf[64];

	full_frame(&f);
	cr_assert_eq(rdm_frame_encode(&f, buf, sizeof(buf)), -EMSGSIZE);
	f.n_hops = RDM_MAX_HOPS + 1;
	cr_assert_eq(rdm_frame_hdr_len(&f), -EINVAL);
	full_frame(&f);
	for (int i = 2; i < RDM_MAX_HOPS; i++)
		cr_assert_eq(rdm_frame_add_hop(&f, (uint32_t)i, (uint64_t)i), 0);
	cr_assert_eq(rdm_frame_add_hop(&f, 99, 99), -ENOSPC);
}

Test(frame, malformed_each_has_its_error)
{
	struct rdm_frame f;
	uint8_t buf[256];
	size_t n;

	n = raw(buf, 2, NULL, 0);
	cr_assert_eq(rdm_frame_decode(&f, buf, n), 0);
	for (size_t cut = 0; cut < 8; cut++)
		cr_assert_eq(rdm_frame_decode(&f, buf, cut), -RDM_FERR_SHORT);

	n = raw(buf, 2, NULL, 0);
	buf[0] |= 0x40;
	cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_VERSION);

	n = raw(buf, 2, NULL, 0);
	buf[2] = (buf[2] & 0xF0) | 1;
	cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_MD_TYPE);

	n = raw(buf, 0, NULL, 0);
	cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_HDR_ZERO);
	n = raw(buf, 1, NULL, 0);
	cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_HDR_ZERO);

	n = raw(buf, 40, NULL, 0);
	cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_HDR_OVERRUN);
	n = raw(buf, 1023, NULL, 0);
	cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_HDR_OVERRUN);

	{ /* a TLV claiming 9 bytes inside a header that holds 4 */
		const uint8_t t[] = {0xFF, 0xF6, RDM_TLV_FLOW_ID, 9, 0, 0, 0, 0};

		n = raw(buf, 4, t, sizeof(t));
		cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_TLV_OVERRUN);
	}
	{ /* flow id of the wrong size */
		const uint8_t t[] = {0xFF, 0xF6, RDM_TLV_FLOW_ID, 4, 1, 2, 3, 4};

		n = raw(buf, 4, t, sizeof(t));
		cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_TLV_VALUE);
	}
	{ /* an empty string where a value is required */
		const uint8_t t[] = {0xFF, 0xF6, RDM_TLV_HOST, 0};

		n = raw(buf, 3, t, sizeof(t));
		cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_TLV_VALUE);
	}
	{ /* a group list whose entry runs past the value */
		const uint8_t t[] = {0xFF, 0xF6, RDM_TLV_GROUPS, 3, 5, 'a', 'b', 0};

		n = raw(buf, 4, t, sizeof(t));
		cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_TLV_VALUE);
	}
	{ /* a verdict beyond the known actions */
		const uint8_t t[] = {0xFF, 0xF6, RDM_TLV_VERDICT, 8, 77, 0, 0, 0, 0, 0, 0, 1};

		n = raw(buf, 5, t, sizeof(t));
		cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_TLV_VALUE);
	}
	{ /* unknown critical type of our class */
		const uint8_t t[] = {0xFF, 0xF6, 0x80 | 0x55, 0};

		n = raw(buf, 3, t, sizeof(t));
		cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_TLV_CRITICAL);
	}
}

Test(frame, too_many_tlvs_are_refused)
{
	struct rdm_frame f;
	uint8_t tl[4 * (RDM_MAX_TLVS + 1)], buf[8 + sizeof(tl)];
	size_t n;

	/* Zero-length TLVs of an unknown type: each costs 4 bytes, never a stall. */
	for (int i = 0; i <= RDM_MAX_TLVS; i++) {
		tl[4 * i] = 0x12;
		tl[4 * i + 1] = 0x34;
		tl[4 * i + 2] = 0x01;
		tl[4 * i + 3] = 0;
	}
	n = raw(buf, 2 + RDM_MAX_TLVS, tl, 4 * RDM_MAX_TLVS);
	cr_assert_eq(rdm_frame_decode(&f, buf, n), 0, "64 TLVs are fine");
	n = raw(buf, 2 + RDM_MAX_TLVS + 1, tl, sizeof(tl));
	cr_assert_eq(rdm_frame_decode(&f, buf, n), -RDM_FERR_TOO_MANY);
}

Test(frame, unknown_tlvs_are_skipped)
{
	struct rdm_frame f;
	uint8_t buf[64];
	const uint8_t t[] = {
	    0x00, 0x01, 0x99,
	    3,	  1,	2,
	    3,	  0, /* another class */
	    0xFF, 0xF6, 0x55,
	    1,	  7,	0,
	    0,	  0, /* unknown, not critical */
	    0xFF, 0xF6, RDM_TLV_FLOW_ID,
	    8,	  0,	0,
	    0,	  0,	0,
	    0,	  0,	9, /* known */
	};
	size_t n = raw(buf, 2 + sizeof(t) / 4, t, sizeof(t));

	buf[n] = 0x45;
	cr_assert_eq(rdm_frame_decode(&f, buf, n + 1), 0);
	cr_assert_eq(f.present, RDM_F_FLOW_ID);
	cr_assert_eq(f.flow_id, 9);
	cr_assert_eq(f.pkt_len, 1);
}

Test(frame, every_truncation_and_bit_flip_is_safe)
{
	struct rdm_frame f, g;
	uint8_t buf[2048], copy[2048];
	int len;

	full_frame(&f);
	len = rdm_frame_encode(&f, buf, sizeof(buf));
	for (int cut = 0; cut < len; cut++) {
		/* A copy of exactly cut bytes on the heap lets ASan catch any overread. */
		uint8_t *p = malloc((size_t)cut + 1);

		memcpy(p, buf, (size_t)cut);
		int rc = rdm_frame_decode(&g, p, (size_t)cut);

		cr_assert(rc == 0 || (rc <= -RDM_FERR_FIRST && rc > -RDM_FERR_LAST));
		free(p);
	}
	for (int bit = 0; bit < len * 8; bit++) {
		memcpy(copy, buf, (size_t)len);
		copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		int rc = rdm_frame_decode(&g, copy, (size_t)len);

		cr_assert(rc == 0 || (rc <= -RDM_FERR_FIRST && rc > -RDM_FERR_LAST));
	}
}

Test(frame, error_names_are_distinct)
{
	for (int a = RDM_FERR_FIRST; a < RDM_FERR_LAST; a++) {
		cr_assert_str_neq(rdm_frame_strerror(-a), "unknown");
		for (int b = a + 1; b < RDM_FERR_LAST; b++)
			cr_assert_str_neq(rdm_frame_strerror(-a), rdm_frame_strerror(-b));
	}
	cr_assert_str_eq(rdm_frame_strerror(-EINVAL), "unknown");
}

/* A packet's TCP flags are read once per frame and cached in it: a frame decoded again
 * into the same struct (as a worker's batch array is reused) reads its own. */
Test(frame, tcp_flags_are_read_once_per_decoded_frame)
{
	uint8_t tcp[40] = {0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2};
	uint8_t buf[512];
	struct rdm_frame f, g;
	int len;

	tcp[20 + 12] = 0x50;
	rdm_frame_init(&f, 7, 200, RDM_NSH_NP_IPV4);
	f.pkt = tcp;
	f.pkt_len = sizeof(tcp);
	for (uint8_t fl = 0x01; fl <= 0x10; fl <<= 1) {
		tcp[20 + 13] = fl;
		len = rdm_frame_encode(&f, buf, sizeof(buf));
		cr_assert_gt(len, 0);
		cr_assert_eq(rdm_frame_decode(&g, buf, (size_t)len), 0);
		cr_assert_eq(rdm_frame_tcp_flags(&g), fl);
		cr_assert_eq(rdm_frame_tcp_flags(&g), fl, "the second read is the cached one");
	}
	/* Not TCP, and no packet: none. */
	len = rdm_frame_encode(&f, buf, sizeof(buf));
	buf[len - 40 + 9] = 17;
	cr_assert_eq(rdm_frame_decode(&g, buf, (size_t)len), 0);
	cr_assert_eq(rdm_frame_tcp_flags(&g), 0);
	rdm_frame_init(&g, 7, 200, 0);
	cr_assert_eq(rdm_frame_tcp_flags(&g), 0);
}
