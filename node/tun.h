/* TUN devices for inline mode: the chain's edges as network interfaces, so that real
 * traffic routed into one crosses the chain. */
#ifndef RDM_TUN_H
#define RDM_TUN_H

#include <stdint.h>

/* Opens (creating if absent) the layer-3 TUN interface name without packet info, sets
 * its MTU and brings it up. Returns a non-blocking fd, or a negative errno with a
 * message in err. Addresses and routes are the operator's (see README, inline mode). */
int rdm_tun_open(const char *name, uint32_t mtu, char *err, unsigned errlen);

#endif
