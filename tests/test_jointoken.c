/* Join tokens (lib/jointoken.c): made from a rack's CA and checked against it; a token
 * changed anywhere, from another rack, expired or malformed is refused with a reason that
 * never repeats its MAC. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/certs.h"
#include "lib/jointoken.h"

static char a[64], b[64], err[512];

static void setup(void)
{
	const char *names[] = {"orch"};

	strcpy(a, "/tmp/rdm-test-tok-a-XXXXXX");
	strcpy(b, "/tmp/rdm-test-tok-b-XXXXXX");
	cr_assert_not_null(mkdtemp(a));
	cr_assert_not_null(mkdtemp(b));
	cr_assert_geq(rdm_certs_make(a, names, 1, 30, err, sizeof(err)), 0, "%s", err);
	cr_assert_geq(rdm_certs_make(b, names, 1, 30, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", a, b);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(jointoken, .init = setup, .fini = teardown);

Test(jointoken, made_then_checked)
{
	char tok[RDM_JOIN_TOKEN_MAX + 1], spaced[RDM_JOIN_TOKEN_MAX + 8];
	struct rdm_join_token t;

	cr_assert_eq(rdm_join_token_make(a, "dpi", 1, 600, tok, sizeof(tok), err, sizeof(err)), 0,
		     "%s", err);
	cr_assert_eq(strncmp(tok, "rdmj1:dpi:1:", 12), 0, "%s", tok);
	cr_assert_eq(rdm_join_token_check(a, tok, time(NULL), &t, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(t.stage, "dpi");
	cr_assert_eq(t.uses, 1);
	cr_assert_eq(strlen(t.id), RDM_JOIN_ID_LEN);
	cr_assert(t.expires >= time(NULL) + 599 && t.expires <= time(NULL) + 600);
	/* as a Secret's file holds it: a newline after it */
	snprintf(spaced, sizeof(spaced), "  %s\n", tok);
	cr_assert_eq(rdm_join_token_check(a, spaced, time(NULL), &t, err, sizeof(err)), 0, "%s",
		     err);
	/* two tokens differ (random ids) */
	{
		char tok2[RDM_JOIN_TOKEN_MAX + 1];

		cr_assert_eq(
		    rdm_join_token_make(a, "dpi", 0, 600, tok2, sizeof(tok2), err, sizeof(err)), 0);
		cr_assert_str_neq(tok, tok2);
		cr_assert_eq(rdm_join_token_check(a, tok2, time(NULL), &t, err, sizeof(err)), 0);
		cr_assert_eq(t.uses, 0);
	}
}

Test(jointoken, changed_foreign_expired_or_malformed_is_refused)
{
	char tok[RDM_JOIN_TOKEN_MAX + 1], bad[RDM_JOIN_TOKEN_MAX + 1], *mac;
	struct rdm_join_token t;

	cr_assert_eq(rdm_join_token_make(a, "dpi", 1, 60, tok, sizeof(tok), err, sizeof(err)), 0);
	mac = strrchr(tok, ':') + 1;
	/* every field changed, one at a time: the stage, the uses, the expiry, the MAC */
	strcpy(bad, tok);
	bad[6] = 'x'; /* "rdmj1:xpi:..." */
	cr_assert_eq(rdm_join_token_check(a, bad, time(NULL), &t, err, sizeof(err)), -EACCES);
	cr_assert(strstr(err, "not signed by this rack's CA"), "%s", err);
	cr_assert_null(strstr(err, mac), "the reason repeats the MAC: %s", err);
	strcpy(bad, tok);
	bad[10] = '0'; /* uses 1 -> 0 */
	cr_assert_eq(rdm_join_token_check(a, bad, time(NULL), &t, err, sizeof(err)), -EACCES);
	strcpy(bad, tok);
	bad[12] = bad[12] == '9' ? '8' : '9'; /* the expiry */
	cr_assert_eq(rdm_join_token_check(a, bad, time(NULL), &t, err, sizeof(err)), -EACCES);
	strcpy(bad, tok);
	bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
	cr_assert_eq(rdm_join_token_check(a, bad, time(NULL), &t, err, sizeof(err)), -EACCES);
	/* another rack's CA */
	cr_assert_eq(rdm_join_token_check(b, tok, time(NULL), &t, err, sizeof(err)), -EACCES);
	/* expired */
	cr_assert_eq(rdm_join_token_check(a, tok, time(NULL) + 61, &t, err, sizeof(err)), -EACCES);
	cr_assert(strstr(err, "expired"), "%s", err);
	/* not tokens */
	const char *junk[] = {
	    "",
	    "   \n",
	    "rdmj1:dpi:1",
	    "rdmj2:dpi:1:1:0011223344556677:00",
	    tok + 1,
	    "rdmj1:dpi:2:1796314104:1d3db2e9086aa88b:5085c3a16891855c6daa5e59a94fc6da",
	    "rdmj1:d:pi:1:1796314104:1d3db2e9086aa88b:5085c3a16891855c6daa5e59a94fc6da"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		cr_assert_eq(rdm_join_token_check(a, junk[i], time(NULL), &t, err, sizeof(err)),
			     -EINVAL, "'%s' taken: %s", junk[i], err);
}

Test(jointoken, making_checks_its_arguments)
{
	char tok[RDM_JOIN_TOKEN_MAX + 1];

	cr_assert_eq(rdm_join_token_make(a, "d:pi", 1, 60, tok, sizeof(tok), err, sizeof(err)),
		     -EINVAL);
	cr_assert_eq(rdm_join_token_make(a, "dpi", 2, 60, tok, sizeof(tok), err, sizeof(err)),
		     -EINVAL);
	cr_assert_eq(rdm_join_token_make(a, "dpi", 1, 0, tok, sizeof(tok), err, sizeof(err)),
		     -EINVAL);
	cr_assert_eq(rdm_join_token_make(a, "dpi", 1, RDM_JOIN_TTL_MAX + 1, tok, sizeof(tok), err,
					 sizeof(err)),
		     -EINVAL);
	cr_assert_lt(
	    rdm_join_token_make("/nonexistent", "dpi", 1, 60, tok, sizeof(tok), err, sizeof(err)),
	    0);
	cr_assert(strstr(err, "ca.key"), "%s", err);
}
