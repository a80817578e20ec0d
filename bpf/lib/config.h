/* Where redirected connections go: the node Envoy's outbound listener(s). One entry, index 0. */
#ifndef NODEMESH_CONFIG_H
#define NODEMESH_CONFIG_H

#include "lib/nodemesh.h"

/* Several listener addresses, and several ports on each, widen the (podIP, *, envoyIP, port) ephemeral port
 * space of a pod's redirected connections (DESIGN.md §5): each (address, port) is one space of ~28k ports,
 * and TIME_WAIT sockets of every destination would otherwise fill the same one. */
#define NODEMESH_MAX_ENVOY_ADDRS 4 /* a power of two: connect4 masks its index with it */
#define NODEMESH_MAX_OUTBOUND_PORTS 64

struct nodemesh_config {
    __u32 envoy_ips[NODEMESH_MAX_ENVOY_ADDRS]; /* network order; the first n_envoy_ips are used */
    __u16 outbound_port;                       /* network order: the first port */
    __u16 n_envoy_ips;                         /* 0: redirection off */
    __u16 n_outbound_ports;                    /* consecutive ports from outbound_port; 0 or 1: one */
    __u16 _pad;
};

#ifndef NODEMESH_STRUCTS_ONLY
BPF_TABLE_PINNED("array", __u32, struct nodemesh_config, nodemesh_config, 1, NODEMESH_PIN(nodemesh_config));
#endif

#endif
