/* badframes: connects to a node's data address like an upstream hop and sends one
 * malformed frame of each kind the decoder knows, length-prefixed as on the wire, then
 * closes. The node must count each under its own drop reason and carry on.
 *   badframes ADDR:PORT
 * With "absurd", the frames decode but their contents are nonsense an upstream stage
 * could still write: packets that are not IP, truncated, fragments, a flow key that does
 * not fit its packet, no packet at all, strings of 255 bytes of binary, every group, ids
 * and risk bits at their maximum, a forged verdict and notice, a full hop list, a TTL
 * about to run out. The stages must count them, drop or pass them, and never crash.
 *   badframes ADDR:PORT absurd
 * A node that asks its upstreams for proof (transport.protect: auth) takes frames only
 * from a proven one: --certs DIR --as NAME proves the sender as NAME (DIR/NAME.pem) and
 * checks that the node is EXPECT (--expect), before the first frame. Well-formed frames
 * (absurd, path) carry the service path --spi N --si N (default 1 and 200): a node takes
 * only the path its upstream may send.
 * With "path", 3 well-formed frames of another chain (spi + 1) and 3 whose index skips a
 * stage (si + 1) are sent: the node must drop all 6 as a wrong path.
 *   badframes --spi 21 --si 253 ADDR:PORT path */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/pkt.h"
#include "lib/tls_hs.h"
#include "node/config.h"
#include "transport/frame.h"

/* Proves this end as name to the node behind fd, which must be expect. 0 or -1. */
static int prove(int fd, const char *dir, const char *name, const char *expect)
{
	char err[512];
	struct rdm_tls_ctx *ctx = rdm_tls_ctx_load(dir, name, 0, err, sizeof(err));
	struct rdm_tls_hs *hs = NULL;
	int rc = -1, ww;

	if (ctx)
		hs = rdm_tls_hs_new(ctx, fd, expect, NULL, NULL, "node", err, sizeof(err));
	/* The socket blocks, so each step finishes or fails. */
	if (hs)
		rc = rdm_tls_hs_step(hs, &ww, err, sizeof(err)) == 1 ? 0 : -1;
	if (rc < 0)
		fprintf(stderr, "badframes: %s\n", err);
	rdm_tls_hs_free(hs);
	rdm_tls_ctx_free(ctx);
	return rc;
}

static int send_frame(int fd, const uint8_t *f, uint32_t len)
{
	uint8_t p[4] = {len >> 24, len >> 16, len >> 8, len};

	return write(fd, p, 4) == 4 && write(fd, f, len) == (ssize_t)len ? 0 : -1;
}

/* A plain IPv4 TCP SYN 10.1.0.9:40000 -> 10.2.0.9:443 (checksums unchecked here). */
static uint32_t syn(uint8_t *p)
{
	static const uint8_t b[40] = {0x45, 0, 0,  40, 0,    1, 0x40, 0,    64, 6,    0, 0, 10, 1,
				      0,    9, 10, 2,  0,    9, 0x9c, 0x40, 1,	0xbb, 0, 0, 0,	1,
				      0,    0, 0,  0,  0x50, 2, 0xff, 0xff, 0,	0,    0, 0};

	memcpy(p, b, sizeof(b));
	return sizeof(b);
}

static uint32_t spi = 1;
static uint8_t si = 200;

/* Sends 6 frames off the path spi/si; returns how many went out. */
static int off_path(int fd)
{
	uint8_t buf[256], pkt[64];
	struct rdm_frame f;
	int sent = 0;

	for (int k = 0; k < 6; k++) {
		uint32_t plen = syn(pkt);
		int len;

		rdm_frame_init(&f, k < 3 ? spi + 1 : spi, k < 3 ? si : (uint8_t)(si + 1),
			       RDM_NSH_NP_IPV4);
		rdm_pkt_flow_key(pkt, plen, &f.key);
		f.present = RDM_F_FLOW_KEY;
		len = rdm_frame_encode_hdr(&f, buf, sizeof(buf));
		if (len < 0)
			return sent;
		memcpy(buf + len, pkt, plen);
		sent += send_frame(fd, buf, (uint32_t)len + plen) == 0;
	}
	return sent;
}

/* Sends the absurd frames; returns how many went out. */
static int absurd(int fd)
{
	static uint8_t buf[8192], pkt[2048], junk[255];
	static char str[RDM_MAX_GROUPS][14];
	struct rdm_frame f;
	int sent = 0, len;

	memset(junk, 0xff, sizeof(junk));
	for (int i = 0; i < (int)sizeof(junk); i += 7)
		junk[i] = (uint8_t)i; /* NULs, quotes, control bytes, bytes >= 0x80 */
	for (int g = 0; g < RDM_MAX_GROUPS; g++)
		memset(str[g], 'a' + g, sizeof(str[g]));
	for (int k = 0; k < 11; k++) {
		uint32_t plen = syn(pkt);

		rdm_frame_init(&f, spi, si, RDM_NSH_NP_IPV4);
		rdm_pkt_flow_key(pkt, plen, &f.key);
		f.flow_id = rdm_flow_hash(&f.key);
		f.present = RDM_F_FLOW_KEY | RDM_F_FLOW_ID;
		switch (k) {
		case 0: /* not IP at all, under a TCP flow key */
			pkt[0] = 0x50;
			break;
		case 1: /* truncated: the IP header says 60 bytes, 24 are there */
			pkt[0] = 0x4f;
			plen = 24;
			break;
		case 2: /* a later fragment */
			pkt[6] = 0x00, pkt[7] = 100;
			pkt[9] = 17;
			break;
		case 3: /* an IPv6 flow key on an IPv4 packet */
			f.key.family = 6;
			f.key.sport = f.key.dport = 0;
			break;
		case 4: /* no packet, no notice */
			plen = 0;
			break;
		case 5: /* strings at their limit, binary */
			f.tenant = (struct rdm_str){(const char *)junk, 255};
			f.user = (struct rdm_str){(const char *)junk, 255};
			f.host = (struct rdm_str){(const char *)junk, 255};
			f.present |= RDM_F_TENANT | RDM_F_USER | RDM_F_HOST;
			break;
		case 6: /* every group, ids and risk at their maximum */
			for (int g = 0; g < RDM_MAX_GROUPS; g++)
				f.groups[g] =
				    (struct rdm_str){str[g], 14}; /* 16 x 15 B: a full TLV */
			f.n_groups = RDM_MAX_GROUPS;
			f.master_proto = f.app_proto = 0xffff;
			f.category_id = 0xffff;
			f.category = (struct rdm_str){(const char *)junk, 200};
			f.app_name = (struct rdm_str){(const char *)junk, 255};
			f.risk = ~0ull;
			f.present |= RDM_F_GROUPS | RDM_F_APP_ID | RDM_F_CATEGORY | RDM_F_APP_NAME |
				     RDM_F_RISK;
			break;
		case 7: /* a forged verdict and rule */
			f.verdict = RDM_V_DENY;
			f.rule_id = 0xffffffff;
			f.rule = (struct rdm_str){"forged", 6};
			f.present |= RDM_F_VERDICT | RDM_F_RULE;
			break;
		case 8: /* every flag, a notice among them, with a packet */
			f.flags = 0xffffffff;
			f.present |= RDM_F_FLAGS;
			break;
		case 9: /* a full hop list */
			for (int h = 0; h < RDM_MAX_HOPS; h++)
				rdm_frame_add_hop(&f, 1000 + (uint32_t)h, 1);
			break;
		case 10: /* one hop of TTL left */
			f.ttl = 2;
			break;
		}
		f.pkt = pkt;
		f.pkt_len = plen;
		len = rdm_frame_encode(&f, buf, sizeof(buf));
		if (len < 0) {
			fprintf(stderr, "badframes: absurd frame %d does not encode: %d\n", k, len);
			continue;
		}
		sent += send_frame(fd, buf, (uint32_t)len) == 0;
	}
	return sent;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"certs", required_argument, NULL, 'c'},  {"as", required_argument, NULL, 'a'},
	    {"expect", required_argument, NULL, 'e'}, {"spi", required_argument, NULL, 'p'},
	    {"si", required_argument, NULL, 'i'},     {NULL, 0, NULL, 0}};
	const char *dir = NULL, *as = NULL, *expect = NULL;
	struct rdm_addr a;
	uint8_t good[64], f[64];
	struct rdm_frame fr;
	int fd, len, sent = 0, c;

	while ((c = getopt_long(argc, argv, "c:a:e:p:i:", opts, NULL)) != -1) {
		if (c == 'p')
			spi = (uint32_t)strtoul(optarg, NULL, 0);
		else if (c == 'i')
			si = (uint8_t)strtoul(optarg, NULL, 0);
		else if (c == 'c')
			dir = optarg;
		else if (c == 'a')
			as = optarg;
		else if (c == 'e')
			expect = optarg;
		else
			return 2;
	}
	argc -= optind - 1;
	argv += optind - 1;
	if ((argc != 2 && (argc != 3 || (strcmp(argv[2], "absurd") && strcmp(argv[2], "path")))) ||
	    rdm_addr_parse(&a, argv[1]) < 0 || (dir && (!as || !expect))) {
		fprintf(stderr, "usage: badframes [--certs DIR --as NAME --expect NAME] [--spi N "
				"--si N] ADDR:PORT [absurd|path]\n");
		return 2;
	}
	fd = socket(a.ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a.ss, a.len) < 0) {
		perror("badframes: connect");
		return 1;
	}
	if (dir && prove(fd, dir, as, expect) < 0)
		return 1;
	if (argc == 3 && !strcmp(argv[2], "path")) {
		sent = off_path(fd);
		close(fd);
		printf("badframes: sent %d frames off the path %u/%u to %s\n", sent, spi, si,
		       argv[1]);
		return sent == 6 ? 0 : 1;
	}
	if (argc == 3) {
		sent = absurd(fd);
		close(fd);
		printf("badframes: sent %d absurd frames to %s\n", sent, argv[1]);
		return sent == 11 ? 0 : 1;
	}
	rdm_frame_init(&fr, 1, 255, RDM_NSH_NP_IPV4);
	fr.present = RDM_F_FLOW_ID;
	fr.flow_id = 1;
	len = rdm_frame_encode_hdr(&fr, good, sizeof(good)); /* 20 bytes: base + one TLV */

	/* short */
	sent += send_frame(fd, good, 5) == 0;
	/* bad_version */
	memcpy(f, good, (size_t)len);
	f[0] |= 0x80;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* bad_md_type */
	memcpy(f, good, (size_t)len);
	f[2] = (f[2] & 0xF0) | 1;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* hdr_zero_len */
	memcpy(f, good, (size_t)len);
	f[1] &= 0xC0;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* hdr_overrun: the header claims 10 words of a 20-byte frame */
	memcpy(f, good, (size_t)len);
	f[1] = (f[1] & 0xC0) | 10;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* tlv_overrun: the TLV claims 200 bytes */
	memcpy(f, good, (size_t)len);
	f[11] = 200;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* tlv_bad_value: a flow id of 4 bytes */
	memcpy(f, good, (size_t)len);
	f[11] = 4;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	/* tlv_critical: an unknown critical type of ours */
	memcpy(f, good, (size_t)len);
	f[10] = 0xFF;
	sent += send_frame(fd, f, (uint32_t)len) == 0;
	close(fd);
	printf("badframes: sent %d malformed frames to %s\n", sent, argv[1]);
	return sent == 8 ? 0 : 1;
}
