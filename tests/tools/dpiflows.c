/* dpiflows: what the dpi stage concluded about each flow, read back from a frames
 * capture (the Ethernet + NSH records an egress writes with `frames:`). Every frame is
 * decoded with rdm_frame_decode; a flow is its FLOW_KEY in either direction, oriented
 * the way its first frame went (the initiator, as the stage's flow table orients it),
 * and its result is the state its last frame carried. One line per flow, in the order
 * flows first appeared:
 *
 *   PROTO SRC:SPORT DST:DPORT packets=N app=NAME ids=IDS master=M app_id=A cat=CAT
 *         host=HOST risk=0xR done=0|1 gaveup=0|1 first_app=I first_host=J first_done=K
 *
 * IDS is written as ndpiReader writes a protocol ("91" or "91.126": master.app when a
 * master protocol is set), NAME "-" when no frame had an APP_NAME, HOST "-" when none
 * had a HOST. I, J and K number the flow's first frame (from 1) that carried an APP_ID,
 * a HOST, and the DONE flag, 0 for none: they show when the stage knew. Blanks inside a
 * string are written as '_'. Exit status 0; 1 when a frame does not decode or lacks a
 * FLOW_KEY (said on stderr), 2 on usage or I/O errors.
 *
 *   dpiflows FRAMES.pcap */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/pkt.h"
#include "transport/frame.h"
#include "transport/framectx.h"

struct flow {
	struct rdm_flow_key key; /* as the first frame carried it */
	uint64_t packets;
	uint64_t first_app, first_host, first_done; /* packet number in the flow, from 1 */
	int has_app, done, gaveup;
	uint16_t master, app;
	uint64_t risk;
	char name[RDM_STR_MAX + 1], cat[RDM_STR_MAX + 1], host[RDM_STR_MAX + 1];
};

static struct flow *flows;
static size_t n_flows, cap_flows;

static int same_flow(const struct rdm_flow_key *a, const struct rdm_flow_key *b)
{
	if (a->family != b->family || a->proto != b->proto)
		return 0;
	if (!memcmp(a->src, b->src, 16) && !memcmp(a->dst, b->dst, 16) && a->sport == b->sport &&
	    a->dport == b->dport)
		return 1;
	return !memcmp(a->src, b->dst, 16) && !memcmp(a->dst, b->src, 16) && a->sport == b->dport &&
	       a->dport == b->sport;
}

/* The flow of k, appended when new. Captures in tests hold few flows: a linear search
 * from the newest flow keeps this simple and fast enough. */
static struct flow *flow_get(const struct rdm_flow_key *k)
{
	for (size_t i = n_flows; i-- > 0;)
		if (same_flow(&flows[i].key, k))
			return &flows[i];
	if (n_flows == cap_flows) {
		size_t cap = cap_flows ? cap_flows * 2 : 64;
		struct flow *f = realloc(flows, cap * sizeof(*f));

		if (!f) {
			fprintf(stderr, "dpiflows: out of memory\n");
			exit(2);
		}
		flows = f;
		cap_flows = cap;
	}
	memset(&flows[n_flows], 0, sizeof(flows[0]));
	flows[n_flows].key = *k;
	return &flows[n_flows++];
}

/* Copies s as one word: a blank would split the line's KEY=VALUE fields. */
static void copy_str(char *dst, struct rdm_str s)
{
	for (int i = 0; i < s.len; i++)
		dst[i] = (s.p[i] == ' ' || s.p[i] == '\t' || s.p[i] == '\n') ? '_' : s.p[i];
	dst[s.len] = '\0';
}

static const char *proto_name(uint8_t p)
{
	static char buf[8];

	switch (p) {
	case IPPROTO_TCP:
		return "TCP";
	case IPPROTO_UDP:
		return "UDP";
	case IPPROTO_ICMP:
		return "ICMP";
	case IPPROTO_ICMPV6:
		return "ICMPV6";
	default:
		snprintf(buf, sizeof(buf), "%u", p);
		return buf;
	}
}

static void print_ep(int family, const uint8_t *a, uint16_t port)
{
	char s[INET6_ADDRSTRLEN];

	inet_ntop(family == 4 ? AF_INET : AF_INET6, a, s, sizeof(s));
	printf(family == 4 ? "%s:%u" : "[%s]:%u", s, port);
}

int main(int argc, char **argv)
{
	char err[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const uint8_t *d;
	uint64_t frames = 0, bad = 0;
	struct rdm_ctx_rx *ctx = rdm_ctx_rx_new(NULL); /* the capture is one link's frames */
	pcap_t *pc;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: dpiflows FRAMES.pcap\n");
		return 2;
	}
	pc = pcap_open_offline(argv[1], err);
	if (!pc) {
		fprintf(stderr, "dpiflows: %s\n", err);
		return 2;
	}
	while ((rc = pcap_next_ex(pc, &h, &d)) == 1) {
		struct rdm_frame f;
		struct flow *fl;
		int drc;

		frames++;
		if (h->caplen != h->len || h->caplen <= 14 || d[12] != 0x89 || d[13] != 0x4F) {
			fprintf(stderr, "dpiflows: record %" PRIu64 " is not a whole NSH frame\n",
				frames);
			bad++;
			continue;
		}
		rdm_ctx_rx_release(ctx);
		drc = rdm_ctx_decode(ctx, &f, d + 14, h->caplen - 14);
		if (drc == 1) {
			frames--; /* a flow's state, ahead of its frame */
			continue;
		}
		if (drc < 0 || !(f.present & RDM_F_FLOW_KEY)) {
			fprintf(stderr, "dpiflows: record %" PRIu64 ": %s\n", frames,
				drc < 0 ? rdm_frame_strerror(drc) : "no flow key");
			bad++;
			continue;
		}
		fl = flow_get(&f.key);
		fl->packets++;
		/* The last frame's state is the flow's result; fields a frame lacks keep
		 * what earlier frames said (the stage never takes state back). */
		if (f.present & RDM_F_APP_ID) {
			if (!fl->has_app)
				fl->first_app = fl->packets;
			fl->has_app = 1;
			fl->master = f.master_proto;
			fl->app = f.app_proto;
		}
		if (f.present & RDM_F_APP_NAME)
			copy_str(fl->name, f.app_name);
		if (f.present & RDM_F_CATEGORY)
			copy_str(fl->cat, f.category);
		if (f.present & RDM_F_HOST) {
			if (!fl->host[0])
				fl->first_host = fl->packets;
			copy_str(fl->host, f.host);
		}
		if (f.present & RDM_F_RISK)
			fl->risk = f.risk;
		fl->done = (f.present & RDM_F_FLAGS) && (f.flags & RDM_FF_DPI_DONE);
		fl->gaveup = (f.present & RDM_F_FLAGS) && (f.flags & RDM_FF_DPI_GAVEUP);
		if (fl->done && !fl->first_done)
			fl->first_done = fl->packets;
	}
	if (rc == -1) {
		fprintf(stderr, "dpiflows: %s: %s\n", argv[1], pcap_geterr(pc));
		pcap_close(pc);
		return 2;
	}
	pcap_close(pc);

	for (size_t i = 0; i < n_flows; i++) {
		const struct flow *fl = &flows[i];
		char ids[16];

		if (fl->master != 0 && fl->master != fl->app)
			snprintf(ids, sizeof(ids), "%u.%u", fl->master, fl->app);
		else
			snprintf(ids, sizeof(ids), "%u", fl->app);
		printf("%s ", proto_name(fl->key.proto));
		print_ep(fl->key.family, fl->key.src, fl->key.sport);
		putchar(' ');
		print_ep(fl->key.family, fl->key.dst, fl->key.dport);
		printf(" packets=%" PRIu64 " app=%s ids=%s master=%u app_id=%u cat=%s host=%s "
		       "risk=0x%" PRIx64 " done=%d gaveup=%d first_app=%" PRIu64
		       " first_host=%" PRIu64 " first_done=%" PRIu64 "\n",
		       fl->packets, fl->name[0] ? fl->name : "-", fl->has_app ? ids : "-",
		       fl->master, fl->app, fl->cat[0] ? fl->cat : "-",
		       fl->host[0] ? fl->host : "-", fl->risk, fl->done, fl->gaveup, fl->first_app,
		       fl->first_host, fl->first_done);
	}
	fprintf(stderr, "dpiflows: %" PRIu64 " frames, %zu flows, %" PRIu64 " bad\n", frames,
		n_flows, bad);
	free(flows);
	return bad ? 1 : 0;
}
