/* Meshed pods, keyed by the netns cookie of the pod's network namespace (bpf_get_netns_cookie). */
#ifndef NODEMESH_MESHED_H
#define NODEMESH_MESHED_H

#include "lib/nodemesh.h"

#define NODEMESH_MAX_POD_EXCLUDED_PORTS 8
#define NODEMESH_MESHED_MAX 4096

/* pod_settings.flags */
/* Redirect every TCP destination that is not excluded; without it only service VIP:ports are redirected. */
#define NODEMESH_POD_REDIRECT_ALL 0x1

struct nodemesh_pod_settings {
    __u32 flags;
    __u16 n_exclude_ports;
    /* Destination ports in host order; the first n_exclude_ports are used. */
    __u16 exclude_ports[NODEMESH_MAX_POD_EXCLUDED_PORTS];
    __u16 _pad;
};

#ifndef NODEMESH_STRUCTS_ONLY
BPF_TABLE_PINNED("hash", __u64, struct nodemesh_pod_settings, nodemesh_meshed_netns, NODEMESH_MESHED_MAX,
                 NODEMESH_PIN(nodemesh_meshed_netns));
#endif

#endif
