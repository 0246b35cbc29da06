/* Small helpers every layer uses: container_of and ARRAY_SIZE. */
#ifndef RDM_UTIL_H
#define RDM_UTIL_H

#include <stddef.h>

/* The struct of type that holds member at ptr (backends embed the base struct). */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
