/* The policy rules (services/policy_rules.c) through the policy stage: every match
 * field, how rules combine, and the errors a bad policy or stage configuration gets.
 * Policies are written to a temporary directory per test; the stage is driven through
 * its ops table as the node drives it (tests/lib/policy_stage.h). */
#include <criterion/criterion.h>

#include <errno.h>

#include "tests/lib/policy_stage.h"

TestSuite(policy, .init = setup, .fini = teardown, .timeout = 20);

/* ---- match fields, one at a time ---- */

Test(policy, tenant_user_group_match_alone)
{
	struct pk p;

	syn4(&p, 40000);
	MISS("{tenant: acme}", &p); /* no identity: no match */
	p.f.tenant = S("acme");
	p.f.user = S("alice");
	p.f.groups[0] = S("sales");
	p.f.groups[1] = S("eng");
	p.f.n_groups = 2;
	p.f.present |= RDM_F_TENANT | RDM_F_USER | RDM_F_GROUPS;
	HIT("{tenant: acme}", &p);
	MISS("{tenant: globex}", &p);
	MISS("{tenant: ACME}", &p);
	HIT("{user: alice}", &p);
	MISS("{user: bob}", &p);
	HIT("{group: eng}", &p);
	HIT("{group: sales}", &p);
	MISS("{group: ops}", &p);
}

Test(policy, app_matches_full_name_or_either_part_any_case)
{
	struct pk p;

	syn4(&p, 40000);
	with_app(&p, "TLS.Facebook");
	HIT("{app: TLS.Facebook}", &p);
	HIT("{app: facebook}", &p);
	HIT("{app: TLS}", &p);
	MISS("{app: Google}", &p);
	MISS("{app: TLS.Google}", &p);
	syn4(&p, 40000);
	with_app(&p, "DNS");
	HIT("{app: dns}", &p);
}

Test(policy, category_matches_any_case)
{
	struct pk p;

	syn4(&p, 40000);
	p.f.category = S("SocialNetwork");
	p.f.category_id = 6;
	p.f.present |= RDM_F_CATEGORY;
	HIT("{category: socialnetwork}", &p);
	MISS("{category: Web}", &p);
}

Test(policy, dst_cidr_v4_and_v6)
{
	struct pk p;
	struct spec v6 = {.v6 = 1,
			  .proto = IPPROTO_UDP,
			  .src = "2001:db8::1",
			  .dst = "fd00::53",
			  .sport = 5000,
			  .dport = 53};

	syn4(&p, 40000); /* to 192.0.2.10 */
	HIT("{dst: 192.0.2.0/24}", &p);
	HIT("{dst: 192.0.2.10}", &p);
	HIT("{dst: 0.0.0.0/0}", &p);
	MISS("{dst: 192.0.3.0/24}", &p);
	MISS("{dst: 192.0.2.11}", &p);
	MISS("{dst: '::/0'}", &p); /* another family never matches */
	mk(&p, &v6);
	HIT("{dst: 'fd00::/8'}", &p);
	HIT("{dst: 'fd00::53/128'}", &p);
	MISS("{dst: 'fd01::/16'}", &p);
	MISS("{dst: 0.0.0.0/0}", &p);
	HIT("{dst: 'fc00::/7'}", &p);
}

Test(policy, port_single_and_range)
{
	struct pk p;
	struct spec sp = {.proto = IPPROTO_UDP,
			  .src = "10.0.0.1",
			  .dst = "10.0.0.2",
			  .sport = 1234,
			  .dport = 8050};

	mk(&p, &sp);
	HIT("{port: 8050}", &p);
	HIT("{port: 8000-8100}", &p);
	MISS("{port: 8051-8100}", &p);
	MISS("{port: 1234}", &p); /* the source port is not the destination */
	sp.dport = 8101;
	mk(&p, &sp);
	MISS("{port: 8000-8100}", &p);
	sp.proto = IPPROTO_ICMP;
	sp.dport = 0;
	mk(&p, &sp);
	MISS("{port: 0-65535}", &p); /* no ports, nothing to compare */
}

Test(policy, proto_by_name_and_number)
{
	struct pk p;
	struct spec sp = {
	    .proto = IPPROTO_UDP, .src = "10.0.0.1", .dst = "10.0.0.2", .sport = 1234, .dport = 53};

	mk(&p, &sp);
	HIT("{proto: udp}", &p);
	HIT("{proto: UDP}", &p);
	HIT("{proto: 17}", &p);
	MISS("{proto: tcp}", &p);
	sp.proto = IPPROTO_ICMP;
	sp.icmp_type = 8;
	mk(&p, &sp);
	HIT("{proto: icmp}", &p);
	MISS("{proto: icmpv6}", &p);
}

Test(policy, host_exact_and_suffix)
{
	struct pk p;

	syn4(&p, 40000);
	with_host(&p, "bad.test");
	HIT("{host: bad.test}", &p);
	HIT("{host: BAD.test}", &p);
	HIT("{host: '*.bad.test'}", &p); /* the suffix itself */
	MISS("{host: '*.ad.test'}", &p);
	MISS("{host: good.test}", &p);
	syn4(&p, 40000);
	with_host(&p, "A.B.Bad.Test.");
	HIT("{host: '*.bad.test'}", &p);
	MISS("{host: bad.test}", &p);
	syn4(&p, 40000);
	with_host(&p, "notbad.test");
	MISS("{host: '*.bad.test'}", &p);
	syn4(&p, 40000);
	with_host(&p, "bad.test:8080"); /* an HTTP Host with a port */
	HIT("{host: bad.test}", &p);
}

Test(policy, host_list_file)
{
	struct pk p;

	put("hosts.txt", "# blocked\n\n  casino.test   # exact\n*.bet.test\n\tEXAMPLE.org\n");
	syn4(&p, 40000);
	with_host(&p, "casino.test");
	HIT("{host: {file: hosts.txt}}", &p);
	with_host(&p, "www.casino.test");
	MISS("{host: {file: hosts.txt}}", &p);
	with_host(&p, "live.bet.test");
	HIT("{host: [{file: hosts.txt}]}", &p);
	with_host(&p, "example.org");
	HIT("{host: [other.test, {file: hosts.txt}]}", &p);
	with_host(&p, "other.test");
	HIT("{host: [other.test, {file: hosts.txt}]}", &p);
}

/* ---- combining ---- */

Test(policy, list_values_are_or_fields_are_and)
{
	struct pk p;

	syn4(&p, 40000); /* tcp to 192.0.2.10:443 */
	p.f.tenant = S("acme");
	p.f.present |= RDM_F_TENANT;
	HIT("{port: [80, 443]}", &p);
	HIT("{tenant: [globex, acme]}", &p);
	MISS("{port: [80, 8443]}", &p);
	HIT("{tenant: acme, port: 443, proto: tcp, dst: 192.0.2.0/24}", &p);
	MISS("{tenant: acme, port: 443, proto: udp}", &p);
	MISS("{tenant: globex, port: 443}", &p);
	HIT("{}", &p); /* no match keys: everything */
}

Test(policy, first_match_wins_and_default_applies)
{
	struct stg s;
	struct pk p;

	start(&s, "default: deny\n"
		  "rules:\n"
		  "  - {name: web-log, match: {port: 443}, action: log}\n"
		  "  - {name: web-deny, match: {proto: tcp}, action: deny}\n"
		  "  - {name: dns, match: {port: 53}, action: allow}\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.verdict, RDM_V_LOG);
	cr_assert_eq(p.f.rule_id, 1);
	with_rule_str(&p.f, "web-log");

	struct spec sp = {.proto = IPPROTO_TCP,
			  .src = "10.0.0.1",
			  .dst = "10.0.0.2",
			  .sport = 1,
			  .dport = 53,
			  .flags = RDM_TCP_SYN};
	mk(&p, &sp);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP); /* tcp/53: web-deny before dns */
	cr_assert_eq(p.f.rule_id, 2);

	sp.proto = IPPROTO_UDP;
	mk(&p, &sp);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.verdict, RDM_V_ALLOW);
	cr_assert_eq(p.f.rule_id, 3);
	with_rule_str(&p.f, "dns");

	sp.dport = 54;
	mk(&p, &sp);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(p.f.verdict, RDM_V_DENY);
	cr_assert_eq(p.f.rule_id, 0);
	with_rule_str(&p.f, "default");
	cr_assert_eq(counter(&s, "rule_1_hits"), 1);
	cr_assert_eq(counter(&s, "rule_2_hits"), 1);
	cr_assert_eq(counter(&s, "rule_3_hits"), 1);
	cr_assert_eq(counter(&s, "default_hits"), 1);
	cr_assert_eq(counter(&s, "denied"), 2);
	cr_assert_eq(counter(&s, "logged"), 1);
	cr_assert_eq(counter(&s, "allowed"), 1);
	stop(&s);
}

Test(policy, default_allow_writes_verdict_and_rule)
{
	struct stg s;
	struct pk p;

	start(&s, "default: allow\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert(p.f.present & RDM_F_VERDICT);
	cr_assert_eq(p.f.verdict, RDM_V_ALLOW);
	cr_assert_eq(p.f.rule_id, 0);
	with_rule_str(&p.f, "default");
	cr_assert_eq(counter(&s, "rules"), 0);
	stop(&s);
}

Test(policy, reply_direction_uses_the_initiators_orientation)
{
	struct stg s;
	struct pk p;
	struct spec back = {.proto = IPPROTO_TCP,
			    .src = "192.0.2.10",
			    .dst = "10.0.0.1",
			    .sport = 443,
			    .dport = 40000,
			    .flags = RDM_TCP_SYN | RDM_TCP_ACK};

	start(&s, "rules:\n  - {name: web, match: {dst: 192.0.2.10, port: 443}, action: log}\n");
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.rule_id, 1);
	mk(&p, &back);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.verdict, RDM_V_LOG);
	cr_assert_eq(p.f.rule_id, 1);
	stop(&s);

	/* Even when the reply is the packet evaluated again under these rules. */
	start(&s, "default: deny\nrules:\n  - {name: w, match: {port: 443}, action: log}\n");
	syn4(&p, 40000);
	p.f.tenant = S("t");
	p.f.present |= RDM_F_TENANT;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	mk(&p, &back);
	p.f.tenant = S("t2"); /* new state: evaluated again, still the client's port 443 */
	p.f.present |= RDM_F_TENANT;
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(p.f.rule_id, 1);
	cr_assert_eq(counter(&s, "evaluations"), 2);
	stop(&s);
}

/* ---- configuration errors ---- */

/* The message after "DIR/policy.yaml" that loading policy must give. */
static const char *bad(const char *policy)
{
	struct stg s;
	char path[512];

	memset(&s, 0, sizeof(s));
	put("policy.yaml", policy);
	cr_assert_null(stage_conf(&s, "name: policy\nfile: policy.yaml\n"), "loaded");
	rdm_ydoc_free(s.doc);
	snprintf(path, sizeof(path), "%s/policy.yaml", dir);
	cr_assert_eq(strncmp(err, path, strlen(path)), 0, "'%s'", err);
	return err + strlen(path);
}

Test(policy, yaml_errors_name_file_line_and_column)
{
	cr_assert_str_eq(bad("defualt: allow\n"),
			 ":1:1: unknown key 'defualt' (did you mean 'default'?)");
	cr_assert_str_eq(bad("rules:\n  - name: a\n    mtach: {}\n    action: allow\n"),
			 ":3:5: unknown key 'mtach' (did you mean 'match'?)");
	cr_assert_str_eq(bad("rules:\n  - name: a\n    match: {prot: tcp}\n    action: allow\n"),
			 ":3:13: unknown key 'prot' (did you mean 'port'?)");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {dst: 10.0.0.0/33}\n    action: allow\n"),
	    ":3:18: dst: '10.0.0.0/33': prefix length must be 0..32");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {dst: 10.0.0.300}\n    action: allow\n"),
	    ":3:18: dst: '10.0.0.300' is not an IPv4 or IPv6 address or CIDR");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {dst: 10.0.0.1/8}\n    action: allow\n"),
	    ":3:18: dst: '10.0.0.1/8' has bits set past the /8 prefix");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {port: 9000-8000}\n    action: allow\n"),
	    ":3:19: port: '9000-8000': the range starts above its end");
	cr_assert_str_eq(
	    bad("rules:\n  - name: a\n    match: {port: [80, 70000]}\n    action: allow\n"),
	    ":3:24: port: '70000' is not a port (0..65535) or a range like 8000-8100");
	cr_assert_str_eq(bad("rules:\n  - {name: a, action: allow}\n  - {name: a, action: deny}\n"),
			 ":3:12: name: duplicate rule name 'a' (rule 1 has it)");
	cr_assert_str_eq(bad("rules:\n  - {name: a, action: drop}\n"),
			 ":2:23: action: unknown action 'drop' (allow, deny, reject or log)");
	cr_assert_str_eq(bad("default: rejct\n"),
			 ":1:10: default: unknown action 'rejct' (did you mean 'reject'?) (allow, "
			 "deny, reject or log)");
	cr_assert_str_eq(bad("rules:\n  - {name: a, match: {proto: tpc}, action: allow}\n"),
			 ":2:30: proto: unknown protocol 'tpc' (did you mean 'tcp'?) (tcp, udp, "
			 "icmp, icmpv6, sctp, udplite or a number 0..255)");
	cr_assert_str_eq(bad("rules:\n  - {name: a, match: {host: 'a.*.test'}, action: allow}\n"),
			 ":2:29: host: bad pattern 'a.*.test': '*' may only start a pattern, as "
			 "in *.example.com");
	cr_assert_str_eq(bad("rules:\n  - {name: a, match: {port: []}, action: allow}\n"),
			 ":2:29: port: an empty list matches nothing; leave the key out instead");
	cr_assert_str_eq(bad("rules:\n  - {match: {port: 1}, action: allow}\n"),
			 ":2:5: rule: needs a name");
	cr_assert_str_eq(bad("pending_packets: 70000\n"),
			 ":1:18: pending_packets: 70000 is out of range (0..65535)");
}

Test(policy, list_file_errors_name_the_list_file)
{
	struct stg s;
	char want[600];

	put("hosts.txt", "ok.test\n\n  bad host.test\n");
	memset(&s, 0, sizeof(s));
	put("policy.yaml",
	    "rules:\n  - {name: a, match: {host: {file: hosts.txt}}, action: deny}\n");
	cr_assert_null(stage_conf(&s, "name: policy\nfile: policy.yaml\n"));
	rdm_ydoc_free(s.doc);
	snprintf(want, sizeof(want), "%s/hosts.txt:3:3: bad host pattern: one pattern per line",
		 dir);
	cr_assert_str_eq(err, want);

	memset(&s, 0, sizeof(s));
	put("policy.yaml",
	    "rules:\n  - {name: a, match: {host: {file: nope.txt}}, action: deny}\n");
	cr_assert_null(stage_conf(&s, "name: policy\nfile: policy.yaml\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "policy.yaml:2:36: host: cannot read"), "%s", err);
	cr_assert(strstr(err, "No such file"), "%s", err);
}

Test(policy, stage_yaml_errors)
{
	struct stg s;

	memset(&s, 0, sizeof(s));
	cr_assert_null(stage_conf(&s, "name: policy\nfiel: x.yaml\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "chain.yaml:2:1: unknown key 'fiel' (did you mean 'file'?)"), "%s",
		  err);
	cr_assert_null(stage_conf(&s, "name: policy\nfile: p.yaml\nrules: []\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "chain.yaml:3:1: rules: goes in the policy file"), "%s", err);
	cr_assert_null(stage_conf(&s, "name: policy\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "chain.yaml:1:1: stage policy needs 'file'"), "%s", err);
	cr_assert_null(stage_conf(&s, "name: policy\nfile: missing.yaml\n"));
	rdm_ydoc_free(s.doc);
	cr_assert(strstr(err, "missing.yaml"), "%s", err);
}

Test(policy, example_config_loads)
{
	char err2[1024];
	struct rdm_ydoc *d = rdm_ydoc_parse_string(
	    "configs/chain.yaml", "name: policy\nfile: policy.yaml\n", err2, sizeof(err2));
	const struct rdm_stage_ops *ops = rdm_stage_find("policy");
	void *c;

	cr_assert_not_null(d);
	c = ops->conf_new(d, rdm_ydoc_root(d), err2, sizeof(err2));
	cr_assert_not_null(c, "%s", err2);
	ops->conf_free(c);
	rdm_ydoc_free(d);
}
