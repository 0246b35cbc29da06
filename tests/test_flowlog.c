/* The flowlog stage (services/flowlog.c) and its lines (services/flowlog_json.c), driven
 * directly (tests/lib/flowlog_stage.h): flow ends and timeouts, orientation, state
 * fields, verdicts, periodic updates, hop latencies, JSON escaping, IPv6, eviction and
 * conf errors. Lines are checked with python3's json module, which also proves that
 * every line is valid JSON (strict: no raw control characters, valid UTF-8). Each test
 * works in its own temporary directory. */
#include <criterion/criterion.h>

#include "tests/lib/flowlog_stage.h"

TestSuite(flowlog, .init = setup, .fini = teardown, .timeout = 120);

Test(flowlog, tcp_fin_both_ways_ends_closed_after_linger)
{
	void *c = conf_with(NULL), *rt;
	uint64_t fwd = 0, rev = 0, t0;

	fconf = (struct rdm_flow_conf){.tcp_closed_ms = 5000};
	rt = rt_new(c, 0);
	fwd += send4(rt, 1, 2, 40000, 443, RDM_TCP_SYN, 0);
	rev += send4(rt, 2, 1, 443, 40000, RDM_TCP_SYN | RDM_TCP_ACK, 0);
	fwd += send4(rt, 1, 2, 40000, 443, RDM_TCP_ACK, 100);
	rev += send4(rt, 2, 1, 443, 40000, RDM_TCP_ACK, 1000);
	fwd += send4(rt, 1, 2, 40000, 443, RDM_TCP_FIN | RDM_TCP_ACK, 0);
	rev += send4(rt, 2, 1, 443, 40000, RDM_TCP_FIN | RDM_TCP_ACK, 0);
	fwd += send4(rt, 1, 2, 40000, 443, RDM_TCP_ACK, 0);
	t0 = rdm_now_ns();

	ops->tick(rt, t0 + 4 * SEC); /* still lingering */
	cr_assert_eq(counter(rt, "flows_active"), 1);
	cr_assert_eq(counter(rt, "lines"), 0);
	ops->tick(rt, t0 + 6 * SEC);
	cr_assert_eq(counter(rt, "flows_active"), 0);
	cr_assert_eq(counter(rt, "flows_closed"), 1);
	cr_assert_eq(counter(rt, "lines"), 1);
	cr_assert_eq(counter(rt, "frames"), 7);
	cr_assert_eq(counter(rt, "flows"), 1);

	expect(logpath, "len(L)", "1");
	expect(logpath, "L[0][\"event\"], L[0][\"reason\"]", "('end', 'closed')");
	expect(logpath,
	       "L[0][\"proto\"], L[0][\"src\"], L[0][\"sport\"], L[0][\"dst\"], L[0][\"dport\"]",
	       "('tcp', '10.0.0.1', 40000, '10.0.0.2', 443)");
	char want[128];
	snprintf(want, sizeof(want), "(4, %llu, 3, %llu)", (unsigned long long)fwd,
		 (unsigned long long)rev);
	expect(logpath,
	       "L[0][\"packets_fwd\"], L[0][\"bytes_fwd\"], L[0][\"packets_rev\"], "
	       "L[0][\"bytes_rev\"]",
	       want);
	expect(logpath, "L[0][\"verdict\"], L[0][\"tenant\"], L[0][\"hops\"]",
	       "('none', None, [])");
	/* Timestamps: ISO-8601 UTC with microseconds, first <= last. */
	expect(logpath,
	       "all(__import__(\"re\").fullmatch(r\"\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\."
	       "\\d{6}Z\", L[0][k]) for k in (\"ts\",\"first\",\"last\")), L[0][\"first\"] <= "
	       "L[0][\"last\"], L[0][\"duration_ms\"] >= 0",
	       "(True, True, True)");
	/* The first timestamp is this wall clock, within a minute. */
	expect(logpath,
	       "abs(__import__(\"datetime\").datetime.strptime(L[0][\"first\"], "
	       "\"%Y-%m-%dT%H:%M:%S.%fZ\").replace(tzinfo=__import__(\"datetime\").timezone.utc)."
	       "timestamp() - __import__(\"time\").time()) < 60",
	       "True");
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath, "len(L)", "1"); /* nothing left to end at shutdown */
}

Test(flowlog, key_order_is_stable)
{
	void *c = conf_with(NULL), *rt;

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 1000, 53, -1, 10);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath, "\",\".join(L[0].keys())",
	       "ts,event,reason,proto,src,sport,dst,dport,tenant,user,groups,identity_unknown,"
	       "app,master_proto,app_proto,category,category_id,host,risk,dpi_done,verdict,rule,"
	       "rule_id,packets_fwd,bytes_fwd,packets_rev,bytes_rev,first,last,duration_ms,hops");
	expect(logpath, "L[0][\"reason\"]", "shutdown");
}

Test(flowlog, udp_times_out)
{
	void *c = conf_with("interval_s: 0\n"), *rt;
	uint64_t t0;

	fconf = (struct rdm_flow_conf){.udp_idle_ms = 60000};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 5000, 53, -1, 30);
	send4(rt, 2, 1, 53, 5000, -1, 90);
	send4(rt, 2, 1, 53, 5000, -1, 90);
	t0 = rdm_now_ns();
	ops->tick(rt, t0 + 59 * SEC);
	cr_assert_eq(counter(rt, "flows_active"), 1);
	ops->tick(rt, t0 + 61 * SEC);
	cr_assert_eq(counter(rt, "flows_active"), 0);
	cr_assert_eq(counter(rt, "flows_timeout"), 1);
	expect(logpath,
	       "L[0][\"reason\"], L[0][\"proto\"], L[0][\"packets_fwd\"], L[0][\"bytes_fwd\"], "
	       "L[0][\"packets_rev\"], L[0][\"bytes_rev\"]",
	       "('timeout', 'udp', 1, 58, 2, 236)");
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(flowlog, flow_started_by_responder_side_packet_is_oriented_by_first_packet)
{
	void *c = conf_with(NULL), *rt;

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	send4(rt, 7, 8, 53, 6000, -1, 0); /* first seen: 10.0.0.7:53 -> 10.0.0.8:6000 */
	send4(rt, 8, 7, 6000, 53, -1, 0);
	send4(rt, 8, 7, 6000, 53, -1, 0);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath,
	       "L[0][\"src\"], L[0][\"sport\"], L[0][\"packets_fwd\"], L[0][\"packets_rev\"]",
	       "('10.0.0.7', 53, 1, 2)");
}

Test(flowlog, state_fields_from_latest_frame)
{
	void *c = conf_with(NULL), *rt;
	struct rdm_frame f;
	uint8_t *p = pktmem[0];
	uint32_t len = pkt4(p, 1, 2, 40000, 443, RDM_TCP_SYN, 0);

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	/* First frame: identity only, a verdict that a later one overrides. */
	frame(&f, p, len);
	f.present |= RDM_F_TENANT | RDM_F_USER | RDM_F_GROUPS | RDM_F_VERDICT | RDM_F_FLAGS;
	f.tenant = S("acme");
	f.user = S("bob");
	f.n_groups = 1;
	f.groups[0] = S("old");
	f.verdict = RDM_V_LOG;
	f.rule_id = 1;
	f.flags = RDM_FF_ID_UNKNOWN;
	run1(rt, &f);
	/* Second: DPI and policy learned more; this frame's strings live in a scratch
	 * buffer that is overwritten afterwards, as a frame buffer would be. */
	char scratch[64];
	frame(&f, p, len);
	f.present |= RDM_F_USER | RDM_F_GROUPS | RDM_F_APP_ID | RDM_F_APP_NAME | RDM_F_CATEGORY |
		     RDM_F_HOST | RDM_F_VERDICT | RDM_F_RULE | RDM_F_FLAGS | RDM_F_RISK;
	strcpy(scratch, "alice");
	f.user = S(scratch);
	f.n_groups = 2;
	f.groups[0] = S("eng");
	f.groups[1] = S("vpn");
	f.master_proto = 91;
	f.app_proto = 126;
	f.app_name = S("TLS.Google");
	f.category_id = 5;
	f.category = S("Web");
	f.host = S("www.google.com");
	f.verdict = RDM_V_ALLOW;
	f.rule_id = 7;
	f.rule = S("default");
	f.flags = RDM_FF_ID_UNKNOWN | RDM_FF_DPI_DONE;
	f.risk = 1ull << 40;
	run1(rt, &f);
	memset(scratch, 'X', sizeof(scratch));
	/* Third: a plain packet changes nothing. */
	send4(rt, 2, 1, 443, 40000, RDM_TCP_SYN | RDM_TCP_ACK, 0);
	ops->deinit(rt);
	ops->conf_free(c);

	expect(logpath,
	       "L[0][\"tenant\"], L[0][\"user\"], L[0][\"groups\"], L[0][\"identity_unknown\"]",
	       "('acme', 'alice', ['eng', 'vpn'], True)");
	expect(logpath,
	       "L[0][\"app\"], L[0][\"master_proto\"], L[0][\"app_proto\"], L[0][\"category\"], "
	       "L[0][\"category_id\"], L[0][\"host\"], L[0][\"risk\"], L[0][\"dpi_done\"]",
	       "('TLS.Google', 91, 126, 'Web', 5, 'www.google.com', 1099511627776, True)");
	expect(logpath, "L[0][\"verdict\"], L[0][\"rule\"], L[0][\"rule_id\"]",
	       "('allow', 'default', 7)");
	expect(logpath, "L[0][\"reason\"], L[0][\"packets_fwd\"], L[0][\"packets_rev\"]",
	       "('shutdown', 2, 1)");
}

/* Frames that name the received state they took (state_src) are learned once per state:
 * a later state of the flow, or a frame that names none, is learned again, and the log
 * says what the last frame said. */
Test(flowlog, a_flow_learns_each_state_it_takes)
{
	static const struct {
		uint64_t src;
		const char *user;
	} seq[] = {{100, "bob"}, {100, "bob"},	{101, "carol"},
		   {0, "dave"},	 {102, "erin"}, {103, "alice"}};
	void *c = conf_with(NULL), *rt;
	struct rdm_frame f;
	uint8_t *p = pktmem[0];
	uint32_t len = pkt4(p, 1, 2, 40001, 443, RDM_TCP_SYN, 0);

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		frame(&f, p, len);
		f.present |= RDM_F_TENANT | RDM_F_USER;
		f.tenant = S("acme");
		f.user = S(seq[i].user);
		f.state_src = seq[i].src;
		run1(rt, &f);
	}
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath, "L[0][\"tenant\"], L[0][\"user\"], L[0][\"packets_fwd\"]",
	       "('acme', 'alice', 6)");
}

Test(flowlog, verdict_names)
{
	static const char *const want[] = {"none", "allow", "deny", "reject", "log"};
	void *c = conf_with(NULL), *rt;

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	for (int v = 0; v < 5; v++) {
		struct rdm_frame f;
		uint8_t *p = pktmem[v];

		frame(&f, p, pkt4(p, 1, 2, (uint16_t)(2000 + v), 80, RDM_TCP_SYN, 0));
		f.present |= RDM_F_VERDICT;
		f.verdict = (uint8_t)v;
		run1(rt, &f);
	}
	ops->deinit(rt);
	ops->conf_free(c);
	for (int v = 0; v < 5; v++) {
		char e[128];

		snprintf(e, sizeof(e), "[l[\"verdict\"] for l in L if l[\"sport\"] == %d][0]",
			 2000 + v);
		expect(logpath, e, want[v]);
	}
}

Test(flowlog, periodic_updates_for_long_flows)
{
	void *c = conf_with("interval_s: 10\n"), *rt;
	uint64_t t0;

	fconf = (struct rdm_flow_conf){.tcp_idle_ms = 300000};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 40000, 22, RDM_TCP_SYN, 0);
	send4(rt, 2, 1, 22, 40000, RDM_TCP_SYN | RDM_TCP_ACK, 0);
	send4(rt, 3, 4, 1234, 53, -1, 0); /* a short UDP flow that ends before any update */
	t0 = rdm_now_ns();
	ops->tick(rt, t0 + 5 * SEC);
	cr_assert_eq(counter(rt, "lines_update"), 0);
	ops->tick(rt, t0 + 11 * SEC);
	cr_assert_eq(counter(rt, "lines_update"), 2);
	ops->tick(rt, t0 + 11 * SEC + SEC / 2); /* too soon */
	cr_assert_eq(counter(rt, "lines_update"), 2);
	ops->tick(rt, t0 + 22 * SEC);
	cr_assert_eq(counter(rt, "lines_update"), 4);
	ops->tick(rt, t0 + 400 * SEC); /* both idle out first: no more updates */
	cr_assert_eq(counter(rt, "lines_update"), 4);
	cr_assert_eq(counter(rt, "lines"), 6);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(
	    logpath,
	    "[(l[\"event\"], l[\"reason\"], l[\"proto\"]) for l in L if l[\"proto\"] == \"tcp\"]",
	    "[('update', None, 'tcp'), ('update', None, 'tcp'), ('end', 'timeout', 'tcp')]");
	expect(logpath,
	       "[(l[\"packets_fwd\"], l[\"packets_rev\"]) for l in L if l[\"proto\"] == \"tcp\"]",
	       "[(1, 1), (1, 1), (1, 1)]");
}

Test(flowlog, interval_zero_means_no_updates)
{
	void *c = conf_with("interval_s: 0\n"), *rt;
	uint64_t t0;

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 40000, 22, RDM_TCP_SYN, 0);
	t0 = rdm_now_ns();
	for (int s = 1; s < 200; s += 7)
		ops->tick(rt, t0 + (uint64_t)s * SEC);
	cr_assert_eq(counter(rt, "lines_update"), 0);
	ops->deinit(rt);
	ops->conf_free(c);
}

Test(flowlog, hop_latency_stats)
{
	void *c = conf_with(NULL), *rt;
	uint64_t base = 1764162000ull * SEC;
	/* Per frame: ns at nodes 1, 2, 3 (relative to base). */
	static const int64_t t[3][3] = {
	    {0, 20000, 50000}, /* 1->2 20 us, 2->3 30 us */
	    {0, 40000, 50000}, /* 40 us, 10 us */
	    {0, 30000, 25000}, /* 30 us, then node 3's clock is behind: skew */
	};

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	for (int i = 0; i < 3; i++) {
		struct rdm_frame f;
		uint8_t *p = pktmem[i];

		frame(&f, p, pkt4(p, 1, 2, 40000, 80, -1, 0));
		for (int h = 0; h < 3; h++)
			cr_assert_eq(
			    rdm_frame_add_hop(&f, (uint32_t)h + 1,
					      base + (uint64_t)i * SEC + (uint64_t)t[i][h]),
			    0);
		run1(rt, &f);
	}
	cr_assert_eq(counter(rt, "clock_skew"), 1);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath,
	       "[(h[\"from\"], h[\"to\"], h[\"count\"], h[\"min_us\"], h[\"mean_us\"], "
	       "h[\"max_us\"], h[\"skew\"]) for h in L[0][\"hops\"]]",
	       "[(1, 2, 3, 20.0, 30.0, 40.0, 0), (2, 3, 2, 10.0, 20.0, 30.0, 1)]");
}

Test(flowlog, hop_pair_with_only_skew_has_null_stats)
{
	void *c = conf_with(NULL), *rt;
	struct rdm_frame f;
	uint8_t *p = pktmem[0];

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	frame(&f, p, pkt4(p, 1, 2, 40000, 80, -1, 0));
	rdm_frame_add_hop(&f, 5, 2000);
	rdm_frame_add_hop(&f, 6, 1000);
	run1(rt, &f);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath, "L[0][\"hops\"]",
	       "[{'from': 5, 'to': 6, 'count': 0, 'min_us': None, 'mean_us': None, 'max_us': None, "
	       "'skew': 1}]");
}

Test(flowlog, json_escaping_of_odd_strings)
{
	void *c = conf_with(NULL), *rt;
	struct rdm_frame f;
	uint8_t *p = pktmem[0];
	/* quote, backslash, controls, DEL, a stray 0xff, valid é and €, an encoded
	 * surrogate (invalid), an overlong slash (invalid), a cut-off sequence at the end. */
	static const char host[] = "a\"b\\c\x01\n\t\x1f\x7f\xff\xc3\xa9\xe2\x82\xac\xed\xa0\x80"
				   "\xc0\xaf/\xe2\x82";
	static const char tenant[] = "new\r\nline\b\f";

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	frame(&f, p, pkt4(p, 1, 2, 40000, 443, -1, 0));
	f.present |= RDM_F_HOST | RDM_F_TENANT | RDM_F_GROUPS;
	f.host = (struct rdm_str){host, sizeof(host) - 1};
	f.tenant = (struct rdm_str){tenant, sizeof(tenant) - 1};
	f.n_groups = 1;
	f.groups[0] = (struct rdm_str){"\x80g", 2};
	run1(rt, &f);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath,
	       "L[0][\"host\"] == "
	       "\"a\\\"b\\\\c\\x01\\n\\t\\x1f\\x7f\\xff\\u00e9\\u20ac\\xed\\xa0\\x80\\xc0\\xaf/"
	       "\\xe2\\x82\"",
	       "True");
	expect(logpath,
	       "L[0][\"tenant\"] == \"new\\r\\nline\\b\\f\", L[0][\"groups\"] == [\"\\x80g\"]",
	       "(True, True)");
	/* The raw line: one line, bytes >= 0x80 only inside valid UTF-8 (é, €), the bad
	 * ones as \u00XX escapes. */
	expect(logpath,
	       "open(sys.argv[1],\"rb\").read().count(b\"\\n\"), b\"\\\\u00ff\" in "
	       "open(sys.argv[1],\"rb\").read(), b\"\\xc3\\xa9\\xe2\\x82\\xac\" in "
	       "open(sys.argv[1],\"rb\").read()",
	       "(1, True, True)");
}

Test(flowlog, ipv6_addresses)
{
	void *c = conf_with(NULL), *rt;
	struct rdm_frame f;
	uint32_t a, b;

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	a = pkt6(pktmem[0], 1, 2, 5353, 53, 20);
	frame(&f, pktmem[0], a);
	run1(rt, &f);
	b = pkt6(pktmem[1], 2, 1, 53, 5353, 100);
	frame(&f, pktmem[1], b);
	run1(rt, &f);
	ops->deinit(rt);
	ops->conf_free(c);
	char want[128];
	snprintf(want, sizeof(want), "('udp', '2001:db8::1', 5353, '2001:db8::2', 53, %u, %u)", a,
		 b);
	expect(logpath,
	       "L[0][\"proto\"], L[0][\"src\"], L[0][\"sport\"], L[0][\"dst\"], L[0][\"dport\"], "
	       "L[0][\"bytes_fwd\"], L[0][\"bytes_rev\"]",
	       want);
}

Test(flowlog, frame_without_flow_key_uses_packet)
{
	void *c = conf_with(NULL), *rt;
	struct rdm_frame f;
	uint8_t *p = pktmem[0];

	fconf = (struct rdm_flow_conf){0};
	rt = rt_new(c, 0);
	frame(&f, p, pkt4(p, 3, 4, 111, 222, -1, 0));
	f.present = 0;
	run1(rt, &f);
	/* Not IP and no key: passed, counted, not logged. */
	rdm_frame_init(&f, 1, 254, 0);
	f.pkt = (const uint8_t *)"junk";
	f.pkt_len = 4;
	run1(rt, &f);
	cr_assert_eq(counter(rt, "no_flow_key"), 1);
	cr_assert_eq(counter(rt, "frames"), 2);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath, "len(L), L[0][\"src\"], L[0][\"dport\"]", "(1, '10.0.0.3', 222)");
}

Test(flowlog, eviction_ends_the_oldest_flow)
{
	void *c = conf_with(NULL), *rt;

	fconf = (struct rdm_flow_conf){.max_flows = 2};
	rt = rt_new(c, 0);
	send4(rt, 1, 2, 1, 53, -1, 0);
	send4(rt, 1, 2, 2, 53, -1, 0);
	send4(rt, 1, 2, 3, 53, -1, 0);
	cr_assert_eq(counter(rt, "flows_evicted"), 1);
	cr_assert_eq(counter(rt, "flows_active"), 2);
	ops->deinit(rt);
	ops->conf_free(c);
	expect(logpath, "sorted((l[\"sport\"], l[\"reason\"]) for l in L)",
	       "[(1, 'evicted'), (2, 'shutdown'), (3, 'shutdown')]");
}

Test(flowlog, conf_errors_name_file_line_col)
{
	cr_assert_null(conf_from("name: flowlog\n"));
	cr_assert_str_eq(err, "t.yaml:1:1: stage flowlog needs file");
	cr_assert_null(conf_from("name: flowlog\nfile: x\nmax_byte: 5000\n"));
	cr_assert_str_eq(err, "t.yaml:3:1: unknown key 'max_byte' (did you mean 'max_bytes'?)");
	cr_assert_null(conf_from("name: flowlog\nfiel: x\n"));
	cr_assert_str_eq(err, "t.yaml:2:1: unknown key 'fiel' (did you mean 'file'?)");
	cr_assert_null(conf_from("name: flowlog\nfile: x\nmax_bytes: 100\n"));
	cr_assert(strstr(err, "t.yaml:3:12: max_bytes") == err, "%s", err);
	cr_assert_null(conf_from("name: flowlog\nfile: x\nbuffer_bytes: 1\n"));
	cr_assert(strstr(err, "t.yaml:3:15: buffer_bytes") == err, "%s", err);
	cr_assert_null(conf_from("name: flowlog\nfile: x\nkeep: -1\n"));
	cr_assert(strstr(err, "t.yaml:3:7: keep") == err, "%s", err);
	cr_assert_null(conf_from("name: flowlog\nfile: ''\n"));
	cr_assert(strstr(err, "t.yaml:2:7: file: must be") == err, "%s", err);
	cr_assert_null(conf_from("name: flowlog\nfile: [a]\n"));
	cr_assert(strstr(err, "t.yaml:2:7:") == err, "%s", err);
	void *c = conf_from("name: flowlog\nfile: x\nmax_bytes: 4096\nkeep: 0\ninterval_s: 0\n"
			    "buffer_bytes: 4096\n");
	cr_assert_not_null(c, "%s", err);
	ops->conf_free(c);
}

Test(flowlog, registered_by_name)
{
	const char *const *n = rdm_stage_names();
	int found = 0;

	for (; *n; n++)
		found |= !strcmp(*n, "flowlog");
	cr_assert(found);
	cr_assert_eq(rdm_stage_find("flowlog"), &rdm_stage_flowlog);
}
