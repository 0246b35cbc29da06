/* The node-side subcommands of the rdmesh binary (orchestrator/main.c dispatches them).
 * Each takes its own argv (argv[0] is the subcommand's name) and returns the process
 * exit status. */
#ifndef RDM_COMMANDS_H
#define RDM_COMMANDS_H

int rdm_cmd_node(int argc, char **argv);
int rdm_cmd_check(int argc, char **argv);
int rdm_cmd_gen(int argc, char **argv);
int rdm_cmd_bench(int argc, char **argv);

#endif
