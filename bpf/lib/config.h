/* Where redirected connections go: the node Envoy's outbound listener(s). One entry, index 0. */
#ifndef NODEMESH_CONFIG_H
#define NODEMESH_CONFIG_H

#include "lib/nodemesh.h"

/* Several listener addresses widen the (podIP, *, envoyIP, port) ephemeral port space (DESIGN.md §5). */
#define NODEMESH_MAX_ENVOY_ADDRS 4

struct nodemesh_config {
    __u32 envoy_ips[NODEMESH_MAX_ENVOY_ADDRS]; /* network order; the first n_envoy_ips are used */
    __u16 outbound_port;                       /* network order */
    __u16 n_envoy_ips;                         /* 0: redirection off */
    __u32 flags;                               /* reserved */
};

#ifndef NODEMESH_STRUCTS_ONLY
BPF_TABLE_PINNED("array", __u32, struct nodemesh_config, nodemesh_config, 1, NODEMESH_PIN(nodemesh_config));
#endif

#endif
