/* Shared definitions of the nodemesh redirect programs.
 *
 * bcc compiles each bpf/<hook>.c separately; the maps are shared between them because every map is declared
 * BPF_TABLE_PINNED: the first program loaded creates and pins it under NODEMESH_PIN_DIR/maps/, later loads (and
 * a restarted agent) reuse the pinned map.  bcc rewrites map calls (`m.lookup()`) only in the main file, so
 * headers hold structs and declarations, and the code that touches maps lives in the .c files.
 *
 * Structs here are mirrored by ctypes in nodeagent/datapath/maps.py; tests/datapath checks sizes and offsets.
 * Define NODEMESH_STRUCTS_ONLY to get the structs without declaring (and pinning) any map.
 */
#ifndef NODEMESH_H
#define NODEMESH_H

#include <uapi/linux/bpf.h>

/* bcc's headers do not define these. */
#define NODEMESH_SOCK_STREAM 1
#define NODEMESH_AF_INET 2
#define NODEMESH_SOL_IP 0
#define NODEMESH_SO_ORIGINAL_DST 80
#define NODEMESH_TCP_SYN_SENT 2
#define NODEMESH_TCP_CLOSE 7

#ifndef NODEMESH_STRUCTS_ONLY
#ifndef NODEMESH_PIN_DIR
#error "NODEMESH_PIN_DIR (a quoted bpffs directory) must be defined"
#endif
#define NODEMESH_PIN(name) NODEMESH_PIN_DIR "/maps/" #name
#endif

#endif
