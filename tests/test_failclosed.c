/* Fail closed: a flow the policy refused stays refused when its table entry goes (the
 * verdict cache, services/vcache.h), a flow whose inspection was cut off by a full table
 * is not allowed from the middle of its stream, a refusal is not undone by later state,
 * and a full table can refuse new flows instead of evicting (flows.when_full). */
#include <criterion/criterion.h>

#include <unistd.h>

#include "services/vcache.h"
#include "tests/lib/policy_stage.h"

TestSuite(failclosed, .init = setup, .fini = teardown, .timeout = 20);

/* Denies TLS by application; anything else is allowed. pending_packets 3: a flow may
 * pass 3 packets while DPI has not named its application. */
static const char *const no_tls = "default: allow\n"
				  "pending_packets: 3\n"
				  "rules:\n"
				  "  - {name: no-tls, match: {app: TLS}, action: deny}\n";

/* A mid-stream TCP segment of flow sport (an ACK with data, no SYN). */
static void mid(struct pk *p, uint16_t sport)
{
	struct spec sp = {.proto = IPPROTO_TCP,
			  .src = "10.0.0.1",
			  .dst = "192.0.2.10",
			  .sport = sport,
			  .dport = 443,
			  .flags = RDM_TCP_ACK | 0x08,
			  .seq = 5000,
			  .ack = 9000,
			  .payload = 100};
	mk(p, &sp);
}

/* 64 new TCP flows (to port 80, allowed): a table of 64 evicts every older TCP flow. */
static void flood(struct stg *s, struct pk *p, uint16_t base)
{
	for (uint16_t i = 0; i < 64; i++) {
		struct spec sp = {.proto = IPPROTO_TCP,
				  .src = "10.0.0.2",
				  .dst = "192.0.2.80",
				  .sport = (uint16_t)(base + i),
				  .dport = 80,
				  .flags = RDM_TCP_SYN,
				  .seq = 1};
		mk(p, &sp);
		cr_assert_eq(run(s, &p->f), RDM_STAGE_PASS);
	}
}

Test(failclosed, a_denied_flow_evicted_by_a_flood_is_denied_again_from_the_cache)
{
	struct stg s;
	struct pk p;

	start(&s, no_tls);
	syn4(&p, 40000);
	with_app(&p, "TLS");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	flood(&s, &p, 20000);
	cr_assert_geq(counter(&s, "flows_evicted"), 1, "the flood pushed the flow out");
	/* Back mid-stream, where DPI (which lost it too) has no application to tell. */
	mid(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "refused_from_cache"), 1);
	mid(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP, "and every packet after it");
	cr_assert_eq(counter(&s, "denied"), 3, "the SYN and both segments after the flood");
	stop(&s);
}

Test(failclosed, without_the_cache_the_same_flow_would_pass_pending)
{
	/* The control: a flow the policy never saw, mid-stream with no application, passes
	 * while pending. That is what the cache closes for flows it refused. */
	struct stg s;
	struct pk p;

	start(&s, no_tls);
	mid(&p, 41000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(counter(&s, "pending_pass"), 1);
	stop(&s);
}

Test(failclosed, a_flow_evicted_while_pending_is_denied_when_it_comes_back)
{
	struct stg s;
	struct pk p;

	start(&s, no_tls);
	syn4(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS); /* pending: no application yet */
	flood(&s, &p, 20000);
	mid(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP, "its inspection was cut off");
	cr_assert_eq(counter(&s, "undecidable_denied"), 1);
	stop(&s);
}

Test(failclosed, a_new_connection_on_the_same_5_tuple_is_decided_afresh)
{
	struct stg s;
	struct pk p;

	start(&s, no_tls);
	syn4(&p, 40000);
	with_app(&p, "TLS");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	flood(&s, &p, 20000);
	syn4(&p, 40000); /* a SYN: a new connection, not the old one's tail */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	cr_assert_eq(counter(&s, "refused_from_cache"), 0);
	stop(&s);
}

Test(failclosed, a_refusal_is_not_undone_by_later_state)
{
	struct stg s;
	struct pk p;

	start(&s, no_tls);
	syn4(&p, 40000);
	with_app(&p, "TLS");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	/* DPI starting over (its entry evicted) now says the application is unknown. */
	mid(&p, 40000);
	with_app(&p, "Unknown");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	mid(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "evaluations"), 1, "decided once");
	stop(&s);
}

Test(failclosed, refuse_new_drops_new_flows_and_keeps_the_old_ones)
{
	struct rdm_flow_conf fc = {.max_flows = 16, .refuse_new = 1};
	struct stg s;
	struct pk p;

	start_with(&s, no_tls, &fc);
	syn4(&p, 40000);
	with_app(&p, "TLS");
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	for (uint16_t i = 0; i < 15; i++) {
		syn4(&p, (uint16_t)(30000 + i));
		cr_assert_eq(run(&s, &p.f), RDM_STAGE_PASS);
	}
	syn4(&p, 50000); /* the 17th flow */
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP);
	cr_assert_eq(counter(&s, "flows_refused"), 1);
	cr_assert_eq(counter(&s, "flows_evicted"), 0);
	mid(&p, 40000);
	cr_assert_eq(run(&s, &p.f), RDM_STAGE_DROP, "the denied flow kept its entry");
	cr_assert_eq(counter(&s, "evaluations"), 16);
	stop(&s);
}

/* ---- the cache itself ---- */

Test(failclosed, vcache_keeps_what_its_sets_hold_and_counts_what_it_forgets)
{
	struct rdm_vcache *c = rdm_vcache_new(16);
	struct rdm_vcache_stats st;

	cr_assert_not_null(c);
	rdm_vcache_get_stats(c, &st);
	cr_assert_eq(st.capacity, 16 * RDM_VCACHE_PER_FLOW);
	for (uint64_t h = 1; h <= 5000; h++)
		rdm_vcache_put(c, h * 0x9E3779B97F4A7C15ull, (uint8_t)(h % 7));
	rdm_vcache_get_stats(c, &st);
	cr_assert_eq(st.entries, st.capacity, "every way in use");
	cr_assert_eq(st.forgotten, 5000 - st.capacity);
	/* The newest is always there, with its action; the very first long gone. */
	cr_assert_eq(rdm_vcache_get(c, 5000 * 0x9E3779B97F4A7C15ull), 5000 % 7);
	cr_assert_eq(rdm_vcache_get(c, 1 * 0x9E3779B97F4A7C15ull), -1);
	rdm_vcache_del(c, 5000 * 0x9E3779B97F4A7C15ull);
	cr_assert_eq(rdm_vcache_get(c, 5000 * 0x9E3779B97F4A7C15ull), -1);
	rdm_vcache_get_stats(c, &st);
	cr_assert_eq(st.entries, st.capacity - 1);
	/* Updating an entry keeps one entry. */
	rdm_vcache_put(c, 4999 * 0x9E3779B97F4A7C15ull, 3);
	cr_assert_eq(rdm_vcache_get(c, 4999 * 0x9E3779B97F4A7C15ull), 3);
	rdm_vcache_get_stats(c, &st);
	cr_assert_eq(st.entries, st.capacity - 1);
	rdm_vcache_free(c);
}
