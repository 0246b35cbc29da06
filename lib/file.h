/* Files a user names, and text a user sees. Opening the files a user names (chain
 * files, policies, host lists, certificates) for reading: regular files only. A FIFO
 * would block its reader until someone writes to it (an orchestrator whose one loop reads
 * `ctl apply`'s file would stall on it), and a device or a directory is never a
 * configuration. Writing text that came over the network to a terminal: control
 * characters escaped, so a name cannot move the cursor or rewrite the screen. */
#ifndef RDM_FILE_H
#define RDM_FILE_H

#include <stddef.h>
#include <stdio.h>

/* fopen(path, "r") for a regular file: without blocking on a FIFO, and refusing
 * anything else with errno EISDIR (a directory) or EINVAL (a FIFO, a device...). NULL with errno
 * set; rdm_file_why(errno) then says why in words. */
FILE *rdm_fopen_regular(const char *path);

/* The whole regular file at path (rdm_fopen_regular), NUL-terminated after its *len
 * bytes (len may be NULL); the caller frees it. NULL with errno set: EFBIG when it is
 * larger than max bytes, else as rdm_fopen_regular or the read. */
char *rdm_read_regular(const char *path, size_t max, size_t *len);

/* strerror(e), except that EINVAL from rdm_fopen_regular reads "not a regular file (a
 * FIFO, a device or a directory)". */
const char *rdm_file_why(int e);

/* Writes the n bytes at s to f, each control character but newline and tab (and DEL)
 * as \xNN. */
void rdm_fput_visible(FILE *f, const char *s, size_t n);

#endif
