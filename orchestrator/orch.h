/* rdmesh orch: the orchestrator daemon.
 *
 * It loads rack.yaml and chain.yaml (or the state it persisted: orchestrator/state.h),
 * places the chain's replicas (orchestrator/plan.h), and serves the control channel
 * (lib/tls.h, messages lib/msg.h) to nodes and to `rdmesh ctl`:
 *
 *  - A node (`rdmesh node --orch ADDR --name NAME`, certificate NAME, a node of the
 *    rack) says hello with the epoch it applied and the replicas it runs. When that is
 *    the current epoch and the replicas are the ones the plan gives it, nothing is sent
 *    (a restarted orchestrator redeploys nothing healthy); otherwise it gets an
 *    assign: the current epoch, the chain rendered for the plan, and its replicas.
 *    Every change of the plan (scale, drain, apply, a dead node) makes a new epoch,
 *    persisted before it is pushed to every connected node.
 *  - Nodes send heartbeats with their replicas' counters; the orchestrator acks each.
 *    A node with replicas that is silent for dead_ms is declared dead: its replicas are
 *    placed elsewhere (rdm_plan_node_down) and the upstream nodes get the new tables.
 *    When it comes back it is eligible again (and told to stop what it still runs).
 *  - `rdmesh ctl` (certificate "ctl") sends requests: status, scale, drain, apply
 *    (dry run or not), logs; each gets one reply.
 *
 * The data plane never waits on the orchestrator: nodes keep forwarding on their last
 * assignment while it is gone. */
#ifndef RDM_ORCH_H
#define RDM_ORCH_H

#include "lib/msg.h" /* the control channel's names, port and timings */

/* `rdmesh orch ...`: returns the exit status. */
int rdm_cmd_orch(int argc, char **argv);

#endif
