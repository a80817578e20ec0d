/* What the plan says to redirect: service VIP:ports, and node-wide exclusions (ports, CIDRs). */
#ifndef NODEMESH_POLICY_H
#define NODEMESH_POLICY_H

#include "lib/nodemesh.h"

#define NODEMESH_SERVICES_MAX 65536
#define NODEMESH_EXCLUDED_PORTS_MAX 1024
#define NODEMESH_EXCLUDED_CIDRS_MAX 1024

struct nodemesh_service_key {
    __u32 ip;   /* network order */
    __u16 port; /* host order */
    __u16 _pad;
};

/* LPM trie key: prefixlen first, then the address bytes in network order. */
struct nodemesh_cidr_key {
    __u32 prefixlen;
    __u32 ip; /* network order */
};

#ifndef NODEMESH_STRUCTS_ONLY
BPF_TABLE_PINNED("hash", struct nodemesh_service_key, __u8, nodemesh_services, NODEMESH_SERVICES_MAX,
                 NODEMESH_PIN(nodemesh_services));
/* Key: destination port in host order. */
BPF_TABLE_PINNED("hash", __u16, __u8, nodemesh_excluded_ports, NODEMESH_EXCLUDED_PORTS_MAX,
                 NODEMESH_PIN(nodemesh_excluded_ports));
BPF_TABLE_PINNED("lpm_trie", struct nodemesh_cidr_key, __u8, nodemesh_excluded_cidrs, NODEMESH_EXCLUDED_CIDRS_MAX,
                 NODEMESH_PIN(nodemesh_excluded_cidrs), BPF_F_NO_PREALLOC);
#endif

#endif
