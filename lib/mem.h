/* Memory the data path uses from its first packet on. */
#ifndef RDM_MEM_H
#define RDM_MEM_H

#include <stddef.h>

/* calloc(n, size) with every page already touched: a table the data path fills as flows
 * come (a hash table indexed by flow, a connection's slots) would otherwise take its
 * first-touch page faults while packets wait, one per page, the first milliseconds of
 * traffic on a new node or connection. NULL as calloc; free() frees it. */
void *rdm_calloc_touched(size_t n, size_t size);

#endif
