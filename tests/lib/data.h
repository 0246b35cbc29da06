/* Where the unit tests' data files are: tests/data/config, read from the repository
 * root, or the directory $RDM_TEST_DATA names. */
#ifndef RDM_TESTS_DATA_H
#define RDM_TESTS_DATA_H

#include <stdio.h>
#include <stdlib.h>

/* Path of a file in the data directory (static buffer, one at a time). */
static const char *data(const char *name)
{
	static char path[512];
	const char *dir = getenv("RDM_TEST_DATA");
	snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data/config", name);
	return path;
}

#endif
