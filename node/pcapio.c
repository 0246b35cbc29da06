/* Captures in and out through libpcap. */
#include "node/pcapio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pcap/pcap.h>

#include "transport/frame.h"
#include "lib/byteorder.h"

#define ETH_HLEN      14
#define ETHERTYPE_NSH 0x894f

/* The largest frame the NSH writer takes: a full header and a maximal IP packet. */
#define PCAPIO_MAX_FRAME (RDM_NSH_MAX_HDR + 65535)
#define PCAPIO_SNAPLEN	 (ETH_HLEN + PCAPIO_MAX_FRAME)

/* Raw IP link types as pcap_datalink() reports them: DLT_RAW is 12 on most systems and
 * 14 on OpenBSD, and files written elsewhere may carry either, or LINKTYPE_RAW (101)
 * where libpcap does not map it. */
#define LT_RAW_A 12
#define LT_RAW_B 14
#define LT_RAW_C 101

#ifndef DLT_LINUX_SLL2
#define DLT_LINUX_SLL2 276
#endif
#ifndef DLT_IPV4
#define DLT_IPV4 228
#endif
#ifndef DLT_IPV6
#define DLT_IPV6 229
#endif

struct rdm_pcap_in {
	pcap_t *p;
	int dlt;
	uint64_t skipped;
};

struct rdm_pcap_out {
	pcap_t *dead;
	pcap_dumper_t *d;
	enum rdm_pcap_kind kind;
	uint8_t *frame; /* RDM_PCAP_NSH: Ethernet header, then room for one frame */
};

static int dlt_raw(int dlt)
{
	return dlt == DLT_RAW || dlt == LT_RAW_A || dlt == LT_RAW_B || dlt == LT_RAW_C;
}

static int dlt_supported(int dlt)
{
	switch (dlt) {
	case DLT_EN10MB:
	case DLT_IPV4:
	case DLT_IPV6:
	case DLT_LINUX_SLL:
	case DLT_LINUX_SLL2:
	case DLT_NULL:
	case DLT_LOOP:
		return 1;
	default:
		return dlt_raw(dlt);
	}
}

struct rdm_pcap_in *rdm_pcap_open_in(const char *path, char *err, unsigned errlen)
{
	char ebuf[PCAP_ERRBUF_SIZE] = "";
	struct rdm_pcap_in *in;
	pcap_t *p;
	int dlt;

	p = pcap_open_offline(path, ebuf);
	if (!p) {
		snprintf(err, errlen, "%s: %s", path, ebuf);
		return NULL;
	}
	dlt = pcap_datalink(p);
	if (!dlt_supported(dlt)) {
		const char *name = pcap_datalink_val_to_name(dlt);

		snprintf(err, errlen, "%s: unsupported link type %s (%d)", path,
			 name ? name : "unknown", dlt);
		pcap_close(p);
		return NULL;
	}
	in = calloc(1, sizeof(*in));
	if (!in) {
		snprintf(err, errlen, "%s: out of memory", path);
		pcap_close(p);
		return NULL;
	}
	in->p = p;
	in->dlt = dlt;
	return in;
}

/* Skips 802.1Q/802.1ad tags from *off, leaving in *type the ethertype that follows. */
static int skip_vlans(const uint8_t *d, uint32_t len, uint32_t *off, uint16_t *type)
{
	while (*type == 0x8100 || *type == 0x88a8 || *type == 0x9100) {
		if (len - *off < 4)
			return -1;
		*type = rdm_get_be16(d + *off + 2);
		*off += 4;
	}
	return 0;
}

/* The offset of the IP packet in a frame of link type dlt, or -1 if it carries none. */
static int ip_offset(int dlt, const uint8_t *d, uint32_t len)
{
	uint32_t off, fam;
	uint16_t type;

	if (dlt_raw(dlt))
		return 0;
	switch (dlt) {
	case DLT_IPV4:
	case DLT_IPV6:
		return 0;
	case DLT_EN10MB:
		if (len < ETH_HLEN)
			return -1;
		type = rdm_get_be16(d + 12);
		off = ETH_HLEN;
		break;
	case DLT_LINUX_SLL: /* type, ARPHRD, address length, 8-byte address, protocol */
		if (len < 16)
			return -1;
		type = rdm_get_be16(d + 14);
		off = 16;
		break;
	case DLT_LINUX_SLL2: /* protocol, reserved, ifindex, ARPHRD, type, addrlen, addr */
		if (len < 20)
			return -1;
		type = rdm_get_be16(d);
		off = 20;
		break;
	case DLT_NULL:
	case DLT_LOOP:
		/* An address family: host order of the writer for NULL, network order for
		 * LOOP; take whichever reading is a small number. */
		if (len < 4)
			return -1;
		fam = dlt == DLT_LOOP ? rdm_get_be32(d) : rdm_get_le32(d);
		if (fam > 0xffff)
			fam = dlt == DLT_LOOP ? rdm_get_le32(d) : rdm_get_be32(d);
		/* AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30 (BSDs). */
		if (fam == 2)
			return 4;
		if (fam == 10 || fam == 24 || fam == 28 || fam == 30)
			return 4;
		return -1;
	default:
		return -1;
	}
	if (skip_vlans(d, len, &off, &type))
		return -1;
	if (type != 0x0800 && type != 0x86dd)
		return -1;
	return (int)off;
}

/* Checks that p is an IP packet of the version the link type implies, and trims link
 * padding (Ethernet pads to 60 bytes) off the end when the IP length says so. */
static uint32_t ip_check(int dlt, const uint8_t *p, uint32_t len)
{
	unsigned v;
	uint32_t ilen;

	if (len < 1)
		return 0;
	v = p[0] >> 4;
	if ((v != 4 && v != 6) || (dlt == DLT_IPV4 && v != 4) || (dlt == DLT_IPV6 && v != 6))
		return 0;
	if (v == 4 && len >= 20)
		ilen = rdm_get_be16(p + 2);
	else if (v == 6 && len >= 40 && rdm_get_be16(p + 4) != 0)
		ilen = 40 + (uint32_t)rdm_get_be16(p + 4);
	else
		return len;
	return ilen >= 20 && ilen < len ? ilen : len;
}

int rdm_pcap_next(struct rdm_pcap_in *in, const uint8_t **pkt)
{
	for (;;) {
		struct pcap_pkthdr *h;
		const uint8_t *d;
		uint32_t len;
		int rc, off;

		rc = pcap_next_ex(in->p, &h, &d);
		if (rc == PCAP_ERROR_BREAK)
			return 0;
		if (rc < 0)
			return -EIO;
		if (rc == 0)
			continue; /* live captures only: a timeout */
		if (h->caplen < h->len) {
			in->skipped++; /* cut by the snap length: not the packet that was sent */
			continue;
		}
		off = ip_offset(in->dlt, d, h->caplen);
		if (off < 0) {
			in->skipped++;
			continue;
		}
		len = ip_check(in->dlt, d + off, h->caplen - (uint32_t)off);
		if (len == 0) {
			in->skipped++;
			continue;
		}
		*pkt = d + off;
		return (int)len;
	}
}

uint64_t rdm_pcap_in_skipped(const struct rdm_pcap_in *in)
{
	return in ? in->skipped : 0;
}

void rdm_pcap_close_in(struct rdm_pcap_in *in)
{
	if (!in)
		return;
	pcap_close(in->p);
	free(in);
}

struct rdm_pcap_out *rdm_pcap_open_out(const char *path, enum rdm_pcap_kind kind, char *err,
				       unsigned errlen)
{
	static const uint8_t eth[ETH_HLEN] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02,
					      0x00, 0x00, 0x00, 0x00, 0x01, 0x89, 0x4f};
	struct rdm_pcap_out *out;
	int dlt;

	if (kind != RDM_PCAP_IP && kind != RDM_PCAP_NSH) {
		snprintf(err, errlen, "%s: bad capture kind %d", path, (int)kind);
		return NULL;
	}
	out = calloc(1, sizeof(*out));
	if (!out) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	out->kind = kind;
	if (kind == RDM_PCAP_NSH) {
		out->frame = malloc(PCAPIO_SNAPLEN);
		if (!out->frame) {
			snprintf(err, errlen, "%s: out of memory", path);
			free(out);
			return NULL;
		}
		memcpy(out->frame, eth, ETH_HLEN);
	}
	dlt = kind == RDM_PCAP_NSH ? DLT_EN10MB : DLT_RAW;
	/* Nanosecond files keep the timestamps we are given. */
	out->dead =
	    pcap_open_dead_with_tstamp_precision(dlt, PCAPIO_SNAPLEN, PCAP_TSTAMP_PRECISION_NANO);
	if (!out->dead) {
		snprintf(err, errlen, "%s: pcap_open_dead failed", path);
		rdm_pcap_close_out(out);
		return NULL;
	}
	out->d = pcap_dump_open(out->dead, path);
	if (!out->d) {
		snprintf(err, errlen, "%s", pcap_geterr(out->dead));
		rdm_pcap_close_out(out);
		return NULL;
	}
	return out;
}

int rdm_pcap_write(struct rdm_pcap_out *out, const uint8_t *data, uint32_t len, uint64_t ts_ns)
{
	struct pcap_pkthdr h;
	const uint8_t *rec = data;

	if (out->kind == RDM_PCAP_NSH) {
		if (len > PCAPIO_MAX_FRAME)
			return -EMSGSIZE;
		memcpy(out->frame + ETH_HLEN, data, len);
		rec = out->frame;
		len += ETH_HLEN;
	} else if (len > PCAPIO_SNAPLEN) {
		return -EMSGSIZE;
	}
	memset(&h, 0, sizeof(h));
	h.ts.tv_sec = (time_t)(ts_ns / 1000000000u);
	h.ts.tv_usec = (suseconds_t)(ts_ns % 1000000000u); /* nanoseconds in a NANO file */
	h.caplen = h.len = len;
	pcap_dump((u_char *)out->d, &h, rec);
	if (ferror(pcap_dump_file(out->d)))
		return -EIO;
	return 0;
}

void rdm_pcap_close_out(struct rdm_pcap_out *out)
{
	if (!out)
		return;
	if (out->d)
		pcap_dump_close(out->d);
	if (out->dead)
		pcap_close(out->dead);
	free(out->frame);
	free(out);
}
