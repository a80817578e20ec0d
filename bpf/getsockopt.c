/* cgroup/getsockopt on Envoy's cgroup: answer SO_ORIGINAL_DST for connections the redirect sent to Envoy, so
 * Envoy's unchanged original_dst listener filter restores the destination.  Anything else passes through.
 */
#include "lib/nodemesh.h"
#include "lib/origdst.h"
#include "lib/counters.h"

struct nodemesh_sockaddr_in {
    __u16 sin_family;
    __u16 sin_port; /* network order */
    __u32 sin_addr; /* network order */
    __u8 sin_zero[8];
};

static __always_inline void count(__u32 idx)
{
    __u64 *value = nodemesh_counters.lookup(&idx);
    if (value)
        *value += 1;
}

int nodemesh_getsockopt(struct bpf_sockopt *ctx)
{
    if (ctx->level != NODEMESH_SOL_IP || ctx->optname != NODEMESH_SO_ORIGINAL_DST)
        return 1;
    struct bpf_sock *sk = ctx->sk;
    if (!sk || sk->family != NODEMESH_AF_INET)
        return 1;

    /* Envoy's accepted socket: local = Envoy listener, remote = the client pod. */
    struct nodemesh_tuple tuple = {
        .client_ip = sk->dst_ip4,
        .envoy_ip = sk->src_ip4,
        .client_port = bpf_ntohs((__u16)sk->dst_port), /* network order */
        .envoy_port = (__u16)sk->src_port,             /* host order */
    };
    struct nodemesh_origdst *orig = nodemesh_origdst_by_tuple.lookup(&tuple);
    if (!orig) {
        /* Not ours (e.g. a conntrack-based redirect): leave the kernel's answer. */
        count(NODEMESH_CTR_ORIGDST_MISS);
        return 1;
    }

    struct nodemesh_sockaddr_in *sin = ctx->optval;
    if ((void *)(sin + 1) > ctx->optval_end)
        return 1;
    sin->sin_family = NODEMESH_AF_INET;
    sin->sin_port = orig->port;
    sin->sin_addr = orig->ip;
    __builtin_memset(sin->sin_zero, 0, sizeof(sin->sin_zero));
    /* Separate volatile stores: clang would merge these into one 8-byte store the verifier rejects. */
    *(volatile __s32 *)&ctx->optlen = sizeof(*sin);
    *(volatile __s32 *)&ctx->retval = 0;
    count(NODEMESH_CTR_ORIGDST_HIT);
    return 1;
}
