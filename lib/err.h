/* Error messages for the caller's buffer: every fallible call that takes (err, errlen)
 * writes one line there and returns a negative errno. */
#ifndef RDM_ERR_H
#define RDM_ERR_H

#include <stddef.h>

/* Writes the message to err (when err and errlen are set); returns rc. */
int rdm_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* OpenSSL's reason for its latest failure on this thread, without the "error:...:" code
 * prefix ("sslv3 alert certificate expired"), into buf; the queue is emptied, so a later
 * failure does not report a stale reason. Returns buf. */
const char *rdm_ossl_reason(char *buf, size_t len);

#endif
