/* libFuzzer target: the control channel's message parser (lib/msg.c), which
 * reads whatever an authenticated peer sends. Any input must either be refused with a
 * reason or parse into a message that, built again, parses into the same message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rdm_msg m, again;
	const char *kv[2 * RDM_MSG_MAX_HDR + 1];
	char err[256];
	size_t len;
	char *b;

	err[0] = 0;
	if (rdm_msg_parse(data, size, &m, err, sizeof(err)) < 0) {
		if (!err[0] || strchr(err, '\n'))
			abort(); /* a refusal says why, in one line */
		return 0;
	}
	for (int i = 0; i < m.n_hdr; i++) {
		kv[2 * i] = m.key[i];
		kv[2 * i + 1] = m.value[i];
		if (rdm_msg_get(&m, m.key[i]) == NULL)
			abort();
	}
	kv[2 * m.n_hdr] = NULL;
	b = rdm_msg_build(m.type, m.epoch, kv, m.body, m.body_len, &len);
	if (!b)
		abort(); /* what parses must build */
	if (rdm_msg_parse(b, len, &again, err, sizeof(err)) < 0)
		abort();
	if (strcmp(again.type, m.type) || again.epoch != m.epoch || again.n_hdr != m.n_hdr ||
	    again.body_len != m.body_len || memcmp(again.body, m.body, m.body_len))
		abort();
	for (int i = 0; i < m.n_hdr; i++)
		if (strcmp(again.key[i], m.key[i]) || strcmp(again.value[i], m.value[i]))
			abort();
	rdm_msg_free(&again);
	free(b);
	rdm_msg_free(&m);
	return 0;
}
