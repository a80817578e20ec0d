/* sockops: re-key the original destination of a redirected connection by its 4-tuple, and forget it on close.
 *
 * ACTIVE_ESTABLISHED runs before the client's final ACK leaves, so the 4-tuple entry exists before Envoy can
 * accept() the connection and ask for SO_ORIGINAL_DST: no race.
 */
#include "lib/nodemesh.h"
#include "lib/origdst.h"
#include "lib/counters.h"

static __always_inline void count(__u32 idx)
{
    __u64 *value = nodemesh_counters.lookup(&idx);
    if (value)
        *value += 1;
}

static __always_inline void client_tuple(struct bpf_sock_ops *skops, struct nodemesh_tuple *tuple)
{
    tuple->client_ip = skops->local_ip4;
    tuple->envoy_ip = skops->remote_ip4;
    tuple->client_port = (__u16)skops->local_port;              /* host order */
    tuple->envoy_port = (__u16)bpf_ntohl(skops->remote_port);   /* network order, in the upper half */
}

int nodemesh_sockops(struct bpf_sock_ops *skops)
{
    if (skops->family != NODEMESH_AF_INET)
        return 1;
    __u32 op = skops->op;
    __u64 cookie;
    struct nodemesh_origdst *orig;
    struct nodemesh_tuple tuple = {};

    switch (op) {
    case BPF_SOCK_OPS_TCP_CONNECT_CB:
        /* Watch redirected sockets' state so a connect that fails still frees the cookie entry. */
        cookie = bpf_get_socket_cookie(skops);
        if (nodemesh_origdst_by_cookie.lookup(&cookie))
            bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
        break;
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
        cookie = bpf_get_socket_cookie(skops);
        orig = nodemesh_origdst_by_cookie.lookup(&cookie);
        if (!orig)
            break;
        client_tuple(skops, &tuple);
        struct nodemesh_origdst value = *orig;
        if (nodemesh_origdst_by_tuple.update(&tuple, &value) == 0)
            count(NODEMESH_CTR_ESTABLISHED);
        else
            count(NODEMESH_CTR_ESTABLISHED_MISS);
        nodemesh_origdst_by_cookie.delete(&cookie);
        bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
        break;
    case BPF_SOCK_OPS_STATE_CB:
        if (skops->args[1] != NODEMESH_TCP_CLOSE)
            break;
        /* One delete, not two: ACTIVE_ESTABLISHED already moved the cookie entry to the 4-tuple map, so
         * only a connect that failed in SYN_SENT still holds a cookie entry. */
        if (skops->args[0] == NODEMESH_TCP_SYN_SENT) {
            cookie = bpf_get_socket_cookie(skops);
            nodemesh_origdst_by_cookie.delete(&cookie);
            break;
        }
        client_tuple(skops, &tuple);
        if (nodemesh_origdst_by_tuple.delete(&tuple) == 0)
            count(NODEMESH_CTR_CLOSED);
        break;
    default:
        break;
    }
    return 1;
}
