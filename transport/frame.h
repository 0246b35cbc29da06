/* The rdmesh frame: an NSH header (RFC 8300, MD type 2) whose context TLVs carry a
 * flow's state, followed by the original packet. Every backend carries these bytes.
 *
 * Wire layout (network byte order):
 *   word 0  |Ver:2|O:1|U:1|TTL:6|Length:6|LenHi:4|MD Type:4|Next Protocol:8|
 *   word 1  |Service Path Identifier:24|Service Index:8|
 *   then    context TLVs: |Class:16|C:1 Type:7|LenHi:1 Length:7| value, padded to 4
 *   then    the packet (its length is the frame length less the header length)
 *
 * RFC 8300 gives Length 6 bits (in 4-byte words) and a TLV's length 7 bits. rdmesh
 * reads the 4 unassigned bits after Length as its high bits (headers up to 4092 bytes)
 * and the unassigned bit before a TLV's length as its 8th bit (values up to 255
 * bytes). A header of at most 252 bytes with values under 128 bytes is therefore a
 * plain RFC 8300 NSH header that Wireshark decodes. Our TLVs use the experimental
 * metadata class 0xFFF6. TLVs of other classes are skipped; so are unknown types of
 * ours unless their critical bit (0x80) is set, which makes the frame undecodable. */
#ifndef RDM_FRAME_H
#define RDM_FRAME_H

#include "lib/pkt.h"
#include <stddef.h>
#include <stdint.h>

#define RDM_NSH_VERSION	    0
#define RDM_NSH_MD_TYPE2    0x2
#define RDM_NSH_NP_IPV4	    0x1
#define RDM_NSH_NP_IPV6	    0x2
#define RDM_NSH_NP_ETH	    0x3
#define RDM_NSH_TTL_DEFAULT 63
#define RDM_NSH_BASE_LEN    8	       /* base header + service path header */
#define RDM_NSH_MAX_HDR	    (1023 * 4) /* 10-bit length in words */
#define RDM_MD_CLASS	    0xFFF6
#define RDM_TLV_CRITICAL    0x80

/* Context TLV types of class RDM_MD_CLASS. One source of truth: never renumber. */
enum rdm_tlv_type {
	RDM_TLV_FLOW_KEY = 0x01, /* 40 B: family, proto, sport, dport, 2 pad, src[16], dst[16] */
	RDM_TLV_FLOW_ID = 0x02,	 /* 8 B: symmetric flow hash */
	RDM_TLV_SEQ = 0x03,	 /* 12 B: origin u32, seq u64 (per-origin packet number) */
	RDM_TLV_TENANT = 0x04,	 /* string */
	RDM_TLV_USER = 0x05,	 /* string */
	RDM_TLV_GROUPS = 0x06,	 /* list of (u8 len, bytes) */
	RDM_TLV_APP_ID = 0x07,	 /* 4 B: master protocol u16, application protocol u16 */
	RDM_TLV_APP_NAME = 0x08, /* string */
	RDM_TLV_CATEGORY = 0x09, /* 2 B id u16, then name */
	RDM_TLV_HOST = 0x0A,	 /* string: TLS SNI or HTTP Host */
	RDM_TLV_VERDICT = 0x0B,	 /* 8 B: action u8, flags u8, 2 pad, rule id u32 */
	RDM_TLV_HOP_TS = 0x0C,	 /* list of 12 B entries: node u32, ns u64 */
	RDM_TLV_FLAGS = 0x0D,	 /* 4 B: RDM_FF_* bits */
	RDM_TLV_RULE = 0x0E,	 /* string: the name of the policy rule that decided */
	RDM_TLV_RISK = 0x0F,	 /* 8 B: nDPI risk bitmap (ndpi_risk) */
	/* Flow contexts (transport/framectx.h): state sent once per flow and connection. */
	RDM_TLV_CTX = 0x10,	  /* 4 B: slot u16, op u8 (RDM_CTX_*), 0; the first TLV */
	RDM_TLV_HOP_NS = 0x11,	  /* per packet: ns u64 of hop 0, then s32 ns of each later
				   * hop relative to it; the nodes are in HOP_NODES */
	RDM_TLV_HOP_NODES = 0x12, /* per flow: node u32 of each hop, as HOP_NS counts them */
};

/* Bits of the FLAGS TLV: facts about a flow that earlier stages established. */
enum {
	RDM_FF_ID_UNKNOWN = 1u << 0, /* identity looked the flow up and found no entry */
	RDM_FF_DPI_DONE = 1u << 1,   /* DPI is final for this flow (detected or gave up) */
	RDM_FF_DPI_GAVEUP = 1u << 2, /* DPI ran out of its packet budget */
	RDM_FF_DPI_LOST = 1u << 4,   /* DPI lost the flow before it was final (its table was
				      * full): what it says now comes from mid-stream */
	RDM_FF_NOTICE = 1u << 3,     /* a state-only notice: the packet was dropped (or answered)
				      * here, and the decision travels on so that later stages
				      * (the flow log) learn it; it carries no packet */
	RDM_FF_MOVED = 1u << 5,	     /* the sender moved the flow mid-stream to a replica that
				      * may never have seen it (its replica left, or its
				      * connection was made again: a restart); set on every
				      * frame of the flow from then on */
};

/* Bits of rdm_frame.present: which optional fields hold a value. */
enum {
	RDM_F_FLOW_KEY = 1u << 0,
	RDM_F_FLOW_ID = 1u << 1,
	RDM_F_SEQ = 1u << 2,
	RDM_F_TENANT = 1u << 3,
	RDM_F_USER = 1u << 4,
	RDM_F_GROUPS = 1u << 5,
	RDM_F_APP_ID = 1u << 6,
	RDM_F_APP_NAME = 1u << 7,
	RDM_F_CATEGORY = 1u << 8,
	RDM_F_HOST = 1u << 9,
	RDM_F_VERDICT = 1u << 10,
	RDM_F_HOPS = 1u << 11,
	RDM_F_FLAGS = 1u << 12,
	RDM_F_RULE = 1u << 13,
	RDM_F_RISK = 1u << 14,
};

/* Decode errors, returned negated. They start above errno's range so that both can
 * travel in one int; every one has its own drop counter. */
enum rdm_frame_err {
	RDM_FERR_FIRST = 512,
	RDM_FERR_SHORT = RDM_FERR_FIRST, /* fewer bytes than the 8-byte fixed header */
	RDM_FERR_VERSION,		 /* NSH version is not 0 */
	RDM_FERR_MD_TYPE,		 /* MD type is not 2 */
	RDM_FERR_HDR_ZERO,		 /* header length below the fixed 2 words (0 loops) */
	RDM_FERR_HDR_OVERRUN,		 /* header length runs past the buffer */
	RDM_FERR_TLV_OVERRUN,		 /* a TLV value (padded) runs past the header's end */
	RDM_FERR_TLV_VALUE,		 /* a known TLV with a bad size or content */
	RDM_FERR_TLV_CRITICAL,		 /* an unknown TLV marked critical */
	RDM_FERR_TOO_MANY,		 /* too many TLVs, hops or groups */
	RDM_FERR_CTX,			 /* a flow context this connection never set up, or
					  * one where no connection keeps them */
	RDM_FERR_LAST,
};
#define RDM_FERR_COUNT (RDM_FERR_LAST - RDM_FERR_FIRST)

#define RDM_MAX_HOPS   16
#define RDM_MAX_GROUPS 16
#define RDM_MAX_TLVS   64
#define RDM_STR_MAX    255

/* A borrowed string: after decode it points into the frame buffer, before encode into
 * the caller's memory. Not NUL-terminated. */
struct rdm_str {
	const char *p;
	uint8_t len;
};

struct rdm_hop_ts {
	uint32_t node;
	uint64_t ns; /* CLOCK_REALTIME, so hosts synced by PTP compare */
};

enum rdm_verdict { RDM_V_NONE = 0, RDM_V_ALLOW, RDM_V_DENY, RDM_V_REJECT, RDM_V_LOG };

/* Where a flow table (services/flowtable.h) keeps a frame's flow, remembered beside the
 * received flow context state the frame's key came from, so that the next frames of the
 * flow skip the look-up. Only a hint: the table checks it still names that flow. One per
 * table of a worker, up to RDM_FLOW_HINTS tables. */
struct rdm_flow_hint {
	uint32_t tab; /* the table's id, unique in the process; 0: none yet */
	uint32_t idx; /* the flow's entry */
	uint64_t gen; /* the flow's generation, unique in the process */
	int dir;      /* the frames' direction in it */
};
#define RDM_FLOW_HINTS 4

/* A decoded frame. Decoding fills it without copying: strings and pkt point into the
 * buffer, which must outlive the struct. */
struct rdm_frame {
	uint8_t ttl;
	uint8_t next_proto;
	uint32_t spi; /* 24 bits: the chain */
	uint8_t si;   /* position in the chain, counting down */
	uint32_t present;

	uint32_t origin;
	uint64_t seq;
	/* The flow's state, key to groups: a flow context copies it as one block
	 * (transport/framectx.c), the groups last so that only those used are copied. */
	struct rdm_flow_key key;
	uint64_t flow_id;
	struct rdm_str tenant, user;
	uint16_t master_proto, app_proto;
	struct rdm_str app_name;
	uint16_t category_id;
	struct rdm_str category;
	struct rdm_str host;
	uint8_t verdict;
	uint8_t verdict_flags;
	uint32_t rule_id;
	uint32_t flags; /* RDM_FF_* */
	struct rdm_str rule;
	uint64_t risk;
	uint8_t n_groups;
	struct rdm_str groups[RDM_MAX_GROUPS];
	uint8_t n_hops;
	struct rdm_hop_ts hops[RDM_MAX_HOPS];

	const uint8_t *pkt;
	uint32_t pkt_len;
	/* Not on the wire: the packet's TCP flags, read once per frame for every stage that
	 * tracks flows (rdm_frame_tcp_flags); whoever sets pkt clears tcp_known. */
	uint8_t tcp_flags, tcp_known;
	/* Not on the wire: the owner's entry for this frame's flow, found when the frame
	 * arrived (NULL when none); a user checks it is still that flow's. */
	void *owner_flow;
	/* Not on the wire: the received flow context state this frame's state (key to
	 * groups, FLAGS) was taken from, by its id (transport/framectx.c; 0 when none), and
	 * how many hops' nodes that state named. Whoever changes the state after that
	 * clears state_src (rdm_frame_add_flags does; so does the node after a stage that
	 * does not keep states) or gives the new state an id of its own, so that a sender
	 * can tell an unchanged state without comparing its fields. */
	uint64_t state_src;
	uint8_t state_src_nodes;
	/* Not on the wire: the flow tables' hints for this frame's flow (RDM_FLOW_HINTS),
	 * kept with the received state its key came from; NULL when its key came otherwise.
	 * Whoever changes the key clears it. */
	struct rdm_flow_hint *hints;
};

/* A new id for a flow state (rdm_frame's state_src), never given before in this process.
 * Whoever changes a frame's state may give it one that stands for exactly the new state
 * (one id, one state), instead of 0. */
uint64_t rdm_frame_state_id(void);

/* A writer's ids for the states it writes while what it writes stays the same: per
 * direction, the id of the state that came in and the one it gave the state going out. */
struct rdm_state_memo {
	uint64_t in[2], out[2];
};

/* The id of the state a writer makes of state in (going in direction dir): the same id
 * while in stays, a new one for another; 0 when in is (unknown). A writer whose writing
 * changes resets the memo (zeroes it) first. */
static inline uint64_t rdm_state_memo_id(struct rdm_state_memo *m, int dir, uint64_t in)
{
	if (!in)
		return 0;
	if (m->in[dir] != in) {
		m->in[dir] = in;
		m->out[dir] = rdm_frame_state_id();
	}
	return m->out[dir];
}

/* Resets f to an empty frame for chain spi at index si. */
void rdm_frame_init(struct rdm_frame *f, uint32_t spi, uint8_t si, uint8_t next_proto);

/* Bytes the header of f will take on the wire (excludes the packet), or -EINVAL when
 * a field cannot be encoded (a count above its maximum, a header over 4092 bytes). */
int rdm_frame_hdr_len(const struct rdm_frame *f);

/* Writes the header of f into buf. Returns its length, -EMSGSIZE when cap is too
 * small, or -EINVAL as rdm_frame_hdr_len. Allocates nothing. */
int rdm_frame_encode_hdr(const struct rdm_frame *f, uint8_t *buf, size_t cap);

/* Writes header and packet into buf; returns the total length or as above. */
int rdm_frame_encode(const struct rdm_frame *f, uint8_t *buf, size_t cap);

/* Parses len bytes at buf into f. Returns 0, or -RDM_FERR_* for a malformed frame;
 * f is then undefined. Never reads outside [buf, buf + len). */
int rdm_frame_decode(struct rdm_frame *f, const uint8_t *buf, size_t len);

/* Appends a hop timestamp; -ENOSPC when the list is full. */
int rdm_frame_add_hop(struct rdm_frame *f, uint32_t node, uint64_t ns);

/* The TCP flags of f's packet (0 when it has none or is not TCP), read once per frame. */
static inline uint8_t rdm_frame_tcp_flags(struct rdm_frame *f)
{
	if (!f->tcp_known) {
		f->tcp_flags = f->pkt_len ? rdm_pkt_tcp_flags(f->pkt, f->pkt_len) : 0;
		f->tcp_known = 1;
	}
	return f->tcp_flags;
}

/* Sets bits (RDM_FF_*) in f's FLAGS, which start empty when f carried none. */
static inline void rdm_frame_add_flags(struct rdm_frame *f, uint32_t bits)
{
	if (!(f->present & RDM_F_FLAGS))
		f->flags = 0;
	f->flags |= bits;
	f->present |= RDM_F_FLAGS;
	f->state_src = 0;
}

/* A short name for a negative decode error ("tlv_overrun"), for counters and logs. */
const char *rdm_frame_strerror(int err);

/* The symmetric hash of the flow of frame f, whose key is k: the FLOW_ID the chain's
 * ingress wrote when f carries it with its FLOW_KEY (k is then f's key), else computed
 * from k. Saves each stage its own SipHash of every packet; a wrong FLOW_ID from upstream
 * only splits that flow's own state. */
static inline uint64_t rdm_frame_flow_hash(const struct rdm_frame *f, const struct rdm_flow_key *k)
{
	if ((f->present & (RDM_F_FLOW_KEY | RDM_F_FLOW_ID)) == (RDM_F_FLOW_KEY | RDM_F_FLOW_ID) &&
	    k == &f->key)
		return f->flow_id;
	return rdm_flow_hash(k);
}

/* The NSH next-protocol value for an IP packet (from its version nibble), 0 if none. */
uint8_t rdm_pkt_next_proto(const uint8_t *pkt, uint32_t len);

#endif
