/* The frame codec (transport/frame.h): encoding and strictly decoding NSH headers and
 * their state TLVs. */
#include "transport/frame.h"
#include "transport/frame_int.h"

#include "lib/byteorder.h"

#include <errno.h>
#include <string.h>

#define TLV_HDR	     RDM_TLV_HDR
#define PAD4(n)	     RDM_PAD4(n)
#define FLOW_KEY_LEN 40
#define SEQ_LEN	     12
#define HOP_LEN	     12

/* The last state id given, shared by every worker. */
static _Atomic uint64_t last_state_id;

uint64_t rdm_frame_state_id(void)
{
	return ++last_state_id;
}

void rdm_frame_init(struct rdm_frame *f, uint32_t spi, uint8_t si, uint8_t next_proto)
{
	/* Only the fixed part and the presence mask: the optional fields are read only
	 * when their bit is set, so zeroing them per packet would be wasted work. */
	f->ttl = RDM_NSH_TTL_DEFAULT;
	f->next_proto = next_proto;
	f->spi = spi & 0xFFFFFF;
	f->si = si;
	f->present = 0;
	f->n_groups = 0;
	f->n_hops = 0;
	f->pkt = NULL;
	f->pkt_len = 0;
	f->tcp_known = 0;
	f->owner_flow = NULL;
	f->state_src = 0;
	f->hints = NULL;
}

static unsigned groups_len(const struct rdm_frame *f)
{
	unsigned n = 0;

	for (unsigned i = 0; i < f->n_groups; i++)
		n += 1 + f->groups[i].len;
	return n;
}

/* Value length of each TLV a selection takes, in encode order; returns the count. */
struct tlv_plan {
	uint8_t type;
	unsigned len;
};

#define STICKY RDM_SEL_STICKY
#define PACKET RDM_SEL_PACKET

static int plan(const struct rdm_frame *f, unsigned sel, struct tlv_plan *p)
{
	int n = 0;
	uint32_t pr = f->present;

#define ADD(cls, bit, t, l)                                                                        \
	do {                                                                                       \
		if ((sel & (cls)) && (pr & (bit))) {                                               \
			p[n].type = (t);                                                           \
			p[n].len = (l);                                                            \
			n++;                                                                       \
		}                                                                                  \
	} while (0)
	ADD(STICKY, RDM_F_FLOW_KEY, RDM_TLV_FLOW_KEY, FLOW_KEY_LEN);
	ADD(STICKY, RDM_F_FLOW_ID, RDM_TLV_FLOW_ID, 8);
	ADD(PACKET, RDM_F_SEQ, RDM_TLV_SEQ, SEQ_LEN);
	ADD(STICKY, RDM_F_TENANT, RDM_TLV_TENANT, f->tenant.len);
	ADD(STICKY, RDM_F_USER, RDM_TLV_USER, f->user.len);
	ADD(STICKY, RDM_F_GROUPS, RDM_TLV_GROUPS, groups_len(f));
	ADD(STICKY, RDM_F_APP_ID, RDM_TLV_APP_ID, 4);
	ADD(STICKY, RDM_F_APP_NAME, RDM_TLV_APP_NAME, f->app_name.len);
	ADD(STICKY, RDM_F_CATEGORY, RDM_TLV_CATEGORY, 2u + f->category.len);
	ADD(STICKY, RDM_F_HOST, RDM_TLV_HOST, f->host.len);
	ADD(STICKY, RDM_F_VERDICT, RDM_TLV_VERDICT, 8);
	if (!(sel & RDM_SEL_SPLIT)) {
		ADD(PACKET, RDM_F_HOPS, RDM_TLV_HOP_TS, (unsigned)f->n_hops * HOP_LEN);
	} else if (f->n_hops) {
		ADD(STICKY, RDM_F_HOPS, RDM_TLV_HOP_NODES, (unsigned)f->n_hops * 4);
		ADD(PACKET, RDM_F_HOPS, RDM_TLV_HOP_NS, 8 + ((unsigned)f->n_hops - 1) * 4);
	}
	ADD(STICKY, RDM_F_FLAGS, RDM_TLV_FLAGS, 4);
	ADD(STICKY, RDM_F_RULE, RDM_TLV_RULE, f->rule.len);
	ADD(STICKY, RDM_F_RISK, RDM_TLV_RISK, 8);
#undef ADD
	return n;
}

/* Bytes the TLVs of p[0..n) take, or -EINVAL when one cannot be encoded. */
static int plan_len(const struct rdm_frame *f, unsigned sel, struct tlv_plan *p, int *np)
{
	unsigned total = 0;
	int n;

	if (f->n_hops > RDM_MAX_HOPS || f->n_groups > RDM_MAX_GROUPS)
		return -EINVAL;
	n = plan(f, sel, p);
	for (int i = 0; i < n; i++) {
		if (p[i].len > RDM_STR_MAX)
			return -EINVAL;
		total += TLV_HDR + PAD4(p[i].len);
	}
	if (total > RDM_NSH_MAX_HDR - RDM_NSH_BASE_LEN)
		return -EINVAL;
	*np = n;
	return (int)total;
}

int rdm_frame_hdr_len(const struct rdm_frame *f)
{
	struct tlv_plan p[16];
	int n, len = plan_len(f, STICKY | PACKET, p, &n);

	return len < 0 ? len : len + RDM_NSH_BASE_LEN;
}

int rdm_frame__split_ok(const struct rdm_frame *f)
{
	for (unsigned i = 1; i < f->n_hops; i++) {
		int64_t d = (int64_t)(f->hops[i].ns - f->hops[0].ns);

		if (d > INT32_MAX || d < INT32_MIN)
			return 0;
	}
	return 1;
}

static uint8_t *put_str(uint8_t *q, struct rdm_str s)
{
	if (s.len)
		memcpy(q, s.p, s.len);
	return q + s.len;
}

static void put_value(const struct rdm_frame *f, uint8_t type, uint8_t *q)
{
	switch (type) {
	case RDM_TLV_FLOW_KEY:
		q[0] = f->key.family;
		q[1] = f->key.proto;
		rdm_put_be16(q + 2, f->key.sport);
		rdm_put_be16(q + 4, f->key.dport);
		q[6] = q[7] = 0;
		memcpy(q + 8, f->key.src, 16);
		memcpy(q + 24, f->key.dst, 16);
		break;
	case RDM_TLV_FLOW_ID:
		rdm_put_be64(q, f->flow_id);
		break;
	case RDM_TLV_SEQ:
		rdm_put_be32(q, f->origin);
		rdm_put_be64(q + 4, f->seq);
		break;
	case RDM_TLV_TENANT:
		put_str(q, f->tenant);
		break;
	case RDM_TLV_USER:
		put_str(q, f->user);
		break;
	case RDM_TLV_GROUPS:
		for (unsigned i = 0; i < f->n_groups; i++) {
			*q++ = f->groups[i].len;
			q = put_str(q, f->groups[i]);
		}
		break;
	case RDM_TLV_APP_ID:
		rdm_put_be16(q, f->master_proto);
		rdm_put_be16(q + 2, f->app_proto);
		break;
	case RDM_TLV_APP_NAME:
		put_str(q, f->app_name);
		break;
	case RDM_TLV_CATEGORY:
		rdm_put_be16(q, f->category_id);
		put_str(q + 2, f->category);
		break;
	case RDM_TLV_HOST:
		put_str(q, f->host);
		break;
	case RDM_TLV_VERDICT:
		q[0] = f->verdict;
		q[1] = f->verdict_flags;
		q[2] = q[3] = 0;
		rdm_put_be32(q + 4, f->rule_id);
		break;
	case RDM_TLV_HOP_TS:
		for (unsigned i = 0; i < f->n_hops; i++, q += HOP_LEN) {
			rdm_put_be32(q, f->hops[i].node);
			rdm_put_be64(q + 4, f->hops[i].ns);
		}
		break;
	case RDM_TLV_HOP_NS:
		rdm_put_be64(q, f->hops[0].ns);
		for (unsigned i = 1; i < f->n_hops; i++)
			rdm_put_be32(q + 4 + 4 * i, (uint32_t)(f->hops[i].ns - f->hops[0].ns));
		break;
	case RDM_TLV_HOP_NODES:
		for (unsigned i = 0; i < f->n_hops; i++)
			rdm_put_be32(q + 4 * i, f->hops[i].node);
		break;
	case RDM_TLV_FLAGS:
		rdm_put_be32(q, f->flags);
		break;
	case RDM_TLV_RULE:
		put_str(q, f->rule);
		break;
	case RDM_TLV_RISK:
		rdm_put_be64(q, f->risk);
		break;
	}
}

int rdm_frame__put_tlvs(const struct rdm_frame *f, unsigned sel, uint8_t *q, size_t cap)
{
	struct tlv_plan p[16];
	int n, len = plan_len(f, sel, p, &n);

	if (len < 0)
		return len;
	if ((size_t)len > cap)
		return -EMSGSIZE;
	for (int i = 0; i < n; i++) {
		unsigned l = p[i].len, padded = PAD4(l);

		rdm_put_be16(q, RDM_MD_CLASS);
		q[2] = p[i].type;
		q[3] = (uint8_t)l; /* bit 7 is rdmesh's 8th length bit */
		/* The padding: the value's last word zeroed first, then the value over it
		 * (a libc memset of 1-3 bytes per TLV cost more than the TLV's value). */
		if (padded > l)
			rdm_put_be32(q + TLV_HDR + padded - 4, 0);
		put_value(f, p[i].type, q + TLV_HDR);
		q += TLV_HDR + padded;
	}
	return len;
}

int rdm_frame_encode_hdr(const struct rdm_frame *f, uint8_t *buf, size_t cap)
{
	int len;

	if (cap < RDM_NSH_BASE_LEN)
		return -EMSGSIZE;
	len =
	    rdm_frame__put_tlvs(f, STICKY | PACKET, buf + RDM_NSH_BASE_LEN, cap - RDM_NSH_BASE_LEN);
	if (len < 0)
		return len;
	len += RDM_NSH_BASE_LEN;
	rdm_frame__put_base(f, buf, (unsigned)len, f->next_proto);
	return len;
}

int rdm_frame_encode(const struct rdm_frame *f, uint8_t *buf, size_t cap)
{
	int len = rdm_frame_encode_hdr(f, buf, cap);

	if (len < 0)
		return len;
	if (f->pkt_len > cap - (size_t)len)
		return -EMSGSIZE;
	if (f->pkt_len)
		memcpy(buf + len, f->pkt, f->pkt_len);
	return len + (int)f->pkt_len;
}

int rdm_frame_add_hop(struct rdm_frame *f, uint32_t node, uint64_t ns)
{
	if (f->n_hops >= RDM_MAX_HOPS)
		return -ENOSPC;
	f->hops[f->n_hops].node = node;
	f->hops[f->n_hops].ns = ns;
	f->n_hops++;
	f->present |= RDM_F_HOPS;
	return 0;
}

static int get_str(struct rdm_str *s, const uint8_t *v, unsigned len)
{
	if (len == 0)
		return -RDM_FERR_TLV_VALUE;
	s->p = (const char *)v;
	s->len = (uint8_t)len;
	return 0;
}

/* Parses one known TLV; unknown types are handled by the caller. */
static int decode_tlv(struct rdm_frame *f, uint8_t type, const uint8_t *v, unsigned len,
		      struct rdm_walk *wk)
{
	switch (type) {
	case RDM_TLV_FLOW_KEY:
		if (len != FLOW_KEY_LEN || (v[0] != 4 && v[0] != 6))
			return -RDM_FERR_TLV_VALUE;
		f->key.family = v[0];
		f->key.proto = v[1];
		f->key.sport = rdm_get_be16(v + 2);
		f->key.dport = rdm_get_be16(v + 4);
		memcpy(f->key.src, v + 8, 16);
		memcpy(f->key.dst, v + 24, 16);
		f->present |= RDM_F_FLOW_KEY;
		return 0;
	case RDM_TLV_FLOW_ID:
		if (len != 8)
			return -RDM_FERR_TLV_VALUE;
		f->flow_id = rdm_get_be64(v);
		f->present |= RDM_F_FLOW_ID;
		return 0;
	case RDM_TLV_SEQ:
		if (len != SEQ_LEN)
			return -RDM_FERR_TLV_VALUE;
		f->origin = rdm_get_be32(v);
		f->seq = rdm_get_be64(v + 4);
		f->present |= RDM_F_SEQ;
		return 0;
	case RDM_TLV_TENANT:
		f->present |= RDM_F_TENANT;
		return get_str(&f->tenant, v, len);
	case RDM_TLV_USER:
		f->present |= RDM_F_USER;
		return get_str(&f->user, v, len);
	case RDM_TLV_GROUPS: {
		unsigned off = 0;

		f->n_groups = 0;
		while (off < len) {
			unsigned gl = v[off];

			if (gl == 0 || gl > len - off - 1)
				return -RDM_FERR_TLV_VALUE;
			if (f->n_groups == RDM_MAX_GROUPS)
				return -RDM_FERR_TOO_MANY;
			f->groups[f->n_groups].p = (const char *)v + off + 1;
			f->groups[f->n_groups].len = (uint8_t)gl;
			f->n_groups++;
			off += 1 + gl;
		}
		if (f->n_groups == 0)
			return -RDM_FERR_TLV_VALUE;
		f->present |= RDM_F_GROUPS;
		return 0;
	}
	case RDM_TLV_APP_ID:
		if (len != 4)
			return -RDM_FERR_TLV_VALUE;
		f->master_proto = rdm_get_be16(v);
		f->app_proto = rdm_get_be16(v + 2);
		f->present |= RDM_F_APP_ID;
		return 0;
	case RDM_TLV_APP_NAME:
		f->present |= RDM_F_APP_NAME;
		return get_str(&f->app_name, v, len);
	case RDM_TLV_CATEGORY:
		if (len < 2)
			return -RDM_FERR_TLV_VALUE;
		f->category_id = rdm_get_be16(v);
		f->category.p = (const char *)v + 2;
		f->category.len = (uint8_t)(len - 2);
		f->present |= RDM_F_CATEGORY;
		return 0;
	case RDM_TLV_HOST:
		f->present |= RDM_F_HOST;
		return get_str(&f->host, v, len);
	case RDM_TLV_VERDICT:
		if (len != 8 || v[0] > RDM_V_LOG)
			return -RDM_FERR_TLV_VALUE;
		f->verdict = v[0];
		f->verdict_flags = v[1];
		f->rule_id = rdm_get_be32(v + 4);
		f->present |= RDM_F_VERDICT;
		return 0;
	case RDM_TLV_HOP_TS:
		if (len == 0 || len % HOP_LEN)
			return -RDM_FERR_TLV_VALUE;
		if (len / HOP_LEN > RDM_MAX_HOPS)
			return -RDM_FERR_TOO_MANY;
		f->n_hops = (uint8_t)(len / HOP_LEN);
		for (unsigned i = 0; i < f->n_hops; i++) {
			f->hops[i].node = rdm_get_be32(v + i * HOP_LEN);
			f->hops[i].ns = rdm_get_be64(v + i * HOP_LEN + 4);
		}
		f->present |= RDM_F_HOPS;
		return 0;
	case RDM_TLV_HOP_NS:
		if (len < 8 || len % 4)
			return -RDM_FERR_TLV_VALUE;
		if ((len - 8) / 4 + 1 > RDM_MAX_HOPS)
			return -RDM_FERR_TOO_MANY;
		f->n_hops = (uint8_t)((len - 8) / 4 + 1);
		f->hops[0].ns = rdm_get_be64(v);
		for (unsigned i = 1; i < f->n_hops; i++)
			f->hops[i].ns =
			    f->hops[0].ns + (uint64_t)(int64_t)(int32_t)rdm_get_be32(v + 4 + 4 * i);
		wk->hop_ns = f->n_hops;
		f->present |= RDM_F_HOPS;
		return 0;
	case RDM_TLV_HOP_NODES:
		if (len == 0 || len % 4)
			return -RDM_FERR_TLV_VALUE;
		if (len / 4 > RDM_MAX_HOPS)
			return -RDM_FERR_TOO_MANY;
		wk->hop_nodes = (uint8_t)(len / 4);
		for (unsigned i = 0; i < wk->hop_nodes; i++)
			f->hops[i].node = rdm_get_be32(v + 4 * i);
		return 0;
	case RDM_TLV_FLAGS:
		if (len != 4)
			return -RDM_FERR_TLV_VALUE;
		f->flags = rdm_get_be32(v);
		f->present |= RDM_F_FLAGS;
		return 0;
	case RDM_TLV_RULE:
		f->present |= RDM_F_RULE;
		return get_str(&f->rule, v, len);
	case RDM_TLV_RISK:
		if (len != 8)
			return -RDM_FERR_TLV_VALUE;
		f->risk = rdm_get_be64(v);
		f->present |= RDM_F_RISK;
		return 0;
	}
	return 1; /* not ours */
}

/* A per-packet TLV of ours: it never belongs to a flow's state. */
static int per_packet(uint16_t cls, uint8_t type)
{
	return cls == RDM_MD_CLASS &&
	       (type == RDM_TLV_SEQ || type == RDM_TLV_HOP_TS || type == RDM_TLV_HOP_NS);
}

int rdm_frame__walk(struct rdm_frame *f, const uint8_t *buf, unsigned off, unsigned end,
		    struct rdm_walk *wk)
{
	unsigned ntlv = 0;

	while (off < end) {
		uint16_t cls;
		uint8_t type;
		unsigned vlen, size;
		int rc;

		/* end and off are multiples of 4, so a whole TLV header is always there. */
		if (++ntlv > RDM_MAX_TLVS)
			return -RDM_FERR_TOO_MANY;
		cls = rdm_get_be16(buf + off);
		type = buf[off + 2];
		vlen = buf[off + 3];
		size = TLV_HDR + PAD4(vlen);
		if (PAD4(vlen) > end - off - TLV_HDR)
			return -RDM_FERR_TLV_OVERRUN;
		if (cls == RDM_MD_CLASS && type == RDM_TLV_CTX)
			return -RDM_FERR_CTX;
		if (wk->keep && !per_packet(cls, type)) {
			/* The flow's state: kept whole (other classes' too), decoded later. */
			if (size > wk->keep_cap - wk->keep_len)
				return -RDM_FERR_TOO_MANY;
			memcpy(wk->keep + wk->keep_len, buf + off, size);
			wk->keep_len += size;
			off += size;
			continue;
		}
		rc = cls == RDM_MD_CLASS ? decode_tlv(f, type, buf + off + TLV_HDR, vlen, wk) : 1;
		if (rc < 0)
			return rc;
		/* The critical bit is ours to define: other classes' types are opaque. */
		if (rc > 0 && cls == RDM_MD_CLASS && (type & RDM_TLV_CRITICAL))
			return -RDM_FERR_TLV_CRITICAL;
		off += size;
	}
	return 0;
}

int rdm_frame__hops_check(const struct rdm_walk *wk)
{
	return wk->hop_ns == wk->hop_nodes ? 0 : -RDM_FERR_TLV_VALUE;
}

int rdm_frame_decode(struct rdm_frame *f, const uint8_t *buf, size_t len)
{
	struct rdm_walk wk = {0};
	unsigned hlen;
	int rc = rdm_frame__get_base(f, buf, len, &hlen);

	if (rc < 0)
		return rc;
	rc = rdm_frame__walk(f, buf, RDM_NSH_BASE_LEN, hlen, &wk);
	if (rc < 0)
		return rc;
	rc = rdm_frame__hops_check(&wk);
	if (rc < 0)
		return rc;
	f->pkt = buf + hlen;
	f->pkt_len = (uint32_t)(len - hlen);
	return 0;
}

const char *rdm_frame_strerror(int err)
{
	static const char *const names[RDM_FERR_COUNT] = {
	    [RDM_FERR_SHORT - RDM_FERR_FIRST] = "short",
	    [RDM_FERR_VERSION - RDM_FERR_FIRST] = "bad_version",
	    [RDM_FERR_MD_TYPE - RDM_FERR_FIRST] = "bad_md_type",
	    [RDM_FERR_HDR_ZERO - RDM_FERR_FIRST] = "hdr_zero_len",
	    [RDM_FERR_HDR_OVERRUN - RDM_FERR_FIRST] = "hdr_overrun",
	    [RDM_FERR_TLV_OVERRUN - RDM_FERR_FIRST] = "tlv_overrun",
	    [RDM_FERR_TLV_VALUE - RDM_FERR_FIRST] = "tlv_bad_value",
	    [RDM_FERR_TLV_CRITICAL - RDM_FERR_FIRST] = "tlv_critical",
	    [RDM_FERR_TOO_MANY - RDM_FERR_FIRST] = "too_many",
	    [RDM_FERR_CTX - RDM_FERR_FIRST] = "ctx_unknown",
	};
	int e = err < 0 ? -err : err;

	if (e >= RDM_FERR_FIRST && e < RDM_FERR_LAST)
		return names[e - RDM_FERR_FIRST];
	return "unknown";
}

uint8_t rdm_pkt_next_proto(const uint8_t *pkt, uint32_t len)
{
	if (!pkt || len < 1)
		return 0;
	switch (pkt[0] >> 4) {
	case 4:
		return RDM_NSH_NP_IPV4;
	case 6:
		return RDM_NSH_NP_IPV6;
	default:
		return 0;
	}
}
