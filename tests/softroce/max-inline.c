/* Prints the largest max_inline_data an RC QP can be created with on a verbs device
 * (ibv_devinfo does not show it). Part of the Soft-RoCE self-test (selftest.sh).
 * usage: max-inline [DEVICE]      (default: the first device) */
#include <infiniband/verbs.h>
#include <stdio.h>
#include <string.h>

static int try_inline(struct ibv_pd *pd, struct ibv_cq *cq, uint32_t want, uint32_t *got)
{
	struct ibv_qp_init_attr a;
	struct ibv_qp *qp;

	memset(&a, 0, sizeof(a));
	a.send_cq = cq;
	a.recv_cq = cq;
	a.qp_type = IBV_QPT_RC;
	a.cap.max_send_wr = 16;
	a.cap.max_recv_wr = 16;
	a.cap.max_send_sge = 1;
	a.cap.max_recv_sge = 1;
	a.cap.max_inline_data = want;
	qp = ibv_create_qp(pd, &a);
	if (!qp)
		return 0;
	*got = a.cap.max_inline_data;
	ibv_destroy_qp(qp);
	return 1;
}

int main(int argc, char **argv)
{
	struct ibv_device **list;
	struct ibv_context *ctx = NULL;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	uint32_t lo = 0, hi = 1u << 20, got = 0, reported = 0;
	int i, n;

	list = ibv_get_device_list(&n);
	if (!list || n == 0) {
		fprintf(stderr, "max-inline: no verbs devices\n");
		return 1;
	}
	for (i = 0; i < n; i++) {
		if (argc < 2 || strcmp(ibv_get_device_name(list[i]), argv[1]) == 0) {
			ctx = ibv_open_device(list[i]);
			break;
		}
	}
	if (!ctx) {
		fprintf(stderr, "max-inline: cannot open device %s\n",
			argc > 1 ? argv[1] : "(first)");
		return 1;
	}
	pd = ibv_alloc_pd(ctx);
	cq = pd ? ibv_create_cq(ctx, 64, NULL, NULL, 0) : NULL;
	if (!cq) {
		fprintf(stderr, "max-inline: cannot allocate PD/CQ\n");
		return 1;
	}
	if (!try_inline(pd, cq, 0, &got)) {
		fprintf(stderr, "max-inline: cannot create an RC QP\n");
		return 1;
	}
	/* Largest request accepted (binary search). */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo + 1) / 2;

		if (try_inline(pd, cq, mid, &got))
			lo = mid;
		else
			hi = mid - 1;
	}
	try_inline(pd, cq, lo, &reported);
	printf(
	    "%s max_inline_data %u (largest RC QP request accepted; create_qp returned cap %u)\n",
	    ibv_get_device_name(ctx->device), lo, reported);
	ibv_destroy_cq(cq);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	ibv_free_device_list(list);
	return 0;
}
