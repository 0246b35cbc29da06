/* The Prometheus metrics: the report-to-text converter (node/metrics_text.c) on real
 * reports, checked line by line and by a strict format checker (tests/lib/promcheck.py,
 * python3), and the HTTP endpoint (node/metrics.c) on a real node. Runs from the
 * repository root. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/config.h"
#include "node/metrics.h"
#include "node/node.h"

/* `rdmesh node --stats` of the egress of a three-node chain on loopback (edge-in: stamp,
 * identity, gen ingress; mid: stamp; sase-1: stamp, dpi, policy, flowlog, egress, two
 * workers), with configs/directory.yaml and configs/policy.yaml: 6000 packets, 142
 * dropped by policy, two hops. */
static const char egress_report[] = "node sase-1\n"
				    "node_id 3\n"
				    "workers 2\n"
				    "run_ms 1802\n"
				    "cpu_ms 151\n"
				    "rx_frames 6000\n"
				    "tx_frames 0\n"
				    "stalls 0\n"
				    "back_rx_frames 0\n"
				    "back_tx_frames 6\n"
				    "replies 6\n"
				    "tun_rx 0\n"
				    "tun_tx 0\n"
				    "notices 148\n"
				    "drop_short 0\n"
				    "drop_bad_version 0\n"
				    "drop_bad_md_type 0\n"
				    "drop_hdr_zero_len 0\n"
				    "drop_hdr_overrun 0\n"
				    "drop_tlv_overrun 0\n"
				    "drop_tlv_bad_value 0\n"
				    "drop_tlv_critical 0\n"
				    "drop_too_many 0\n"
				    "drop_ttl_expired 0\n"
				    "drop_not_ip 0\n"
				    "drop_peer_down 0\n"
				    "drop_queue_full 0\n"
				    "drop_oversize 0\n"
				    "drop_stage_verdict 142\n"
				    "drop_stage_error 0\n"
				    "drop_no_return_path 0\n"
				    "drop_reply_no_client 0\n"
				    "drop_tun_full 0\n"
				    "drops 142\n"
				    "up_rx_frames 6000\n"
				    "up_rx_bytes 6110810\n"
				    "up_rx_bad_len 0\n"
				    "up_disconnects 0\n"
				    "egress_packets 5852\n"
				    "egress_bytes 5171171\n"
				    "egress_flows 118\n"
				    "egress_lost 0\n"
				    "egress_reordered 0\n"
				    "egress_unsequenced 0\n"
				    "egress_origins 1\n"
				    "hop1_count 5852\n"
				    "hop1_p50_ns 44287\n"
				    "hop1_p99_ns 321535\n"
				    "hop1_p999_ns 1220607\n"
				    "hop1_max_ns 1974909\n"
				    "hop2_count 5852\n"
				    "hop2_p50_ns 37119\n"
				    "hop2_p99_ns 528383\n"
				    "hop2_p999_ns 1957887\n"
				    "hop2_max_ns 2672464\n"
				    "hops_count 11704\n"
				    "hops_p50_ns 41727\n"
				    "hops_p99_ns 382975\n"
				    "hops_p999_ns 1679359\n"
				    "hops_max_ns 2672464\n"
				    "egress_span_us 1499590\n"
				    "e2e_p50_ns 83455\n"
				    "e2e_p99_ns 1220607\n"
				    "stage_stamp_packets 6000\n"
				    "stage_stamp_bytes 5306470\n"
				    "stage_stamp_flows 120\n"
				    "stage_stamp_flows_untracked_packets 0\n"
				    "stage_stamp_no_flow_id 0\n"
				    "stage_stamp_hops_full 0\n"
				    "stage_stamp_errors 0\n"
				    "stage_stamp_dropped 0\n"
				    "stage_dpi_packets 6000\n"
				    "stage_dpi_packets_inspected 532\n"
				    "stage_dpi_packets_fastpath 5468\n"
				    "stage_dpi_not_ip 0\n"
				    "stage_dpi_no_key 0\n"
				    "stage_dpi_malformed 0\n"
				    "stage_dpi_fragments 0\n"
				    "stage_dpi_flows 120\n"
				    "stage_dpi_flows_active 120\n"
				    "stage_dpi_flows_detected 120\n"
				    "stage_dpi_flows_gaveup 0\n"
				    "stage_dpi_flows_unknown 0\n"
				    "stage_dpi_flows_unfinished 0\n"
				    "stage_dpi_flows_evicted 0\n"
				    "stage_dpi_nomem 0\n"
				    "stage_dpi_ndpi_ns 5919080\n"
				    "stage_dpi_errors 0\n"
				    "stage_dpi_dropped 0\n"
				    "stage_policy_frames 6000\n"
				    "stage_policy_evaluations 333\n"
				    "stage_policy_cache_hits 5667\n"
				    "stage_policy_pending_pass 276\n"
				    "stage_policy_allowed 5546\n"
				    "stage_policy_logged 30\n"
				    "stage_policy_denied 75\n"
				    "stage_policy_rejected 73\n"
				    "stage_policy_replies_tcp_rst 5\n"
				    "stage_policy_replies_icmp 1\n"
				    "stage_policy_reply_suppressed 20\n"
				    "stage_policy_no_key 0\n"
				    "stage_policy_rules 9\n"
				    "stage_policy_reloads 0\n"
				    "stage_policy_flows 120\n"
				    "stage_policy_flows_evicted 0\n"
				    "stage_policy_default_hits 5546\n"
				    "stage_policy_rule_1_hits 0\n"
				    "stage_policy_rule_2_hits 0\n"
				    "stage_policy_rule_3_hits 0\n"
				    "stage_policy_rule_4_hits 75\n"
				    "stage_policy_rule_5_hits 0\n"
				    "stage_policy_rule_6_hits 73\n"
				    "stage_policy_rule_7_hits 30\n"
				    "stage_policy_rule_8_hits 0\n"
				    "stage_policy_rule_9_hits 0\n"
				    "stage_policy_errors 0\n"
				    "stage_policy_dropped 142\n"
				    "stage_flowlog_frames 6000\n"
				    "stage_flowlog_flows 120\n"
				    "stage_flowlog_lines 0\n"
				    "stage_flowlog_lines_update 0\n"
				    "stage_flowlog_bytes_written 0\n"
				    "stage_flowlog_rotations 0\n"
				    "stage_flowlog_write_errors 0\n"
				    "stage_flowlog_lines_lost 0\n"
				    "stage_flowlog_clock_skew 0\n"
				    "stage_flowlog_no_flow_key 0\n"
				    "stage_flowlog_hops_untracked 0\n"
				    "stage_flowlog_oom 0\n"
				    "stage_flowlog_flows_active 120\n"
				    "stage_flowlog_flows_evicted 0\n"
				    "stage_flowlog_flows_timeout 0\n"
				    "stage_flowlog_flows_closed 0\n"
				    "stage_flowlog_errors 0\n"
				    "stage_flowlog_dropped 0\n";

/* The same run's ingress node: a next hop (down_transport, a non-numeric value), no
 * egress figures. */
static const char ingress_report[] = "node edge-in\n"
				     "node_id 1\n"
				     "workers 1\n"
				     "run_ms 1503\n"
				     "cpu_ms 76\n"
				     "rx_frames 0\n"
				     "tx_frames 6000\n"
				     "stalls 0\n"
				     "back_rx_frames 6\n"
				     "back_tx_frames 0\n"
				     "replies 0\n"
				     "tun_rx 0\n"
				     "tun_tx 0\n"
				     "notices 0\n"
				     "drop_short 0\n"
				     "drop_bad_version 0\n"
				     "drop_bad_md_type 0\n"
				     "drop_hdr_zero_len 0\n"
				     "drop_hdr_overrun 0\n"
				     "drop_tlv_overrun 0\n"
				     "drop_tlv_bad_value 0\n"
				     "drop_tlv_critical 0\n"
				     "drop_too_many 0\n"
				     "drop_ttl_expired 0\n"
				     "drop_not_ip 0\n"
				     "drop_peer_down 0\n"
				     "drop_queue_full 0\n"
				     "drop_oversize 0\n"
				     "drop_stage_verdict 0\n"
				     "drop_stage_error 0\n"
				     "drop_no_return_path 0\n"
				     "drop_reply_no_client 6\n"
				     "drop_tun_full 0\n"
				     "drops 6\n"
				     "ingress_taken 6000\n"
				     "ingress_sent 6000\n"
				     "ingress_reconnect_seq 0\n"
				     "down_transport tcp\n"
				     "down_replicas 1\n"
				     "down_auto_fallbacks 0\n"
				     "down_tx_frames 6000\n"
				     "down_tx_bytes 6038810\n"
				     "down_connects 1\n"
				     "down_connect_fails 0\n"
				     "down_disconnects 0\n"
				     "down_congested 0\n"
				     "down_lost_on_close 0\n"
				     "down_queue_full 0\n"
				     "stage_stamp_packets 6006\n"
				     "stage_stamp_bytes 5306726\n"
				     "stage_stamp_flows 120\n"
				     "stage_stamp_flows_untracked_packets 0\n"
				     "stage_stamp_no_flow_id 0\n"
				     "stage_stamp_hops_full 0\n"
				     "stage_stamp_errors 0\n"
				     "stage_stamp_dropped 0\n"
				     "stage_identity_frames 6006\n"
				     "stage_identity_matched_src 2279\n"
				     "stage_identity_matched_dst 3727\n"
				     "stage_identity_unknown 0\n"
				     "stage_identity_no_key 0\n"
				     "stage_identity_directory_entries 8\n"
				     "stage_identity_directory_prefixes 9\n"
				     "stage_identity_reloads 0\n"
				     "stage_identity_errors 0\n"
				     "stage_identity_dropped 0\n";

/* Renders text; returns the output (malloc'd) and the result in *rc. */
static char *render(const char *text, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	*rc = rdm_metrics_render(text, f);
	fclose(f);
	return buf;
}

/* Asserts that out holds line as a whole line. */
static void has_line(const char *out, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = out; (p = strstr(p, line)); p++)
		if ((p == out || p[-1] == '\n') && p[n] == '\n')
			return;
	cr_assert_fail("missing line: %s", line);
}

static void lacks(const char *out, const char *text)
{
	cr_assert_null(strstr(out, text), "unexpected: %s", text);
}

/* Runs tests/lib/promcheck.py on text; its first output line in msg, its exit status
 * returned. */
static int promcheck(const char *text, char *msg, size_t len)
{
	char path[] = "/tmp/rdm-metrics-XXXXXX", cmd[512];
	int fd = mkstemp(path), st;
	FILE *p;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	cr_assert_eq(access("tests/lib/promcheck.py", R_OK), 0,
		     "tests/lib/promcheck.py not found: run from the repository root");
	snprintf(cmd, sizeof(cmd), "python3 tests/lib/promcheck.py %s 2>&1", path);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	msg[0] = '\0';
	if (!fgets(msg, (int)len, p))
		msg[0] = '\0';
	while (fgetc(p) != EOF)
		;
	st = pclose(p);
	unlink(path);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(metrics, families_render_exact_lines)
{
	int rc;
	char *out = render(egress_report, &rc);

	cr_assert_eq(rc, 0);
	/* The info metric first: the node's name (no other non-numeric value here). */
	cr_assert(!strncmp(out, "# HELP rdmesh_node_info ", 24));
	has_line(out, "# TYPE rdmesh_node_info gauge");
	has_line(out, "rdmesh_node_info{node=\"sase-1\"} 1");
	/* Counters get _total, gauges from the table do not. */
	has_line(out, "# TYPE rdmesh_rx_frames_total counter");
	has_line(out, "rdmesh_rx_frames_total{node=\"sase-1\"} 6000");
	has_line(out, "rdmesh_cpu_ms_total{node=\"sase-1\"} 151");
	has_line(out, "# TYPE rdmesh_workers gauge");
	has_line(out, "rdmesh_workers{node=\"sase-1\"} 2");
	has_line(out, "rdmesh_egress_span_us{node=\"sase-1\"} 1499590");
	/* Drops: one family, the reason as a label, the sum line left out. */
	cr_assert(strstr(out, "# TYPE rdmesh_drops_total counter\n"
			      "rdmesh_drops_total{node=\"sase-1\",reason=\"short\"} 0\n"
			      "rdmesh_drops_total{node=\"sase-1\",reason=\"bad_version\"} 0\n"));
	has_line(out, "rdmesh_drops_total{node=\"sase-1\",reason=\"stage_verdict\"} 142");
	has_line(out, "rdmesh_drops_total{node=\"sase-1\",reason=\"tlv_bad_value\"} 0");
	has_line(out, "rdmesh_drops_total{node=\"sase-1\",reason=\"reply_no_client\"} 0");
	lacks(out, "reason=\"\"");
	lacks(out, "rdmesh_drops{");
	/* Latency: one summary, hop by hop (quantiles, then the count), in seconds. */
	cr_assert(strstr(out,
			 "# TYPE rdmesh_hop_latency_seconds summary\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"1\",quantile=\"0.5\"} "
			 "0.000044287\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"1\",quantile=\"0.99\"} "
			 "0.000321535\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"1\",quantile=\"0.999\"} "
			 "0.001220607\n"
			 "rdmesh_hop_latency_seconds_count{node=\"sase-1\",hop=\"1\"} 5852\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"2\",quantile=\"0.5\"} "
			 "0.000037119\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"2\",quantile=\"0.99\"} "
			 "0.000528383\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"2\",quantile=\"0.999\"} "
			 "0.001957887\n"
			 "rdmesh_hop_latency_seconds_count{node=\"sase-1\",hop=\"2\"} 5852\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"all\",quantile=\"0.5\"} "
			 "0.000041727\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"all\",quantile=\"0.99\"}"
			 " 0.000382975\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"all\",quantile=\"0."
			 "999\"} 0.001679359\n"
			 "rdmesh_hop_latency_seconds_count{node=\"sase-1\",hop=\"all\"} 11704\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"e2e\",quantile=\"0.5\"} "
			 "0.000083455\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"e2e\",quantile=\"0.99\"}"
			 " 0.001220607\n"
			 "# HELP rdmesh_hop_latency_max_seconds "),
		  "hop latency family:\n%s", out);
	cr_assert(strstr(
	    out, "# TYPE rdmesh_hop_latency_max_seconds gauge\n"
		 "rdmesh_hop_latency_max_seconds{node=\"sase-1\",hop=\"1\"} 0.001974909\n"
		 "rdmesh_hop_latency_max_seconds{node=\"sase-1\",hop=\"2\"} 0.002672464\n"
		 "rdmesh_hop_latency_max_seconds{node=\"sase-1\",hop=\"all\"} 0.002672464\n"));
	lacks(out, "rdmesh_hop1");
	lacks(out, "rdmesh_e2e");
	/* A stage gauge gathers the stages that have it; policy's occupancy joins it. */
	cr_assert(strstr(out,
			 "# TYPE rdmesh_stage_flows_active gauge\n"
			 "rdmesh_stage_flows_active{node=\"sase-1\",stage=\"dpi\"} 120\n"
			 "rdmesh_stage_flows_active{node=\"sase-1\",stage=\"policy\"} 120\n"
			 "rdmesh_stage_flows_active{node=\"sase-1\",stage=\"flowlog\"} 120\n"));
	cr_assert(strstr(out, "# TYPE rdmesh_stage_errors_total counter\n"
			      "rdmesh_stage_errors_total{node=\"sase-1\",stage=\"stamp\"} 0\n"
			      "rdmesh_stage_errors_total{node=\"sase-1\",stage=\"dpi\"} 0\n"
			      "rdmesh_stage_errors_total{node=\"sase-1\",stage=\"policy\"} 0\n"
			      "rdmesh_stage_errors_total{node=\"sase-1\",stage=\"flowlog\"} 0\n"));
	has_line(out, "rdmesh_stage_dropped_total{node=\"sase-1\",stage=\"policy\"} 142");
	has_line(out, "rdmesh_stage_rules{node=\"sase-1\",stage=\"policy\"} 9");
	free(out);
}

Test(metrics, stage_counters_with_underscores_split_at_the_stage_name)
{
	int rc;
	char *out = render(egress_report, &rc);

	cr_assert_eq(rc, 0);
	has_line(out,
		 "rdmesh_stage_flows_untracked_packets_total{node=\"sase-1\",stage=\"stamp\"} 0");
	has_line(out, "rdmesh_stage_packets_inspected_total{node=\"sase-1\",stage=\"dpi\"} 532");
	has_line(out, "rdmesh_stage_packets_fastpath_total{node=\"sase-1\",stage=\"dpi\"} 5468");
	has_line(out, "rdmesh_stage_ndpi_ns_total{node=\"sase-1\",stage=\"dpi\"} 5919080");
	has_line(out, "rdmesh_stage_replies_tcp_rst_total{node=\"sase-1\",stage=\"policy\"} 5");
	has_line(out, "rdmesh_stage_reply_suppressed_total{node=\"sase-1\",stage=\"policy\"} 20");
	has_line(out, "rdmesh_stage_lines_update_total{node=\"sase-1\",stage=\"flowlog\"} 0");
	has_line(out, "rdmesh_stage_hops_untracked_total{node=\"sase-1\",stage=\"flowlog\"} 0");
	/* The per-rule counters become one family with the rule as a label. */
	cr_assert(strstr(
	    out, "# TYPE rdmesh_stage_rule_hits_total counter\n"
		 "rdmesh_stage_rule_hits_total{node=\"sase-1\",stage=\"policy\",rule=\"1\"} 0\n"));
	has_line(out,
		 "rdmesh_stage_rule_hits_total{node=\"sase-1\",stage=\"policy\",rule=\"4\"} 75");
	has_line(out,
		 "rdmesh_stage_rule_hits_total{node=\"sase-1\",stage=\"policy\",rule=\"6\"} 73");
	has_line(out, "rdmesh_stage_default_hits_total{node=\"sase-1\",stage=\"policy\"} 5546");
	/* Stage names never leak into metric names. */
	lacks(out, "rdmesh_stage_stamp");
	lacks(out, "rdmesh_stage_dpi");
	lacks(out, "rdmesh_stage_policy");
	lacks(out, "rdmesh_stage_flowlog");
	lacks(out, "stage=\"flows\"");
	free(out);

	/* A key naming no registered stage keeps the general rule. */
	out = render("node n1\nstage_bogus_frames 3\nstage_identity_directory_entries 8\n", &rc);
	cr_assert_eq(rc, 0);
	has_line(out, "rdmesh_stage_bogus_frames_total{node=\"n1\"} 3");
	has_line(out, "# TYPE rdmesh_stage_directory_entries gauge");
	has_line(out, "rdmesh_stage_directory_entries{node=\"n1\",stage=\"identity\"} 8");
	free(out);
}

Test(metrics, non_numeric_values_become_info_labels)
{
	int rc;
	char *out = render(ingress_report, &rc);

	cr_assert_eq(rc, 0);
	has_line(out, "rdmesh_node_info{node=\"edge-in\",down_transport=\"tcp\"} 1");
	has_line(out, "rdmesh_down_tx_frames_total{node=\"edge-in\"} 6000");
	has_line(out, "# TYPE rdmesh_down_replicas gauge");
	has_line(out, "# TYPE rdmesh_ingress_reconnect_seq gauge");
	has_line(out, "rdmesh_stage_directory_prefixes{node=\"edge-in\",stage=\"identity\"} 9");
	has_line(out, "rdmesh_drops_total{node=\"edge-in\",reason=\"reply_no_client\"} 6");
	lacks(out, "rdmesh_down_transport");
	lacks(out, "hop=");
	free(out);

	/* Label values are escaped; keys are sanitized into names. */
	out = render("node a\"b\\c\nmode-x fast lane\nrx.frames 7\n", &rc);
	cr_assert_eq(rc, 0);
	has_line(out, "rdmesh_node_info{node=\"a\\\"b\\\\c\",mode_x=\"fast lane\"} 1");
	has_line(out, "rdmesh_rx_frames_total{node=\"a\\\"b\\\\c\"} 7");
	free(out);
}

Test(metrics, each_family_once_and_contiguous)
{
	int rc, types = 0;
	char *out = render(egress_report, &rc), *save = NULL, *copy;
	char fam[256] = "", seen[8192] = " ";

	cr_assert_eq(rc, 0);
	copy = strdup(out);
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char name[256], key[260];

		if (!strncmp(l, "# HELP ", 7)) {
			cr_assert_eq(sscanf(l + 7, "%255s", name), 1);
			snprintf(key, sizeof(key), " %s ", name);
			cr_assert_null(strstr(seen, key), "family %s twice", name);
			strncat(seen, key + 1, sizeof(seen) - strlen(seen) - 1);
			snprintf(fam, sizeof(fam), "%s", name);
			continue;
		}
		if (!strncmp(l, "# TYPE ", 7)) {
			cr_assert_eq(sscanf(l + 7, "%255s", name), 1);
			cr_assert_str_eq(name, fam, "TYPE %s right after its HELP", name);
			types++;
			continue;
		}
		/* A sample belongs to the family whose HELP came last. */
		cr_assert(!strncmp(l, fam, strlen(fam)) &&
			      (l[strlen(fam)] == '{' || !strncmp(l + strlen(fam), "_count{", 7)),
			  "sample outside its family %s: %s", fam, l);
	}
	cr_assert_gt(types, 60);
	free(copy);
	free(out);
}

Test(metrics, strict_checker_passes)
{
	char msg[256];
	int rc;
	char *out = render(egress_report, &rc);

	cr_assert_eq(rc, 0);
	cr_assert_eq(promcheck(out, msg, sizeof(msg)), 0, "promcheck: %s", msg);
	cr_assert(!strncmp(msg, "ok: ", 4), "%s", msg);
	free(out);
	out = render(ingress_report, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_eq(promcheck(out, msg, sizeof(msg)), 0, "promcheck: %s", msg);
	free(out);
	/* And the checker is not a rubber stamp: a family split in two fails it. */
	cr_assert_eq(promcheck("# HELP a_total a\n# TYPE a_total counter\na_total{x=\"1\"} 1\n"
			       "# HELP b b\n# TYPE b gauge\nb 1\na_total{x=\"2\"} 1\n",
			       msg, sizeof(msg)),
		     1);
	cr_assert(strstr(msg, "interleaved"), "%s", msg);
}

Test(metrics, bad_reports_are_refused_and_write_nothing)
{
	static const char *const bad[] = {
	    "rx_frames 1\nnode n1\n",		   /* the node line is not first */
	    "node n1\nrx_frames\n",		   /* no value */
	    "node n1\n rx_frames 1\n",		   /* no key */
	    "node n1\nrx_frames 1\nrx_frames 2\n", /* the same series twice */
	    "node n1\nrx_frames 1\nrx-frames 2\n", /* twice after sanitizing */
	    "node n1\nhop1_p50_ns 1.5\n",	   /* latency not in whole ns */
	    "node n1\nhop1_max_ns -3\n",
	    "node n1\nrx_frames -1\n",				  /* a counter below zero */
	    "node n1\nnode n1\n",				  /* one node twice */
	    "node n1\ndown_transport tcp\ndown_transport rdma\n", /* one label twice */
	    "node n1\nrx_frames 1\nnode n1\nrx_frames 2\n",	  /* in two sections */
	    "agent a\nepoch x\n",				  /* an agent value, not a number */
	    "agent a\nepoch 1\nagent a\nepoch 2\n",		  /* one agent twice */
	    "agent a\nepoch 1\nnode n1\nrx_frames 1\nnode n1\n",  /* the node twice, later */
	};
	int rc;
	char *out;

	cr_assert_eq(rdm_metrics_render(NULL, stdout), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		out = render(bad[i], &rc);
		cr_assert_eq(rc, -EINVAL, "report %zu: rc %d", i, rc);
		cr_assert_str_empty(out, "report %zu: wrote %s", i, out);
		free(out);
	}
	/* CRLF line ends and a missing last newline are fine. */
	out = render("node n1\r\nrx_frames 4", &rc);
	cr_assert_eq(rc, 0);
	has_line(out, "rdmesh_rx_frames_total{node=\"n1\"} 4");
	free(out);
}

/* report under another node's name (its first line replaced): malloc'd. */
static char *renamed(const char *report, const char *name)
{
	char *out;

	cr_assert_gt(asprintf(&out, "node %s%s", name, strchr(report, '\n')), 0);
	return out;
}

/* Counts the lines of out that are exactly line. */
static int count_lines(const char *out, const char *line)
{
	size_t n = strlen(line);
	int k = 0;

	for (const char *p = out; (p = strstr(p, line)); p++)
		if ((p == out || p[-1] == '\n') && p[n] == '\n')
			k++;
	return k;
}

Test(metrics, several_reports_one_family_each_with_every_node)
{
	char *second = renamed(egress_report, "sase-2"), *text, *out, msg[256];
	int rc;

	cr_assert_gt(asprintf(&text, "agent host2\nepoch 7\nreplicas 3\n%s%s%s", egress_report,
			      ingress_report, second),
		     0);
	out = render(text, &rc);
	cr_assert_eq(rc, 0);
	/* Every family once, contiguous, parseable: the strict checker says so. */
	cr_assert_eq(promcheck(out, msg, sizeof(msg)), 0, "promcheck: %s\n%s", msg, out);
	cr_assert_eq(count_lines(out, "# TYPE rdmesh_rx_frames_total counter"), 1);
	cr_assert_eq(count_lines(out, "# TYPE rdmesh_node_info gauge"), 1);
	cr_assert_eq(count_lines(out, "# TYPE rdmesh_hop_latency_seconds summary"), 1);
	cr_assert(strstr(out, "# TYPE rdmesh_rx_frames_total counter\n"
			      "rdmesh_rx_frames_total{node=\"sase-1\"} 6000\n"
			      "rdmesh_rx_frames_total{node=\"edge-in\"} 0\n"
			      "rdmesh_rx_frames_total{node=\"sase-2\"} 6000\n"),
		  "%s", out);
	/* The info metric leads, one sample per node, each with its own labels. */
	cr_assert(strstr(out, "# TYPE rdmesh_node_info gauge\n"
			      "rdmesh_node_info{node=\"sase-1\"} 1\n"
			      "rdmesh_node_info{node=\"edge-in\",down_transport=\"tcp\"} 1\n"
			      "rdmesh_node_info{node=\"sase-2\"} 1\n"),
		  "%s", out);
	/* A node's hop stays together (quantiles, then count), apart from the other's. */
	cr_assert(strstr(out,
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"1\",quantile=\"0.999\"} "
			 "0.001220607\n"
			 "rdmesh_hop_latency_seconds_count{node=\"sase-1\",hop=\"1\"} 5852\n"
			 "rdmesh_hop_latency_seconds{node=\"sase-1\",hop=\"2\",quantile=\"0.5\"} "),
		  "%s", out);
	cr_assert(strstr(out,
			 "rdmesh_hop_latency_seconds{node=\"sase-2\",hop=\"1\",quantile=\"0.999\"} "
			 "0.001220607\n"
			 "rdmesh_hop_latency_seconds_count{node=\"sase-2\",hop=\"1\"} 5852\n"),
		  "%s", out);
	has_line(out,
		 "rdmesh_stage_rule_hits_total{node=\"sase-2\",stage=\"policy\",rule=\"4\"} 75");
	has_line(out, "rdmesh_drops_total{node=\"edge-in\",reason=\"reply_no_client\"} 6");
	has_line(out, "rdmesh_drops_total{node=\"sase-2\",reason=\"stage_verdict\"} 142");
	/* The agent's own gauges, labelled by the agent. */
	has_line(out, "# TYPE rdmesh_agent_epoch gauge");
	has_line(out, "rdmesh_agent_epoch{agent=\"host2\"} 7");
	has_line(out, "rdmesh_agent_replicas{agent=\"host2\"} 3");
	lacks(out, "node=\"host2\"");
	lacks(out, "rdmesh_agent_epoch_total");
	free(out);
	free(text);

	/* The same node twice is a duplicate series: refused, nothing written. */
	free(second);
	second = renamed(egress_report, "sase-1");
	cr_assert_gt(asprintf(&text, "%s%s", egress_report, second), 0);
	out = render(text, &rc);
	cr_assert_eq(rc, -EINVAL);
	cr_assert_str_empty(out);
	free(out);
	free(text);
	free(second);
}

Test(metrics, empty_text_is_an_empty_exposition)
{
	static const char *const empty[] = {"", "\n", "\r\n\n"};
	int rc;
	char *out;

	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		out = render(empty[i], &rc);
		cr_assert_eq(rc, 0, "text %zu: rc %d", i, rc);
		cr_assert_str_empty(out, "text %zu: wrote %s", i, out);
		free(out);
	}
	/* An agent with no replica yet: only its own gauges. */
	out = render("agent host1\nepoch 0\nreplicas 0\n", &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(out,
			 "# HELP rdmesh_agent_epoch Epoch of the last assignment the agent "
			 "applied; 0 until the first (agent key epoch).\n"
			 "# TYPE rdmesh_agent_epoch gauge\n"
			 "rdmesh_agent_epoch{agent=\"host1\"} 0\n"
			 "# HELP rdmesh_agent_replicas Replicas assigned to the agent (running "
			 "or ended; not leaving ones) (agent key replicas).\n"
			 "# TYPE rdmesh_agent_replicas gauge\n"
			 "rdmesh_agent_replicas{agent=\"host1\"} 0\n");
	free(out);
}

/* ---- the HTTP endpoint, on a real node (built, not run) --------------------------- */

static struct rdm_chain_conf chain;
static struct rdm_node *node;
static char cfg[] = "/tmp/rdm-metrics-cfg-XXXXXX";

static void node_up(void)
{
	static const char yaml[] = "chain: {name: m, spi: 9}\n"
				   "nodes:\n"
				   "  - name: solo\n"
				   "    stages: [stamp, dpi]\n"
				   "    ingress: {mode: gen, count: 10, flows: 2}\n"
				   "    egress: {count: 10}\n";
	char err[512];
	int fd = mkstemp(cfg);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)sizeof(yaml) - 1);
	close(fd);
	cr_assert_eq(rdm_chain_load(cfg, &chain, err, sizeof(err)), 0, "%s", err);
	node = rdm_node_new(&chain, "solo", err, sizeof(err));
	cr_assert_not_null(node, "%s", err);
}

static void node_down(void)
{
	rdm_node_free(node);
	rdm_chain_free(&chain);
	unlink(cfg);
}

/* Sends req to 127.0.0.1:port, reads the whole answer into a malloc'd string, and
 * returns it; the status code in *status. */
static char *http(int port, const char *req, int *status)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	char chunk[4096];
	ssize_t n;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s",
		     strerror(errno));
	cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		fwrite(chunk, 1, (size_t)n, f);
	close(fd);
	fclose(f);
	*status = 0;
	sscanf(buf, "HTTP/1.%*d %d", status);
	return buf;
}

Test(metrics, serves_metrics_404_elsewhere, .init = node_up, .fini = node_down, .timeout = 20)
{
	char err[256], msg[256];
	struct rdm_metrics *m = rdm_metrics_start("127.0.0.1:0", node, err, sizeof(err));
	int port, status;
	char *r, *body;

	cr_assert_not_null(m, "%s", err);
	port = rdm_metrics_port(m);
	cr_assert_gt(port, 0);
	for (int i = 0; i < 2; i++) { /* twice: the server keeps serving */
		r = http(port, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
			 &status);
		cr_assert_eq(status, 200, "%s", r);
		cr_assert(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4"), "%s", r);
		body = strstr(r, "\r\n\r\n");
		cr_assert_not_null(body);
		body += 4;
		has_line(body, "rdmesh_node_info{node=\"solo\",protect=\"auth\"} 1");
		has_line(body, "rdmesh_stage_packets_total{node=\"solo\",stage=\"dpi\"} 0");
		has_line(body, "rdmesh_stage_flows_active{node=\"solo\",stage=\"dpi\"} 0");
		cr_assert_eq(promcheck(body, msg, sizeof(msg)), 0, "promcheck: %s", msg);
		free(r);
	}
	r = http(port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n", &status);
	cr_assert_eq(status, 200);
	free(r);
	r = http(port, "GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &status);
	cr_assert_eq(status, 404, "%s", r);
	free(r);
	r = http(port, "GET / HTTP/1.0\r\n\r\n", &status);
	cr_assert_eq(status, 404, "%s", r);
	free(r);
	r = http(port, "DELETE /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &status);
	cr_assert_eq(status, 405, "%s", r);
	cr_assert(strstr(r, "\r\nAllow: GET, HEAD"), "%s", r);
	free(r);
	r = http(port, "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &status);
	cr_assert_eq(status, 200, "%s", r);
	cr_assert(!strstr(r, "rdmesh_"), "HEAD has no body: %s", r);
	free(r);

	/* Stopping frees the port at once: the same port can be taken again. */
	rdm_metrics_stop(m);
	snprintf(msg, sizeof(msg), "127.0.0.1:%d", port);
	m = rdm_metrics_start(msg, node, err, sizeof(err));
	cr_assert_not_null(m, "restart on %s: %s", msg, err);
	rdm_metrics_stop(m);
	rdm_metrics_stop(NULL);
}

Test(metrics, start_errors_are_clear, .init = node_up, .fini = node_down, .timeout = 20)
{
	char err[256], addr[64];
	struct rdm_metrics *m = rdm_metrics_start("127.0.0.1:0", node, err, sizeof(err)), *m2;

	cr_assert_not_null(m, "%s", err);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", rdm_metrics_port(m));
	errno = 0;
	m2 = rdm_metrics_start(addr, node, err, sizeof(err));
	cr_assert_null(m2);
	cr_assert_eq(errno, EADDRINUSE);
	cr_assert(strstr(err, addr) && strstr(err, "Address already in use"), "%s", err);
	rdm_metrics_stop(m);

	m2 = rdm_metrics_start("localhost-ish", node, err, sizeof(err));
	cr_assert_null(m2);
	cr_assert_eq(errno, EINVAL);
	cr_assert(strstr(err, "'localhost-ish' is not IP:PORT"), "%s", err);
	m2 = rdm_metrics_start("192.0.2.1:9464", node, err, sizeof(err)); /* not ours */
	cr_assert_null(m2);
	cr_assert(strstr(err, "Cannot assign requested address"), "%s", err);
}

/* ---- one server for several nodes (rdm_metrics_start_fn), as an agent runs it ------- */

struct several {
	const struct rdm_node *n;
	_Atomic int mode; /* 0: agent, the real node, a second report; 1: none; 2: fails */
	_Atomic int calls;
};

static int several_report(void *arg, FILE *out)
{
	struct several *s = arg;

	s->calls++;
	if (s->mode == 2)
		return -EIO;
	if (s->mode == 1)
		return 0;
	fprintf(out, "agent host3\nepoch 4\nreplicas 2\n");
	rdm_node_report(s->n, out);
	fputs(egress_report, out);
	return 0;
}

/* The body of an HTTP answer (inside r). */
static char *body_of(char *r)
{
	char *b = strstr(r, "\r\n\r\n");

	cr_assert_not_null(b, "%s", r);
	return b + 4;
}

Test(metrics, callback_server_serves_every_node, .init = node_up, .fini = node_down, .timeout = 20)
{
	static const char get[] = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
	struct several s = {.n = node};
	char err[256], msg[256], *r, *body;
	struct rdm_metrics *m =
	    rdm_metrics_start_fn("127.0.0.1:0", several_report, &s, err, sizeof(err));
	int port, status;

	cr_assert_not_null(m, "%s", err);
	port = rdm_metrics_port(m);
	r = http(port, get, &status);
	cr_assert_eq(status, 200, "%s", r);
	body = body_of(r);
	cr_assert_eq(promcheck(body, msg, sizeof(msg)), 0, "promcheck: %s\n%s", msg, body);
	has_line(body, "rdmesh_agent_epoch{agent=\"host3\"} 4");
	has_line(body, "rdmesh_agent_replicas{agent=\"host3\"} 2");
	has_line(body, "rdmesh_node_info{node=\"solo\",protect=\"auth\"} 1");
	has_line(body, "rdmesh_node_info{node=\"sase-1\"} 1");
	cr_assert(strstr(body, "# TYPE rdmesh_rx_frames_total counter\n"
			       "rdmesh_rx_frames_total{node=\"solo\"} 0\n"
			       "rdmesh_rx_frames_total{node=\"sase-1\"} 6000\n"),
		  "%s", body);
	has_line(body, "rdmesh_stage_packets_total{node=\"solo\",stage=\"dpi\"} 0");
	cr_assert_eq(count_lines(body, "# TYPE rdmesh_stage_packets_total counter"), 1);
	free(r);

	/* No node yet: an empty 200, which a scraper takes as no samples. */
	s.mode = 1;
	r = http(port, get, &status);
	cr_assert_eq(status, 200, "%s", r);
	cr_assert(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4"), "%s", r);
	cr_assert(strstr(r, "\r\nContent-Length: 0\r\n"), "%s", r);
	cr_assert_str_empty(body_of(r));
	free(r);

	/* A failing callback is a 500 with the reason; the server goes on. */
	s.mode = 2;
	r = http(port, get, &status);
	cr_assert_eq(status, 500, "%s", r);
	cr_assert(strstr(body_of(r), "metrics: Input/output error"), "%s", r);
	free(r);
	s.mode = 0;
	r = http(port, get, &status);
	cr_assert_eq(status, 200, "%s", r);
	free(r);
	/* Another path does not call it; every GET of /metrics did. */
	r = http(port, "GET /x HTTP/1.0\r\n\r\n", &status);
	cr_assert_eq(status, 404);
	free(r);
	cr_assert_eq(s.calls, 4);
	rdm_metrics_stop(m);

	errno = 0;
	cr_assert_null(rdm_metrics_start_fn("127.0.0.1:0", NULL, &s, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
	cr_assert(strstr(err, "no report function"), "%s", err);
	cr_assert_null(rdm_metrics_start_fn("nowhere", several_report, &s, err, sizeof(err)));
	cr_assert(strstr(err, "'nowhere' is not IP:PORT"), "%s", err);
	cr_assert_null(rdm_metrics_start("127.0.0.1:0", NULL, err, sizeof(err)));
	cr_assert_eq(errno, EINVAL);
}
