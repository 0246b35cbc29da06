/* lib/file.c: only regular files are opened for reading, and text from the network
 * reaches a terminal with its control characters escaped. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/file.h"

Test(file, regular_files_open_fifos_and_directories_do_not)
{
	char dir[] = "/tmp/rdm-file.XXXXXX", fifo[64], reg[64];
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(reg, sizeof(reg), "%s/reg", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	f = fopen(reg, "w");
	cr_assert_not_null(f);
	fputs("hello\n", f);
	fclose(f);
	errno = 0;
	cr_assert_null(rdm_fopen_regular(fifo), "a FIFO with no writer: refused, not waited on");
	cr_assert_eq(errno, EINVAL);
	cr_assert_str_eq(rdm_file_why(errno),
			 "not a regular file (a FIFO, a device or a directory)");
	cr_assert_null(rdm_fopen_regular(dir));
	cr_assert_eq(errno, EISDIR);
	cr_assert_null(rdm_fopen_regular("/dev/zero"));
	cr_assert_null(rdm_fopen_regular("/nonexistent/x"));
	cr_assert_eq(errno, ENOENT);
	f = rdm_fopen_regular(reg);
	cr_assert_not_null(f);
	{
		char line[16];

		cr_assert_not_null(fgets(line, sizeof(line), f), "reads (blocking mode again)");
		cr_assert_str_eq(line, "hello\n");
	}
	fclose(f);
	unlink(fifo);
	unlink(reg);
	rmdir(dir);
}

Test(file, control_characters_reach_a_terminal_escaped)
{
	const char in[] = "chain evil\x1b[2J\x07name\tok\nnext line \x7f caf\xc3\xa9";
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	cr_assert_not_null(f);
	rdm_fput_visible(f, in, sizeof(in) - 1);
	fclose(f);
	cr_assert_str_eq(out, "chain evil\\x1b[2J\\x07name\tok\nnext line \\x7f caf\xc3\xa9",
			 "ESC, BEL and DEL escaped; newline, tab and UTF-8 kept");
	free(out);
}

/* The whole file or nothing: NUL-terminated, its length told; one byte over the limit is
 * EFBIG; a FIFO is refused as rdm_fopen_regular refuses it. */
Test(file, read_whole_within_a_limit)
{
	char dir[] = "/tmp/rdm-file.XXXXXX", path[64], fifo[64], *text;
	size_t len = 0;
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	for (int i = 0; i < 10000; i++) /* 50,000 bytes: past the first buffers */
		fputs("abcd\n", f);
	fclose(f);
	text = rdm_read_regular(path, 50000, &len);
	cr_assert_not_null(text, "%s", strerror(errno));
	cr_assert_eq(len, 50000);
	cr_assert_eq(text[len], 0);
	cr_assert_eq(strlen(text), 50000);
	free(text);
	errno = 0;
	cr_assert_null(rdm_read_regular(path, 49999, &len));
	cr_assert_eq(errno, EFBIG);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	cr_assert_null(rdm_read_regular(fifo, 1000, NULL));
	cr_assert_eq(errno, EINVAL);
	unlink(fifo);
	unlink(path);
	rmdir(dir);
}
