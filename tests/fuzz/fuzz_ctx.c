/* libFuzzer target for flow contexts (transport/framectx.c): the input is one
 * connection's stream of frames, each a 2-byte big-endian length and its bytes. Every
 * frame must decode, be a state-only frame, or fail with a frame error; states kept
 * across frames must never be read after they are freed (ASan). What decodes is sent on
 * through a sender's contexts to a second receiver, which must decode the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/framectx.h"

static uint8_t hdrs[8192], wire[8192];

static int same_str(struct rdm_str a, struct rdm_str b)
{
	return a.len == b.len && !memcmp(a.p, b.p, a.len);
}

/* f passed through t and decoded by r2 must come out as it went in. */
static void relay(struct rdm_ctx_tx *t, struct rdm_ctx_rx *r2, const struct rdm_frame *f)
{
	struct rdm_txframe out[RDM_CTX_OUT_MAX];
	struct rdm_frame g;
	int k = rdm_ctx_encode(t, f, hdrs, sizeof(hdrs), out), rc = -1;

	if (k < 0) {
		rdm_ctx_tx_reset(t); /* as a node does with a frame it cannot send */
		rdm_ctx_rx_reset(r2);
		return;
	}
	for (int i = 0; i < k; i++) {
		if (out[i].hdr_len + out[i].pkt_len > sizeof(wire))
			abort();
		memcpy(wire, out[i].hdr, out[i].hdr_len);
		if (out[i].pkt_len)
			memcpy(wire + out[i].hdr_len, out[i].pkt, out[i].pkt_len);
		rc = rdm_ctx_decode(r2, &g, wire, out[i].hdr_len + out[i].pkt_len);
		if (rc != (i + 1 < k ? 1 : 0))
			abort();
	}
	if (g.present != f->present || g.spi != f->spi || g.ttl != f->ttl ||
	    g.n_hops != f->n_hops || g.n_groups != f->n_groups || g.pkt_len != f->pkt_len ||
	    memcmp(g.pkt, f->pkt, f->pkt_len))
		abort();
	for (int i = 0; i < f->n_hops; i++)
		if (g.hops[i].ns != f->hops[i].ns || g.hops[i].node != f->hops[i].node)
			abort();
	/* Every field of the state: a sender that thinks a state unchanged when it is not
	 * would give the next hop the flow's old one. */
	if (((f->present & RDM_F_TENANT) && !same_str(g.tenant, f->tenant)) ||
	    ((f->present & RDM_F_USER) && !same_str(g.user, f->user)) ||
	    ((f->present & RDM_F_APP_NAME) && !same_str(g.app_name, f->app_name)) ||
	    ((f->present & RDM_F_HOST) && !same_str(g.host, f->host)) ||
	    ((f->present & RDM_F_RULE) && !same_str(g.rule, f->rule)) ||
	    ((f->present & RDM_F_CATEGORY) &&
	     (!same_str(g.category, f->category) || g.category_id != f->category_id)))
		abort();
	for (int i = 0; (f->present & RDM_F_GROUPS) && i < f->n_groups; i++)
		if (!same_str(g.groups[i], f->groups[i]))
			abort();
	if (((f->present & RDM_F_FLOW_ID) && g.flow_id != f->flow_id) ||
	    ((f->present & RDM_F_FLOW_KEY) && memcmp(&g.key, &f->key, sizeof(g.key))) ||
	    ((f->present & RDM_F_SEQ) && (g.seq != f->seq || g.origin != f->origin)) ||
	    ((f->present & RDM_F_APP_ID) &&
	     (g.master_proto != f->master_proto || g.app_proto != f->app_proto)) ||
	    ((f->present & RDM_F_VERDICT) &&
	     (g.verdict != f->verdict || g.verdict_flags != f->verdict_flags ||
	      g.rule_id != f->rule_id)) ||
	    ((f->present & RDM_F_FLAGS) && g.flags != f->flags) ||
	    ((f->present & RDM_F_RISK) && g.risk != f->risk))
		abort();
	rdm_ctx_rx_release(r2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rdm_ctx_rx *r = rdm_ctx_rx_new(NULL), *r2 = rdm_ctx_rx_new(NULL);
	struct rdm_ctx_tx *t = rdm_ctx_tx_new(NULL);
	struct rdm_frame f[4];
	int n = 0;

	if (!r || !r2 || !t)
		abort();
	while (size >= 2) {
		size_t len = (size_t)data[0] << 8 | data[1];
		int rc;

		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		/* Up to four decoded frames are kept, as a batch keeps them until it is
		 * sent: their strings must stay valid while later frames set slots. */
		rc = rdm_ctx_decode(r, &f[n], data, len);
		if (rc < 0 && (rc > -RDM_FERR_FIRST || rc <= -RDM_FERR_LAST))
			abort();
		if (rc == 0 && ++n == 4) {
			for (int i = 0; i < n; i++)
				relay(t, r2, &f[i]);
			rdm_ctx_rx_release(r);
			n = 0;
		}
		data += len;
		size -= len;
	}
	for (int i = 0; i < n; i++)
		relay(t, r2, &f[i]);
	rdm_ctx_rx_free(r);
	rdm_ctx_rx_free(r2);
	rdm_ctx_tx_free(t);
	return 0;
}
