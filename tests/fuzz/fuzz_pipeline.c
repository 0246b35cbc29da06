/* libFuzzer target for the stage pipeline: identity -> dpi -> policy -> flowlog, the
 * SASE chain's stages in one process, fed what an upstream node or the wire could send.
 * The first input byte picks how the rest is read:
 *   even: a whole frame from upstream (any TLV values, however absurd);
 *   odd:  a raw packet entering the chain (any bytes: short, fragments, not IP).
 * Every stage must survive it, replies must be packets that parse, and whatever passes
 * must still encode (a stage that writes state it cannot carry is a bug). The stages
 * keep their flow tables across inputs, so flows build up state as in a real run; a
 * clock that moves with the input count drives their timeouts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/pkt.h"
#include "lib/yaml.h"
#include "services/flowtable.h"
#include "services/stage.h"
#include "transport/frame.h"
#include "transport/loop.h"

#define N_STAGES 4

static const char *const stage_yaml[N_STAGES] = {
    "name: identity\ndirectory: DIR\n",
    "name: dpi\npacket_budget: 8\n",
    "name: policy\ndefault: allow\nrules:\n"
    "  - {name: no-blocked, match: {host: ['*.blocked.test', casino.test]}, action: reject}\n"
    "  - {name: no-telnet, match: {proto: tcp, port: 23}, action: deny}\n"
    "  - {name: acme-dns, match: {tenant: acme, app: DNS}, action: log}\n"
    "  - {name: no-udp-9, match: {proto: udp, port: 9}, action: reject}\n",
    "name: flowlog\nfile: /dev/null\ninterval_s: 1\n",
};
static const char *const stage_name[N_STAGES] = {"identity", "dpi", "policy", "flowlog"};

static const struct rdm_stage_ops *ops[N_STAGES];
static void *conf[N_STAGES], *rt[N_STAGES];
static struct rdm_flow_conf flows = {.max_flows = 256,
				     .tcp_idle_ms = 2000,
				     .tcp_closed_ms = 100,
				     .udp_idle_ms = 500,
				     .other_idle_ms = 300};
static uint64_t inputs;
static uint8_t hdr[8192];

static void setup(void)
{
	static char dirpath[] = "/tmp/rdm-fuzz-dir.XXXXXX";
	struct rdm_stage_env env = {
	    .node_id = 2, .node_name = "fuzz", .worker = 0, .flows = &flows};
	char file[128], text[512], err[512];
	FILE *fp;

	if (!mkdtemp(dirpath))
		abort();
	snprintf(file, sizeof(file), "%s/directory.yaml", dirpath);
	fp = fopen(file, "w");
	if (!fp)
		abort();
	fputs("entries:\n  - {match: 10.0.0.0/8, tenant: acme, groups: [staff]}\n"
	      "  - {match: 10.1.2.3, tenant: acme, user: alice, groups: [eng, admins]}\n"
	      "  - {match: 'fd00::/8', tenant: globex}\n",
	      fp);
	fclose(fp);
	for (int s = 0; s < N_STAGES; s++) {
		struct rdm_ydoc *d;
		const char *y = stage_yaml[s];
		char *at = strstr(y, "DIR");

		if (at)
			snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - y), y, file, at + 3);
		else
			snprintf(text, sizeof(text), "%s", y);
		ops[s] = rdm_stage_find(stage_name[s]);
		d = rdm_ydoc_parse_string("fuzz.yaml", text, err, sizeof(err));
		if (!ops[s] || !d)
			abort();
		conf[s] = ops[s]->conf_new(d, rdm_ydoc_root(d), err, sizeof(err));
		rdm_ydoc_free(d);
		if (!conf[s]) {
			fprintf(stderr, "fuzz_pipeline: %s: %s\n", stage_name[s], err);
			abort();
		}
		rt[s] = ops[s]->init(conf[s], &env);
		if (!rt[s])
			abort();
	}
}

/* The packet of a reply must be one the stack would take: an IP packet that parses. */
static void check_reply(const struct rdm_frame *f)
{
	struct rdm_flow_key k;

	if (!f->pkt || f->pkt_len < 20 || f->pkt_len > 1500 ||
	    rdm_pkt_flow_key(f->pkt, f->pkt_len, &k) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rdm_frame fr, *f = &fr;
	int v;

	if (!ops[0])
		setup();
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		rdm_frame_init(f, 1, 255, rdm_pkt_next_proto(data + 1, (uint32_t)(size - 1)));
		f->pkt = data + 1;
		f->pkt_len = (uint32_t)(size - 1);
		if (rdm_pkt_flow_key(f->pkt, f->pkt_len, &f->key) == 0) {
			f->flow_id = rdm_flow_hash(&f->key);
			f->present = RDM_F_FLOW_KEY | RDM_F_FLOW_ID;
		}
	} else if (rdm_frame_decode(f, data + 1, size - 1) < 0) {
		return 0;
	}
	for (int s = 0; s < N_STAGES; s++) {
		ops[s]->process(rt[s], &f, 1, &v);
		if (v == RDM_STAGE_REPLY) {
			check_reply(f);
			break;
		}
		if (v <= 0 && !((f->present & RDM_F_FLAGS) && (f->flags & RDM_FF_NOTICE)))
			break;
		if (v <= 0) {
			f->pkt = NULL; /* the node sends a notice on without its packet */
			f->pkt_len = 0;
		}
	}
	if (rdm_frame_encode_hdr(f, hdr, sizeof(hdr)) < 0)
		abort();
	/* Time runs ahead of the real clock, 7 ms an input: flows time out, logs flush,
	 * periodic lines get written. */
	if (++inputs % 16 == 0)
		for (int s = 0; s < N_STAGES; s++)
			if (ops[s]->tick)
				ops[s]->tick(rt[s], rdm_now_ns() + inputs * 7000000ull);
	return 0;
}
