/* rdmesh ctl: the operator's commands (certs, status, scale, drain, apply, logs). */
#ifndef RDM_CTL_H
#define RDM_CTL_H

/* `rdmesh ctl ...`: returns the exit status. */
int rdm_cmd_ctl(int argc, char **argv);

#endif
