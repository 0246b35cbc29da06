/* The subcommands of the rdmesh binary. Each takes its own argv (argv[0] is the
 * subcommand's name) and returns the process exit status. */
#ifndef RDM_COMMANDS_H
#define RDM_COMMANDS_H

int rdm_cmd_gen(int argc, char **argv);
int rdm_cmd_bench(int argc, char **argv);
int rdm_cmd_ctl(int argc, char **argv);
int rdm_cmd_orch(int argc, char **argv);

#endif
