/* rdmesh bench: runs the benchmark driver (tests/bench/bench.sh), which builds the paths
 * in network namespaces, measures them side by side and writes CSV, markdown and PNG. The
 * driver is found next to the source tree this binary was built in. */
#include "node/commands.h"

#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int rdm_cmd_bench(int argc, char **argv)
{
	char exe[PATH_MAX], dir[PATH_MAX], script[PATH_MAX + 64];
	const char *env = getenv("RDMESH_SRC");
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char **args;

	if (n < 0) {
		fprintf(stderr, "rdmesh bench: /proc/self/exe: %s\n", strerror(errno));
		return 1;
	}
	exe[n] = 0;
	snprintf(dir, sizeof(dir), "%s", exe);
	/* build/rdmesh, or build/san-X/rdmesh: the tree is one or two levels up. */
	script[0] = 0;
	if (env) {
		snprintf(script, sizeof(script), "%s/tests/bench/bench.sh", env);
	} else {
		char *d = dirname(dir);

		for (int up = 0; up < 3 && !script[0]; up++) {
			char try[PATH_MAX + 64];

			snprintf(try, sizeof(try), "%s/tests/bench/bench.sh", d);
			if (access(try, R_OK) == 0)
				snprintf(script, sizeof(script), "%s", try);
			d = dirname(d);
		}
	}
	if (!script[0] || access(script, R_OK) != 0) {
		fprintf(stderr,
			"rdmesh bench: cannot find tests/bench/bench.sh near %s "
			"(set RDMESH_SRC to the source tree)\n",
			exe);
		return 1;
	}
	setenv("RDMESH", exe, 1);
	args = calloc((size_t)argc + 2, sizeof(*args));
	if (!args)
		return 1;
	args[0] = "bash";
	args[1] = script;
	for (int i = 1; i < argc; i++)
		args[i + 1] = argv[i];
	execvp("bash", args);
	fprintf(stderr, "rdmesh bench: bash: %s\n", strerror(errno));
	return 1;
}
