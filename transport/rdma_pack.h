/* The packed-record codec of the RDMA backend's IMM_PACKED messages: pure code on byte
 * buffers, no verbs. A packed message is a sequence of records, each [u32 length, network
 * order][length bytes of frame], the next record starting at the next multiple of 4 from
 * the message's start (RDM_RDMA_REC_ALIGN), the pad bytes zero. The last record is not
 * padded: the message ends where its frame does (transport/rdma.h has the constants). */
#ifndef RDM_RDMA_PACK_H
#define RDM_RDMA_PACK_H

#include <stdint.h>

/* The message length once a record of len frame bytes follows `used` bytes of a message
 * that may hold cap bytes, or 0 when it would not fit (a record is never empty: its
 * length prefix takes 4 bytes). */
uint32_t rdm_pack_room(uint32_t cap, uint32_t used, uint32_t len);

/* Appends a record whose frame is hdr_len bytes of hdr then pkt_len bytes of pkt (pkt may
 * be NULL when pkt_len is 0) to the message of *used bytes in buf, padding with zeros to
 * the record's start; *used becomes the message's new end. 0, or -EMSGSIZE when the
 * record does not fit in cap bytes (buf and *used untouched). */
int rdm_pack_add(uint8_t *buf, uint32_t cap, uint32_t *used, const uint8_t *hdr, uint32_t hdr_len,
		 const uint8_t *pkt, uint32_t pkt_len);

/* A reader walking the records of a message of len bytes at buf, from offset off (0, or
 * where a previous record left it). */
struct rdm_pack_rd {
	const uint8_t *buf;
	uint32_t len, off;
};

/* One record: its frame, inside the reader's buffer. */
struct rdm_pack_rec {
	const uint8_t *frame;
	uint32_t len;
};

/* Reads the record at r->off. 1: *rec is set and r->off moves to the next record's start,
 * or to r->len after the last one (pad bytes after the last record are not a record).
 * 0: no more records (r->off == r->len). -EBADMSG: the record is malformed (fewer than 4
 * bytes left for its length, or its frame runs past the message); r->off stays on it, and
 * every later call says the same. */
int rdm_pack_next(struct rdm_pack_rd *r, struct rdm_pack_rec *rec);

/* Checks a whole received message of len bytes: *end is where its last whole record ends
 * (0 when there is none), *bytes the frame bytes up to there. 0, or -EBADMSG when a record
 * is malformed or the message holds none; the records before a malformed one are good. */
int rdm_pack_scan(const uint8_t *buf, uint32_t len, uint32_t *end, uint64_t *bytes);

#endif
