/* Prometheus metrics for a node: rdm_metrics_render, the converter from the node's
 * report ("key value" lines) to the Prometheus text exposition format. The rules are in
 * node/metrics.h. */
#include "node/metrics.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/stage.h"

struct family {
	char *name;
	const char *type; /* "counter", "gauge", "summary" */
	char *help;
};

struct sample {
	int fam;
	const char *suffix; /* "" or "_count" */
	char *labels;	    /* without braces: node="x",stage="dpi" */
	char *value;
	char *group; /* summaries: the hop, so one hop's quantiles and count stay together */
	int group_seq, sub, seq;
};

struct conv {
	struct family *f;
	int nf, cf;
	struct sample *s;
	int ns, cs;
	const char *who; /* the section's label name: "node", or "agent" */
	char *node;	 /* that label's value, escaped; NULL before the first section */
	char *info;	 /* ",key=\"value\"" for each non-numeric report value */
	int info_fam;	 /* -1 until the first node line */
};

/* Report keys whose values are levels, not running totals. Everything else is a
 * counter. */
static const char *const gauge_keys[] = {
    "node_id",
    "workers",
    "run_ms",
    "down_replicas",
    "egress_origins",
    "egress_span_us",
    "ingress_reconnect_seq",
    NULL,
};
/* The same for the counter part of stage_<stage>_<counter>. */
static const char *const gauge_stage_counters[] = {
    "flows_active", "rules", "directory_entries", "directory_prefixes", NULL,
};
/* Suffixes that mark an occupancy, wherever they appear. */
static const char *const gauge_suffixes[] = {"_active", "_queued_bytes", NULL};

/* HELP for the top-level keys that deserve more than the generic line. */
static const struct {
	const char *key, *help;
} key_help[] = {
    {"node_id", "Node id in the chain"},
    {"workers", "Worker threads of the node"},
    {"run_ms", "Length of the node's run in milliseconds; 0 while it runs"},
    {"cpu_ms", "CPU time of the node process, user plus system, in milliseconds"},
    {"rx_frames", "Frames received from upstream"},
    {"tx_frames", "Frames sent downstream"},
    {"stalls", "Receive batches left with the transport because the next hop was congested"},
    {"down_handshakes", "TLS handshakes that proved a downstream connection (protect: auth)"},
    {"down_handshake_us", "Time those handshakes took in all, connect to proven, in microseconds"},
    {"down_ktls_tx", "Encrypted downstream connections whose sends the kernel encrypts (kTLS)"},
    {"up_rx_tls_errors",
     "Encrypted records from upstream that failed their check (connection reset)"},
    {"auth_refused", "Connections refused because they did not prove to be this hop's peer"},
    {"back_rx_frames", "Frames received travelling back towards the chain's ingress"},
    {"back_tx_frames", "Frames sent back towards the chain's ingress"},
    {"replies", "Packets a stage turned into a reply to their sender"},
    {"ingress_taken", "Packets the ingress took from its source"},
    {"ingress_sent", "Packets the ingress sent into the chain"},
    {"ingress_reconnect_seq", "Ingress sequence number at the last downstream reconnect"},
    {"down_replicas", "Replicas of the next stage this node sends to"},
    {"down_tx_frames", "Frames the downstream connections sent"},
    {"down_tx_bytes", "Bytes the downstream connections sent"},
    {"up_rx_frames", "Frames the upstream connections received"},
    {"up_rx_bytes", "Bytes the upstream connections received"},
    {"up_rx_lost_on_close",
     "Frames that came whole from upstream and no stage took, lost when their connection "
     "closed"},
    {"down_rx_lost_on_close",
     "Frames that came whole back from downstream and were not taken, lost when their "
     "connection closed"},
    {"egress_packets", "Packets accounted for at the chain's egress"},
    {"egress_bytes", "Bytes of the packets accounted for at the egress"},
    {"egress_flows", "Flows seen at the egress"},
    {"egress_lost", "Packets missing from their origin's sequence at the egress"},
    {"egress_reordered", "Packets that arrived at the egress out of their origin's order"},
    {"egress_origins", "Ingress origins seen at the egress"},
    {"egress_span_us", "Microseconds from the first to the last packet at the egress"},
};

static int in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return 1;
	return 0;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && !strcmp(s + a - b, suf);
}

static int has_gauge_suffix(const char *s)
{
	for (const char *const *p = gauge_suffixes; *p; p++)
		if (ends_with(s, *p))
			return 1;
	return 0;
}

/* A value is a number when it is -?[0-9]+(\.[0-9]+)?, as the report prints them. */
static int is_number(const char *v)
{
	if (*v == '-')
		v++;
	if (*v < '0' || *v > '9')
		return 0;
	while (*v >= '0' && *v <= '9')
		v++;
	if (*v == '.') {
		v++;
		if (*v < '0' || *v > '9')
			return 0;
		while (*v >= '0' && *v <= '9')
			v++;
	}
	return *v == '\0';
}

/* Replaces what a metric name (colon_ok) or a label name may not hold with '_'. */
static void sanitize(char *s, int colon_ok)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || (colon_ok && *s == ':')))
			*s = '_';
}

/* A label value in the text format's escaping; NULL on ENOMEM. */
static char *escape_label(const char *v)
{
	char *o = malloc(2 * strlen(v) + 1), *p = o;

	if (!o)
		return NULL;
	for (; *v; v++) {
		if (*v == '\\' || *v == '"') {
			*p++ = '\\';
			*p++ = *v;
		} else if (*v == '\n') {
			*p++ = '\\';
			*p++ = 'n';
		} else {
			*p++ = *v;
		}
	}
	*p = '\0';
	return o;
}

/* HELP text escapes only backslash and newline. */
static void put_help(FILE *o, const char *h)
{
	for (; *h; h++) {
		if (*h == '\\')
			fputs("\\\\", o);
		else if (*h == '\n')
			fputs("\\n", o);
		else
			fputc(*h, o);
	}
}

/* The family called name, created with type and help if new. Returns its index,
 * -ENOMEM, or -EINVAL when it exists with another type. help is copied. */
static int family(struct conv *c, const char *name, const char *type, const char *help)
{
	for (int i = 0; i < c->nf; i++) {
		if (strcmp(c->f[i].name, name))
			continue;
		return strcmp(c->f[i].type, type) ? -EINVAL : i;
	}
	if (c->nf == c->cf) {
		int cap = c->cf ? 2 * c->cf : 64;
		struct family *f = realloc(c->f, (size_t)cap * sizeof(*f));

		if (!f)
			return -ENOMEM;
		c->f = f;
		c->cf = cap;
	}
	c->f[c->nf].name = strdup(name);
	c->f[c->nf].help = strdup(help);
	c->f[c->nf].type = type;
	if (!c->f[c->nf].name || !c->f[c->nf].help) {
		free(c->f[c->nf].name);
		free(c->f[c->nf].help);
		return -ENOMEM;
	}
	return c->nf++;
}

/* Adds a sample to family fam: labels are node="..." followed by extra (",k=\"v\""
 * or ""), value is copied. group (may be NULL) and sub order a summary's samples.
 * 0, -ENOMEM, or -EINVAL for a negative counter (or fam, when it is an error). */
static int sample(struct conv *c, int fam, const char *suffix, const char *extra, const char *value,
		  const char *group, int sub)
{
	struct sample *s;

	if (fam < 0)
		return fam;
	if (value[0] == '-' && !strcmp(c->f[fam].type, "counter"))
		return -EINVAL; /* the report prints counters unsigned */
	if (c->ns == c->cs) {
		int cap = c->cs ? 2 * c->cs : 256;

		s = realloc(c->s, (size_t)cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		c->s = s;
		c->cs = cap;
	}
	s = &c->s[c->ns];
	memset(s, 0, sizeof(*s));
	s->fam = fam;
	s->suffix = suffix;
	s->sub = sub;
	s->seq = c->ns;
	s->group_seq = c->ns;
	if (asprintf(&s->labels, "%s=\"%s\"%s", c->who, c->node, extra) < 0) {
		s->labels = NULL;
		return -ENOMEM;
	}
	s->value = strdup(value);
	/* The group is per node: one node's quantiles and count of a hop stay together,
	 * and apart from another node's (node names hold no newline). */
	s->group = NULL;
	if (group && asprintf(&s->group, "%s\n%s", c->node, group) < 0)
		s->group = NULL;
	if (!s->value || (group && !s->group)) {
		free(s->labels);
		free(s->value);
		free(s->group);
		return -ENOMEM;
	}
	if (group)
		for (int i = 0; i < c->ns; i++)
			if (c->s[i].fam == fam && c->s[i].group &&
			    !strcmp(c->s[i].group, s->group)) {
				s->group_seq = c->s[i].group_seq;
				break;
			}
	c->ns++;
	return 0;
}

/* "rdmesh_" + base (sanitized) + "_total" for a counter unless already there. The
 * result lives in buf. */
static const char *metric_name(char *buf, size_t len, const char *base, int counter)
{
	int n = snprintf(buf, len, "rdmesh_%s", base);

	if (n > 0 && (size_t)n < len)
		sanitize(buf + 7, 1);
	if (counter && !ends_with(buf, "_total"))
		strncat(buf, "_total", len - strlen(buf) - 1);
	return buf;
}

/* Nanoseconds as seconds, exactly ("47359" -> "0.000047359"). -EINVAL unless ns is a
 * whole number. */
static int ns_to_seconds(const char *ns, char *out, size_t len)
{
	unsigned long long v;
	char *end;
	size_t n;

	if (*ns < '0' || *ns > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(ns, &end, 10);
	if (*end || errno)
		return -EINVAL;
	snprintf(out, len, "%llu.%09llu", v / 1000000000ull, v % 1000000000ull);
	n = strlen(out);
	while (n > 2 && out[n - 1] == '0' && out[n - 2] != '.')
		out[--n] = '\0';
	return 0;
}

#define NAME_MAX_LEN 256

/* hop<N>_<figure>, hops_<figure>, e2e_<figure>. 1 if key was one (and is done), 0 if
 * not, or a negative errno. */
static int conv_hop(struct conv *c, const char *key, const char *value)
{
	static const struct {
		const char *fig, *quantile;
	} q[] = {{"p50_ns", "0.5"}, {"p99_ns", "0.99"}, {"p999_ns", "0.999"}};
	static const char lat_help[] =
	    "Latency of a hop, stamp to stamp, as the egress measured it. hop=\"all\" is every "
	    "hop of every frame, hop=\"e2e\" ingress to egress (report keys hop<N>_*_ns, "
	    "hops_*, e2e_*).";
	char hop[32], extra[96], secs[48];
	const char *fig;
	int fam;

	if (!strncmp(key, "hops_", 5)) {
		snprintf(hop, sizeof(hop), "all");
		fig = key + 5;
	} else if (!strncmp(key, "e2e_", 4)) {
		snprintf(hop, sizeof(hop), "e2e");
		fig = key + 4;
	} else if (!strncmp(key, "hop", 3) && key[3] >= '0' && key[3] <= '9') {
		size_t d = strspn(key + 3, "0123456789");

		if (key[3 + d] != '_' || d >= sizeof(hop))
			return 0;
		memcpy(hop, key + 3, d);
		hop[d] = '\0';
		fig = key + 3 + d + 1;
	} else {
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		if (strcmp(fig, q[i].fig))
			continue;
		if (ns_to_seconds(value, secs, sizeof(secs)) < 0)
			return -EINVAL;
		snprintf(extra, sizeof(extra), ",hop=\"%s\",quantile=\"%s\"", hop, q[i].quantile);
		fam = family(c, "rdmesh_hop_latency_seconds", "summary", lat_help);
		return sample(c, fam, "", extra, secs, hop, i) ?: 1;
	}
	snprintf(extra, sizeof(extra), ",hop=\"%s\"", hop);
	if (!strcmp(fig, "count")) {
		fam = family(c, "rdmesh_hop_latency_seconds", "summary", lat_help);
		return sample(c, fam, "_count", extra, value, hop, 3) ?: 1;
	}
	if (!strcmp(fig, "max_ns")) {
		if (ns_to_seconds(value, secs, sizeof(secs)) < 0)
			return -EINVAL;
		fam = family(c, "rdmesh_hop_latency_max_seconds", "gauge",
			     "Largest latency of a hop seen so far (report keys hop<N>_max_ns, "
			     "hops_max_ns).");
		return sample(c, fam, "", extra, secs, NULL, 0) ?: 1;
	}
	return 0;
}

/* stage_<stage>_<counter> for a registered stage: 1 if done, 0 if key names no known
 * stage, or a negative errno. */
static int conv_stage(struct conv *c, const char *key, const char *value)
{
	const char *rest = key + 6, *stage = NULL, *counter;
	char cname[NAME_MAX_LEN], name[NAME_MAX_LEN], help[3 * NAME_MAX_LEN], rule[32];
	char *extra, *esc;
	size_t best = 0, d;
	int gauge, fam, rc;

	if (strncmp(key, "stage_", 6))
		return 0;
	for (const char *const *n = rdm_stage_names(); *n; n++) {
		size_t l = strlen(*n);

		if (l > best && !strncmp(rest, *n, l) && rest[l] == '_' && rest[l + 1]) {
			stage = *n;
			best = l;
		}
	}
	if (!stage)
		return 0;
	counter = rest + best + 1;
	if (strlen(counter) >= sizeof(cname))
		return -EINVAL;
	rule[0] = '\0';
	if (!strcmp(stage, "policy") && !strcmp(counter, "flows")) {
		/* policy's "flows" is its table's occupancy: the other stages call that
		 * flows_active (their "flows" count every flow seen). */
		snprintf(cname, sizeof(cname), "flows_active");
	} else if (!strncmp(counter, "rule_", 5) && (d = strspn(counter + 5, "0123456789")) &&
		   d < sizeof(rule) && !strcmp(counter + 5 + d, "_hits")) {
		memcpy(rule, counter + 5, d);
		rule[d] = '\0';
		snprintf(cname, sizeof(cname), "rule_hits");
	} else {
		snprintf(cname, sizeof(cname), "%s", counter);
	}
	gauge = in_list(cname, gauge_stage_counters) || has_gauge_suffix(cname);
	snprintf(help, sizeof(help), "stage_%s", cname);
	metric_name(name, sizeof(name), help, !gauge);
	if (rule[0])
		snprintf(help, sizeof(help),
			 "Frames whose verdict came from rule N of the stage's policy (report keys "
			 "stage_<stage>_rule_<N>_hits).");
	else
		snprintf(help, sizeof(help),
			 "Stage %s %s, summed over the node's workers (report keys "
			 "stage_<stage>_%s).",
			 gauge ? "gauge" : "counter", cname, cname);
	fam = family(c, name, gauge ? "gauge" : "counter", help);
	if (!(esc = escape_label(stage)))
		return -ENOMEM;
	rc = rule[0] ? asprintf(&extra, ",stage=\"%s\",rule=\"%s\"", esc, rule)
		     : asprintf(&extra, ",stage=\"%s\"", esc);
	free(esc);
	if (rc < 0)
		return -ENOMEM;
	rc = sample(c, fam, "", extra, value, NULL, 0);
	free(extra);
	return rc ?: 1;
}

/* One "key value" line of the report. */
static int conv_line(struct conv *c, const char *key, const char *value)
{
	char name[NAME_MAX_LEN], help[2 * NAME_MAX_LEN];
	const char *h = NULL;
	int gauge, fam, rc;

	if (strlen(key) >= NAME_MAX_LEN - 16)
		return -EINVAL;
	if (!is_number(value)) {
		char label[NAME_MAX_LEN], *esc, *info;

		snprintf(label, sizeof(label), "%s", key);
		sanitize(label, 0);
		if (!strcmp(label, "node") || (label[0] == '_' && label[1] == '_') ||
		    (label[0] >= '0' && label[0] <= '9'))
			return -EINVAL; /* not a valid label name, or the node label */
		snprintf(help, sizeof(help), ",%s=\"", label);
		if (c->info && strstr(c->info, help))
			return -EINVAL;
		if (!(esc = escape_label(value)))
			return -ENOMEM;
		rc = asprintf(&info, "%s%s%s\"", c->info ? c->info : "", help, esc);
		free(esc);
		if (rc < 0)
			return -ENOMEM;
		free(c->info);
		c->info = info;
		return 0;
	}
	if (!strcmp(key, "drops"))
		return 0; /* the sum of the drop_<reason> lines: see metrics.h */
	if (!strncmp(key, "drop_", 5) && key[5]) {
		char *esc = escape_label(key + 5), *extra;

		if (!esc)
			return -ENOMEM;
		rc = asprintf(&extra, ",reason=\"%s\"", esc);
		free(esc);
		if (rc < 0)
			return -ENOMEM;
		fam = family(c, "rdmesh_drops_total", "counter",
			     "Frames this node dropped, by reason (report keys drop_<reason>).");
		rc = sample(c, fam, "", extra, value, NULL, 0);
		free(extra);
		return rc;
	}
	if ((rc = conv_hop(c, key, value)) != 0)
		return rc < 0 ? rc : 0;
	if ((rc = conv_stage(c, key, value)) != 0)
		return rc < 0 ? rc : 0;
	gauge = in_list(key, gauge_keys) || has_gauge_suffix(key);
	metric_name(name, sizeof(name), key, !gauge);
	for (size_t i = 0; i < sizeof(key_help) / sizeof(key_help[0]); i++)
		if (!strcmp(key_help[i].key, key))
			h = key_help[i].help;
	if (h)
		snprintf(help, sizeof(help), "%s (report key %s).", h, key);
	else
		snprintf(help, sizeof(help), "Node report key %s.", key);
	fam = family(c, name, gauge ? "gauge" : "counter", help);
	return sample(c, fam, "", "", value, NULL, 0);
}

static int cmp_output(const void *a, const void *b)
{
	const struct sample *x = a, *y = b;

	if (x->fam != y->fam)
		return x->fam < y->fam ? -1 : 1;
	if (x->group_seq != y->group_seq)
		return x->group_seq < y->group_seq ? -1 : 1;
	if (x->sub != y->sub)
		return x->sub < y->sub ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static int cmp_series(const void *a, const void *b)
{
	const struct sample *x = *(const struct sample *const *)a;
	const struct sample *y = *(const struct sample *const *)b;
	int r;

	if (x->fam != y->fam)
		return x->fam < y->fam ? -1 : 1;
	if ((r = strcmp(x->suffix, y->suffix)))
		return r;
	return strcmp(x->labels, y->labels);
}

/* -EINVAL if two samples are the same series. */
static int check_duplicates(const struct conv *c)
{
	const struct sample **p = malloc((size_t)(c->ns ? c->ns : 1) * sizeof(*p));
	int rc = 0;

	if (!p)
		return -ENOMEM;
	for (int i = 0; i < c->ns; i++)
		p[i] = &c->s[i];
	qsort(p, (size_t)c->ns, sizeof(*p), cmp_series);
	for (int i = 1; i < c->ns && !rc; i++)
		if (!cmp_series(&p[i - 1], &p[i]))
			rc = -EINVAL;
	free(p);
	return rc;
}

static void conv_free(struct conv *c)
{
	for (int i = 0; i < c->nf; i++) {
		free(c->f[i].name);
		free(c->f[i].help);
	}
	for (int i = 0; i < c->ns; i++) {
		free(c->s[i].labels);
		free(c->s[i].value);
		free(c->s[i].group);
	}
	free(c->f);
	free(c->s);
	free(c->node);
	free(c->info);
}

/* One "key value" line of an agent section: rdmesh_agent_<key>{agent="NAME"}, a
 * gauge. The value must be a number. */
static int conv_agent(struct conv *c, const char *key, const char *value)
{
	static const struct {
		const char *key, *help;
	} agent_help[] = {
	    {"epoch", "Epoch of the last assignment the agent applied; 0 until the first"},
	    {"replicas", "Replicas assigned to the agent (running or ended; not leaving ones)"},
	};
	char base[NAME_MAX_LEN], name[NAME_MAX_LEN], help[2 * NAME_MAX_LEN];
	const char *h = NULL;

	if (!is_number(value) || strlen(key) >= NAME_MAX_LEN - 16)
		return -EINVAL;
	snprintf(base, sizeof(base), "agent_%s", key);
	metric_name(name, sizeof(name), base, 0);
	for (size_t i = 0; i < sizeof(agent_help) / sizeof(agent_help[0]); i++)
		if (!strcmp(agent_help[i].key, key))
			h = agent_help[i].help;
	if (h)
		snprintf(help, sizeof(help), "%s (agent key %s).", h, key);
	else
		snprintf(help, sizeof(help), "Node agent key %s.", key);
	return sample(c, family(c, name, "gauge", help), "", "", value, NULL, 0);
}

/* Ends the section in c, if any: a node's info sample carries the labels its report
 * gathered. */
static int end_section(struct conv *c)
{
	int rc = 0;

	if (c->node && !strcmp(c->who, "node"))
		rc = sample(c, c->info_fam, "", c->info ? c->info : "", "1", NULL, 0);
	free(c->node);
	free(c->info);
	c->node = NULL;
	c->info = NULL;
	return rc;
}

/* Starts a section: "node NAME" (a node's report follows) or "agent NAME". */
static int begin_section(struct conv *c, const char *who, const char *name)
{
	int rc = end_section(c);

	if (rc)
		return rc;
	c->who = who;
	if (!(c->node = escape_label(name)))
		return -ENOMEM;
	if (strcmp(who, "node"))
		return 0;
	/* Created at the first node line, so that the info family leads the output. */
	rc = family(c, "rdmesh_node_info", "gauge",
		    "Node identity, always 1: the report's non-numeric values as labels.");
	if (rc < 0)
		return rc;
	c->info_fam = rc;
	return 0;
}

/* Parses the text (sections one after another) line by line into c. */
static int conv_parse(struct conv *c, const char *text)
{
	const char *p = text;
	char *line = NULL;
	int rc = 0;

	while (*p && !rc) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char *sp, *key, *value;

		free(line);
		line = strndup(p, len);
		p += len + (nl ? 1 : 0);
		if (!line)
			return -ENOMEM;
		if (len && line[len - 1] == '\r')
			line[--len] = '\0';
		if (!len)
			continue;
		sp = strchr(line, ' ');
		if (!sp || sp == line || !sp[1]) {
			rc = -EINVAL; /* not "key value" */
			break;
		}
		*sp = '\0';
		key = line;
		value = sp + 1;
		if (!strcmp(key, "node") || !strcmp(key, "agent"))
			rc = begin_section(c, !strcmp(key, "node") ? "node" : "agent", value);
		else if (!c->node)
			rc = -EINVAL; /* a report starts with its node's name */
		else if (!strcmp(c->who, "agent"))
			rc = conv_agent(c, key, value);
		else
			rc = conv_line(c, key, value);
	}
	free(line);
	if (!rc)
		rc = end_section(c);
	return rc;
}

int rdm_metrics_render(const char *report_text, FILE *out)
{
	struct conv c = {.who = "node", .info_fam = -1};
	char *buf = NULL;
	size_t len = 0;
	FILE *o = NULL;
	int rc;

	if (!report_text || !out)
		return -EINVAL;
	rc = conv_parse(&c, report_text);
	if (!rc)
		rc = check_duplicates(&c);
	if (rc)
		goto out;
	if (c.ns) /* an empty text has no samples, and c.s is NULL */
		qsort(c.s, (size_t)c.ns, sizeof(*c.s), cmp_output);
	/* Whole text first, then one write: on error out gets nothing. */
	o = open_memstream(&buf, &len);
	if (!o) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0, f = -1; i < c.ns; i++) {
		const struct sample *s = &c.s[i];

		if (s->fam != f) {
			f = s->fam;
			fprintf(o, "# HELP %s ", c.f[f].name);
			put_help(o, c.f[f].help);
			fprintf(o, "\n# TYPE %s %s\n", c.f[f].name, c.f[f].type);
		}
		fprintf(o, "%s%s{%s} %s\n", c.f[f].name, s->suffix, s->labels, s->value);
	}
	if (fclose(o)) {
		o = NULL;
		rc = -ENOMEM;
		goto out;
	}
	o = NULL;
	if (fwrite(buf, 1, len, out) != len || fflush(out))
		rc = -EIO;
out:
	free(buf);
	conv_free(&c);
	return rc;
}
