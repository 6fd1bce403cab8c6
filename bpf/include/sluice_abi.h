/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared layouts between the XDP programs (bpf/src/bpf) and userspace.
 *
 * This header is the single declaration of every map key, value and counter
 * index. Rust mirrors each type with #[repr(C)] in bpf/src/abi.rs; tests
 * compare their size, field offsets and enumerator values against the BTF of
 * the compiled object, so a change here that is not mirrored fails the tests.
 *
 * Conventions: addresses are 16 bytes, IPv4 as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), so one map serves both families. Ports are in network
 * byte order, as they sit in the packet. No implicit padding: every hole is a
 * named field.
 */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

#include <linux/types.h>

#define SLUICE_MAX_QUEUES 256
#define SLUICE_MAX_VIPS 1024
#define SLUICE_MAX_LISTENERS 4096

/*
 * The `health` map: an mmapable BPF_MAP_TYPE_ARRAY of SLUICE_HEALTH_WORDS
 * 64-bit words (key = word index), shared by the writer of routing/health
 * state (the decision component, later the control process), the poll loops
 * (which read it through mmap, no syscall) and the XDP program.
 *
 * Word i sits at byte offset 8 * i of the mapping (array elements are 8-byte
 * aligned and the mapping is page-aligned). Layout:
 *
 *   word SLUICE_HEALTH_GENERATION (0): sequence counter of a seqlock. The
 *        single writer makes it odd, writes the other words, then makes it
 *        even again (release); a reader copies what it needs between two
 *        equal, even reads of it (acquire, then an acquire fence before the
 *        second read).
 *   word SLUICE_HEALTH_FLAGS (1): SLUICE_HEALTH_* flag bits, each written
 *        with one 64-bit store, so it can be read on its own without the
 *        seqlock (the XDP program does).
 *   words 2..7: reserved, 0.
 *   words SLUICE_HEALTH_FIRST_CLUSTER_WORD (8) and up: per-cluster bitmaps,
 *        laid out by userspace (see dataplane/proxy/src/board.rs).
 *
 * The XDP program reads only word 1. (Enums rather than #defines so that the
 * values reach the object's BTF and the Rust mirrors are tested against them.)
 */
enum sluice_health_layout {
	SLUICE_HEALTH_GENERATION = 0,         /* seqlock sequence, odd while writing */
	SLUICE_HEALTH_FLAGS = 1,              /* enum sluice_health_flag bits */
	SLUICE_HEALTH_FIRST_CLUSTER_WORD = 8, /* per-cluster bitmaps from here on */
	SLUICE_HEALTH_WORDS = 4096,           /* entries (words) of the map */
};

/*
 * Bits of the flags word.
 *
 * ALL_EJECTED: no cluster has an eligible backend. The XDP program answers a
 * SYN (without ACK, RST or FIN) to a TCP listener with a RST|ACK
 * (SLUICE_TX_RST_NO_BACKEND) instead of steering it; every other segment,
 * of established connections too, is steered as usual.
 */
enum sluice_health_flag {
	SLUICE_HEALTH_ALL_EJECTED = 1 << 0,
};

/* vip_value.flags */
#define SLUICE_VIP_ANSWER_NEIGH (1u << 0) /* answer ARP / neighbour solicitation */
#define SLUICE_VIP_ICMP_ECHO (1u << 1)    /* steer ICMP/ICMPv6 echo requests */
#define SLUICE_VIP_LOCAL_PORTS (1u << 2)  /* steer TCP/UDP to config.local_port_{lo,hi} */

struct sluice_vip_key {
	__u8 addr[16];
};

struct sluice_vip_value {
	__u32 flags;
};

struct sluice_listener_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

struct sluice_listener_value {
	__u32 service_id;
};

/*
 * Single entry (index 0) of the `config` array map.
 *
 * An all-zero `mac` disables the neighbour responder (nothing is answered
 * from a zero source address). The local port range is disabled while
 * `local_port_hi` is 0.
 */
struct sluice_config {
	__u8 mac[6];          /* source MAC for ARP replies and neighbour adverts */
	__be16 local_port_lo; /* inclusive range steered for SLUICE_VIP_LOCAL_PORTS */
	__be16 local_port_hi;
	__u16 pad;
	__u32 flags; /* reserved, 0 */
};

struct sluice_counter {
	__u64 packets;
	__u64 bytes;
};

/*
 * Every packet increments exactly one counter; its name says the verdict
 * (PASS, REDIRECT, TX, DROP, ABORTED) and the reason. Verdict totals are the
 * sums of their reasons.
 */
enum sluice_xdp_counter {
	SLUICE_PASS_NON_IP = 0,     /* ethertype neither IPv4, IPv6 nor ARP */
	SLUICE_PASS_NEIGH_OTHER,    /* ARP/NDP not about a VIP with ANSWER_NEIGH */
	SLUICE_PASS_NOT_VIP,        /* IP to an address that is not a VIP */
	SLUICE_PASS_VIP_UNBOUND,    /* to a VIP, but no listener / flag matches */
	SLUICE_REDIRECT_LISTENER,   /* (addr, proto, port) listener -> XSK */
	SLUICE_REDIRECT_LOCAL_PORT, /* VIP with LOCAL_PORTS, port in range -> XSK */
	SLUICE_REDIRECT_ICMP_ECHO,  /* echo request to a VIP with ICMP_ECHO -> XSK */
	SLUICE_TX_ARP_REPLY,        /* ARP request for a VIP answered in place */
	SLUICE_TX_NEIGH_ADVERT,     /* NS for a VIP answered with an NA in place */
	SLUICE_DROP_MALFORMED_ETH,  /* truncated Ethernet or VLAN header */
	SLUICE_DROP_MALFORMED_ARP,  /* truncated or non-Ethernet/IPv4 ARP */
	SLUICE_DROP_MALFORMED_IP,   /* truncated, bad version/IHL/length */
	SLUICE_DROP_MALFORMED_L4,   /* truncated TCP/UDP/ICMP header to a VIP */
	SLUICE_DROP_FRAGMENT,       /* IP fragment to a VIP (not reassembled) */
	SLUICE_DROP_NO_SOCKET,      /* steered, but no XSK on the receiving queue */
	SLUICE_ABORTED_INTERNAL,    /* a helper failed (e.g. adjust_tail) */
	/* Appended: values above never move. */
	SLUICE_TX_RST_NO_BACKEND,   /* SYN to a TCP listener while ALL_EJECTED: RST|ACK sent back */
	SLUICE_XDP_COUNTER_MAX,
};

/*
 * reflector.bpf.c: the in-kernel ceiling for benchmarks. UDP to
 * (addr, port), the single entry of `reflector_config`, is sent back where it
 * came from with XDP_TX. A zero port disables it.
 */
struct sluice_reflector_config {
	__u8 addr[16]; /* IPv4-mapped for IPv4, as in sluice_vip_key */
	__be16 port;
	__u16 pad;
};

/* Indices of the reflector's `reflector_counters` per-CPU array. */
enum sluice_reflector_counter {
	SLUICE_REFLECTOR_REFLECTED = 0, /* UDP to (addr, port), sent back with XDP_TX */
	SLUICE_REFLECTOR_PASSED,        /* everything else, to the kernel */
	SLUICE_REFLECTOR_COUNTER_MAX,
};

/*
 * chaos.bpf.c: the fault injector. An XDP program on ingress (drop, drop
 * SYN-ACKs, rewrite MSS, forge RSTs, corrupt) and a tc egress (TCX) program
 * (duplicate). Both read the single entry of `chaos_config`; rates are in
 * parts per million (0..=1000000).
 */
#define SLUICE_CHAOS_PPM_MAX 1000000u
#define SLUICE_CHAOS_ALL_IP (1u << 0)  /* act on every IPv4/IPv6 packet, not only TCP */
#define SLUICE_CHAOS_PORT (1u << 1)    /* only TCP/UDP with `port` as source or destination */
#define SLUICE_CHAOS_ADDR (1u << 2)    /* only packets with `addr` as source or destination */
#define SLUICE_CHAOS_MSS (1u << 3)     /* rewrite the MSS option of SYNs and SYN-ACKs to `mss` */
#define SLUICE_CHAOS_SYNACK_ALL 0xffffffffu /* synack_drop: every SYN-ACK */

struct sluice_chaos_config {
	__u8 addr[16];        /* IPv4-mapped for IPv4, as in sluice_vip_key */
	__u32 flags;          /* SLUICE_CHAOS_* */
	__u32 drop_ppm;       /* drop matching packets */
	__u32 synack_drop;    /* drop the first N SYN-ACKs (0: none; SLUICE_CHAOS_SYNACK_ALL: all) */
	__u32 rst_ppm;        /* turn TCP segments (not SYN, not RST) into RSTs */
	__u32 rst_seq_offset; /* added to the sequence number of forged RSTs */
	__u32 corrupt_ppm;    /* flip the last byte of the L4 segment, checksum left stale */
	__u32 dup_ppm;        /* egress: send a second copy (bpf_clone_redirect) */
	__be16 port;          /* with SLUICE_CHAOS_PORT */
	__u16 mss;            /* host order, with SLUICE_CHAOS_MSS */
};

/* Single entry of `chaos_state`: shared (not per-CPU) running state. */
struct sluice_chaos_state {
	__u64 synacks; /* SYN-ACKs seen since the last config write */
};

/*
 * Indices of the `chaos_counters` per-CPU array. A packet counts once in
 * SEEN (or EGRESS_SEEN) and once per action taken on it.
 */
enum sluice_chaos_counter {
	SLUICE_CHAOS_SEEN = 0,           /* ingress packets that match the filter */
	SLUICE_CHAOS_DROPPED,            /* dropped by drop_ppm */
	SLUICE_CHAOS_SYNACK_DROPPED,     /* SYN-ACKs dropped by synack_drop */
	SLUICE_CHAOS_MSS_REWRITTEN,      /* SYN / SYN-ACK whose MSS option was rewritten */
	SLUICE_CHAOS_RST_FORGED,         /* segments turned into RSTs */
	SLUICE_CHAOS_CORRUPTED,          /* segments with a flipped byte */
	SLUICE_CHAOS_EGRESS_SEEN,        /* egress packets that match the filter (tc program) */
	SLUICE_CHAOS_DUPLICATED,         /* egress packets sent twice */
	SLUICE_CHAOS_COUNTER_MAX,
};

#endif /* SLUICE_ABI_H */
