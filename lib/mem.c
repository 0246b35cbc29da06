/* Memory the data path uses from its first packet on (lib/mem.h). */
#include "lib/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

void *rdm_calloc_touched(size_t n, size_t size)
{
	volatile uint8_t *p = calloc(n, size);
	long page = sysconf(_SC_PAGESIZE);
	size_t len = n * size, step = page > 0 ? (size_t)page : 4096;

	/* calloc's memory reads as zero; writing the zero it holds makes each page the
	 * process's own now rather than at its first store. */
	for (size_t i = 0; p && i < len; i += step)
		p[i] = 0;
	if (p && len)
		p[len - 1] = 0; /* the last page, when the memory does not start on one */
	return (void *)p;
}
