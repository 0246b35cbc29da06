/* The RDMA backend's packed-record codec (transport/rdma_pack.c) on its own, no RDMA
 * device: writing records into a slot, the exact wire bytes, what does not fit, and how
 * the reader and the receive path's check (rdm_pack_scan) treat malformed messages. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "transport/rdma.h"
#include "transport/rdma_pack.h"

#define CAP 256

/* Frame i of the round trips: i % 23 bytes (so some are empty), each byte i * 7 + offset;
 * the first 3 bytes (or fewer) as the header piece, the rest as the packet piece. */
static uint32_t frame_of(uint32_t i, uint8_t *f)
{
	uint32_t len = i % 23;

	for (uint32_t o = 0; o < len; o++)
		f[o] = (uint8_t)(i * 7 + o);
	return len;
}

static int add_frame(uint8_t *m, uint32_t cap, uint32_t *used, const uint8_t *f, uint32_t len)
{
	uint32_t h = len < 3 ? len : 3;

	return rdm_pack_add(m, cap, used, f, h, f + h, len - h);
}

/* Writes a record header of length len at m + at. */
static void put_len(uint8_t *m, uint32_t at, uint32_t len)
{
	m[at] = (uint8_t)(len >> 24);
	m[at + 1] = (uint8_t)(len >> 16);
	m[at + 2] = (uint8_t)(len >> 8);
	m[at + 3] = (uint8_t)len;
}

Test(pack, round_trip_1_to_n_records)
{
	for (uint32_t n = 1; n <= 12; n++) {
		uint8_t m[CAP], f[32];
		uint32_t used = 0, end;
		uint64_t bytes, sum = 0;
		struct rdm_pack_rd r;
		struct rdm_pack_rec rec;

		for (uint32_t i = 0; i < n; i++) {
			uint32_t len = frame_of(n * 13 + i, f);

			cr_assert_eq(add_frame(m, CAP, &used, f, len), 0, "n %u record %u", n, i);
			sum += len;
		}
		r = (struct rdm_pack_rd){m, used, 0};
		for (uint32_t i = 0; i < n; i++) {
			uint32_t len = frame_of(n * 13 + i, f);

			cr_assert_eq(rdm_pack_next(&r, &rec), 1, "n %u record %u", n, i);
			cr_assert_eq(rec.len, len);
			cr_assert(len == 0 || memcmp(rec.frame, f, len) == 0);
			cr_assert_eq((uintptr_t)(rec.frame - m) % 4, 0, "header 4-byte aligned");
		}
		cr_assert_eq(rdm_pack_next(&r, &rec), 0, "no more records");
		cr_assert_eq(r.off, used);
		cr_assert_eq(rdm_pack_scan(m, used, &end, &bytes), 0);
		cr_assert_eq(end, used);
		cr_assert_eq(bytes, sum);
	}
}

/* The layout transport/rdma.h documents, byte for byte: zero pad, the last unpadded. */
Test(pack, wire_bytes_are_the_documented_layout)
{
	static const uint8_t want[] = {0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e', 0,	 0,  0,
				       0, 0, 0, 0, 0,	0,   0,	  3,   'x', 'y', 'z'};
	uint8_t m[CAP];
	uint32_t used = 0;

	memset(m, 0xAA, sizeof(m));
	cr_assert_eq(
	    rdm_pack_add(m, CAP, &used, (const uint8_t *)"ab", 2, (const uint8_t *)"cde", 3), 0);
	cr_assert_eq(used, 9);
	cr_assert_eq(rdm_pack_add(m, CAP, &used, NULL, 0, NULL, 0), 0);
	cr_assert_eq(used, 16);
	cr_assert_eq(rdm_pack_add(m, CAP, &used, (const uint8_t *)"xyz", 3, NULL, 0), 0);
	cr_assert_eq(used, sizeof(want));
	cr_assert_arr_eq(m, want, sizeof(want));
	cr_assert_eq(m[sizeof(want)], 0xAA, "nothing written past the end");
}

Test(pack, exactly_full_slot)
{
	uint8_t m[64], f[64] = {0};
	uint32_t used = 0;

	/* 4 + 10 -> 14, aligned 16; 16 + 4 + 44 = 64: the slot exactly. */
	cr_assert_eq(add_frame(m, 64, &used, f, 10), 0);
	cr_assert_eq(rdm_pack_room(64, used, 44), 64);
	cr_assert_eq(add_frame(m, 64, &used, f, 44), 0);
	cr_assert_eq(used, 64);
	/* Full: not even an empty record fits, and a refused add changes nothing. */
	cr_assert_eq(rdm_pack_room(64, used, 0), 0);
	memset(m, 0x55, sizeof(m));
	cr_assert_eq(add_frame(m, 64, &used, f, 0), -EMSGSIZE);
	cr_assert_eq(used, 64);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(m[i], 0x55);
	/* One frame of the whole slot but its header. */
	used = 0;
	cr_assert_eq(add_frame(m, 64, &used, f, 60), 0);
	cr_assert_eq(used, 64);
}

Test(pack, record_that_does_not_fit)
{
	uint8_t m[64], f[64] = {0};
	uint32_t used = 0;

	cr_assert_eq(add_frame(m, 64, &used, f, 61), -EMSGSIZE, "header and frame > slot");
	cr_assert_eq(used, 0);
	cr_assert_eq(add_frame(m, 64, &used, f, 1), 0);
	cr_assert_eq(used, 5);
	/* Aligned to 8: 8 + 4 + 52 = 64 fits, 53 does not (though 5 + 4 + 53 would). */
	cr_assert_eq(rdm_pack_room(64, used, 53), 0);
	cr_assert_eq(add_frame(m, 64, &used, f, 53), -EMSGSIZE);
	cr_assert_eq(used, 5);
	cr_assert_eq(add_frame(m, 64, &used, f, 52), 0);
	cr_assert_eq(used, 64);
	/* Slots too small for a header, lengths and offsets near 2^32: no wrap-around. */
	for (uint32_t cap = 0; cap < 4; cap++)
		cr_assert_eq(rdm_pack_room(cap, 0, 0), 0);
	cr_assert_eq(rdm_pack_room(64, 65, 0), 0, "used past the slot");
	cr_assert_eq(rdm_pack_room(64, 0, 0xFFFFFFFFu), 0);
	cr_assert_eq(rdm_pack_room(0xFFFFFFFFu, 0xFFFFFFFDu, 0), 0);
	cr_assert_eq(rdm_pack_room(0xFFFFFFFFu, 0xFFFFFFF8u, 3), 0xFFFFFFFFu);
	used = 0;
	cr_assert_eq(rdm_pack_add(m, 64, &used, f, 0xFFFFFFF0u, f, 0x20), -EMSGSIZE,
		     "header and packet lengths that wrap");
}

Test(pack, zero_length_frames_allowed)
{
	uint8_t m[CAP];
	uint32_t used = 0, end;
	uint64_t bytes;
	struct rdm_pack_rd r;
	struct rdm_pack_rec rec;

	for (int i = 0; i < 3; i++)
		cr_assert_eq(rdm_pack_add(m, CAP, &used, NULL, 0, NULL, 0), 0);
	cr_assert_eq(used, 12);
	r = (struct rdm_pack_rd){m, used, 0};
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(rdm_pack_next(&r, &rec), 1);
		cr_assert_eq(rec.len, 0);
		cr_assert_eq(rec.frame, m + 4 * i + 4);
	}
	cr_assert_eq(rdm_pack_next(&r, &rec), 0);
	cr_assert_eq(rdm_pack_scan(m, used, &end, &bytes), 0, "empty frames are records");
	cr_assert_eq(end, 12);
	cr_assert_eq(bytes, 0);
}

/* A message with no record at all is malformed: the receive path drops and counts it. */
Test(pack, empty_message_holds_no_record)
{
	uint8_t m[4] = {0};
	uint32_t end = 99;
	uint64_t bytes = 99;
	struct rdm_pack_rd r = {m, 0, 0};
	struct rdm_pack_rec rec;

	cr_assert_eq(rdm_pack_next(&r, &rec), 0);
	cr_assert_eq(rdm_pack_scan(m, 0, &end, &bytes), -EBADMSG);
	cr_assert_eq(end, 0);
	cr_assert_eq(bytes, 0);
}

Test(pack, truncated_length_prefix)
{
	uint8_t m[CAP] = {0};
	uint32_t used = 0, end;
	uint64_t bytes;

	/* Alone: 1 to 3 bytes, too short for a length. */
	for (uint32_t len = 1; len < 4; len++) {
		struct rdm_pack_rd r = {m, len, 0};
		struct rdm_pack_rec rec;

		cr_assert_eq(rdm_pack_next(&r, &rec), -EBADMSG);
		cr_assert_eq(rdm_pack_scan(m, len, &end, &bytes), -EBADMSG);
		cr_assert_eq(end, 0);
	}
	/* After a record ending on a 4-byte boundary: 1 to 3 bytes more are a broken
	 * header, the record before them still good (what test_rdma_flow's malformed packed test
	 * sends: frame 1, then 2 bytes). */
	cr_assert_eq(rdm_pack_add(m, CAP, &used, (const uint8_t *)"abcd", 4, NULL, 0), 0);
	cr_assert_eq(used, 8);
	for (uint32_t extra = 1; extra < 4; extra++) {
		cr_assert_eq(rdm_pack_scan(m, used + extra, &end, &bytes), -EBADMSG);
		cr_assert_eq(end, 8);
		cr_assert_eq(bytes, 4);
	}
}

/* Bytes after the last record that do not reach its next 4-byte boundary are its pad, not
 * a record: nothing malformed. */
Test(pack, pad_after_last_record_is_not_a_record)
{
	uint8_t m[CAP] = {0};
	uint32_t used = 0, end;
	uint64_t bytes;
	struct rdm_pack_rd r;
	struct rdm_pack_rec rec;

	cr_assert_eq(rdm_pack_add(m, CAP, &used, (const uint8_t *)"abcde", 5, NULL, 0), 0);
	for (uint32_t extra = 0; extra < 3; extra++) {
		r = (struct rdm_pack_rd){m, used + extra, 0};
		cr_assert_eq(rdm_pack_next(&r, &rec), 1);
		cr_assert_eq(r.off, used + extra, "moved to the end");
		cr_assert_eq(rdm_pack_next(&r, &rec), 0);
		cr_assert_eq(rdm_pack_scan(m, used + extra, &end, &bytes), 0);
		cr_assert_eq(end, 9);
	}
	/* At the boundary and one byte on: a header cut short. */
	cr_assert_eq(rdm_pack_scan(m, 13, &end, &bytes), -EBADMSG);
	cr_assert_eq(end, 9);
}

Test(pack, length_past_the_end)
{
	uint8_t m[CAP] = {0};
	uint32_t end;
	uint64_t bytes;
	struct rdm_pack_rd r = {m, 12, 0};
	struct rdm_pack_rec rec;

	put_len(m, 0, 8); /* exactly to the end: good */
	cr_assert_eq(rdm_pack_scan(m, 12, &end, &bytes), 0);
	cr_assert_eq(end, 12);
	put_len(m, 0, 9); /* one byte past */
	cr_assert_eq(rdm_pack_next(&r, &rec), -EBADMSG);
	cr_assert_eq(r.off, 0, "the reader stays on the bad record");
	cr_assert_eq(rdm_pack_scan(m, 12, &end, &bytes), -EBADMSG);
	cr_assert_eq(end, 0);
	cr_assert_eq(bytes, 0);
}

Test(pack, huge_length)
{
	static const uint32_t lens[] = {0xFFFFFFFFu, 0xFFFFFFFCu, 0x80000000u, 0x7FFFFFFFu, 9999};
	uint8_t m[16] = {0};
	uint32_t end;
	uint64_t bytes;

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct rdm_pack_rd r = {m, sizeof(m), 0};
		struct rdm_pack_rec rec;

		put_len(m, 0, lens[i]);
		cr_assert_eq(rdm_pack_next(&r, &rec), -EBADMSG, "length %u", lens[i]);
		cr_assert_eq(rdm_pack_scan(m, sizeof(m), &end, &bytes), -EBADMSG);
		cr_assert_eq(end, 0);
	}
	/* A buffer length near 2^32 with a record near its end: the aligned offset must not
	 * wrap to 0 (only the header is read, so a small buffer stands in). */
	{
		struct rdm_pack_rd r = {m, 0xFFFFFFFFu, 0};
		struct rdm_pack_rec rec;

		put_len(m, 0, 0xFFFFFFFFu - 4 - 2); /* ends 2 bytes short of the end */
		cr_assert_eq(rdm_pack_next(&r, &rec), 1);
		cr_assert_eq(r.off, 0xFFFFFFFFu, "at the end, not wrapped");
		cr_assert_eq(rdm_pack_next(&r, &rec), 0);
	}
}

/* The receive path: rdm_pack_scan on arrival counts a malformed message once and keeps
 * the records before the bad one; delivery then reads [0, end) record by record. */
Test(pack, reader_stops_at_first_bad_record)
{
	uint8_t m[CAP] = {0};
	uint32_t used = 0, end, bad;
	uint64_t bytes;
	struct rdm_pack_rd r;
	struct rdm_pack_rec rec;

	cr_assert_eq(rdm_pack_add(m, CAP, &used, (const uint8_t *)"one", 3, NULL, 0), 0);
	cr_assert_eq(rdm_pack_add(m, CAP, &used, (const uint8_t *)"two!", 4, NULL, 0), 0);
	bad = (used + 3) & ~3u;
	put_len(m, bad, 9999); /* then a good-looking record after the bad one */
	put_len(m, bad + 8, 1);
	m[bad + 12] = 'x';
	used = bad + 13;
	r = (struct rdm_pack_rd){m, used, 0};
	cr_assert_eq(rdm_pack_next(&r, &rec), 1);
	cr_assert_eq(rdm_pack_next(&r, &rec), 1);
	cr_assert_eq(rec.len, 4);
	cr_assert_eq(memcmp(rec.frame, "two!", 4), 0);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(rdm_pack_next(&r, &rec), -EBADMSG, "and again");
		cr_assert_eq(r.off, bad);
	}
	cr_assert_eq(rdm_pack_scan(m, used, &end, &bytes), -EBADMSG);
	cr_assert_eq(end, 16, "the second record's end");
	cr_assert_eq(bytes, 7);
	/* Delivery's walk, from each record's start, up to end. */
	r = (struct rdm_pack_rd){m, end, 0};
	cr_assert_eq(rdm_pack_next(&r, &rec), 1);
	cr_assert_eq(r.off, 8);
	r = (struct rdm_pack_rd){m, end, r.off};
	cr_assert_eq(rdm_pack_next(&r, &rec), 1);
	cr_assert_eq(rec.len, 4);
	cr_assert_eq(r.off, end);
	cr_assert_eq(rdm_pack_next(&r, &rec), 0);
}
