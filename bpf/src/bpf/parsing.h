/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet parsing helpers shared by the XDP programs.
 *
 * Every helper takes a cursor (current position, end of frame) and checks the
 * bounds of what it reads against the end before touching it. A helper that
 * fails leaves the cursor where it was and returns a negative value; callers
 * map that to a DROP_MALFORMED_* or PASS_* verdict.
 */
#ifndef SLUICE_PARSING_H
#define SLUICE_PARSING_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_arp.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "sluice_abi.h"

#define SLUICE_MAX_VLAN_TAGS 2 /* 802.1ad outer + 802.1Q inner */
#define SLUICE_MAX_IPV6_EXT 4  /* extension headers walked before giving up */

/* IPv4 frag_off bits (host order). */
#define SLUICE_IP_MF 0x2000
#define SLUICE_IP_OFFSET 0x1fff

/* IPv6 extension header numbers (linux/in6.h names, kept local). */
#define SLUICE_NEXTHDR_HOP 0
#define SLUICE_NEXTHDR_ROUTING 43
#define SLUICE_NEXTHDR_FRAGMENT 44
#define SLUICE_NEXTHDR_DEST 60

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* An ARP packet for Ethernet hardware and IPv4 protocol addresses. */
struct arp_eth_ipv4 {
	struct arphdr hdr;
	__u8 sha[ETH_ALEN];
	__u8 spa[4];
	__u8 tha[ETH_ALEN];
	__u8 tpa[4];
};

/* Neighbour solicitation / advertisement without options (RFC 4861 4.3, 4.4). */
struct nd_msg_hdr {
	__u8 type;
	__u8 code;
	__sum16 csum;
	__be32 flags; /* NA: R, S, O in the top bits; NS: reserved */
	__u8 target[16];
};

/* Source / target link-layer address option for Ethernet. */
struct nd_opt_lladdr {
	__u8 type;
	__u8 len; /* in units of 8 bytes: 1 */
	__u8 addr[ETH_ALEN];
};

struct ipv6_rt_hdr_min {
	__u8 nexthdr;
	__u8 hdrlen;
	__u8 type;
	__u8 segments_left;
};

struct cursor {
	void *pos;
	void *end;
};

/* Where L3 starts and what it is, after Ethernet and up to two VLAN tags. */
struct l2_info {
	struct ethhdr *eth;
	__u32 l3_off; /* bytes from the start of the frame: 14, 18 or 22 */
	__u16 proto;  /* ethertype of L3, host order */
};

static __always_inline void *cursor_take(struct cursor *c, __u32 len)
{
	void *p = c->pos;

	if (p + len > c->end)
		return NULL;
	c->pos = p + len;
	return p;
}

/*
 * Ethernet and up to SLUICE_MAX_VLAN_TAGS 802.1Q/802.1ad tags. A third tag is
 * left in `proto` (the caller passes it to the kernel as non-IP).
 * Returns 0, or -1 if the frame is too short for what its headers announce.
 */
static __always_inline int parse_eth(struct cursor *c, struct l2_info *l2)
{
	struct ethhdr *eth = cursor_take(c, sizeof(*eth));
	__u32 off = sizeof(*eth);
	__u16 proto;
	int i;

	if (!eth)
		return -1;
	proto = bpf_ntohs(eth->h_proto);

#pragma unroll
	for (i = 0; i < SLUICE_MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vlan;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		vlan = cursor_take(c, sizeof(*vlan));
		if (!vlan)
			return -1;
		proto = bpf_ntohs(vlan->encap_proto);
		off += sizeof(*vlan);
	}

	l2->eth = eth;
	l2->l3_off = off;
	l2->proto = proto;
	return 0;
}

/*
 * IPv4 header with options. Checks version, IHL, and that total length
 * covers the header and fits in the frame (Ethernet padding after it is
 * allowed). On success the cursor is at L4 and *l4_len is the L4 length
 * according to the IP header.
 */
static __always_inline int parse_ipv4(struct cursor *c, struct iphdr **out, __u32 *l4_len)
{
	struct iphdr *ip = c->pos;
	__u32 hlen, tot;

	if ((void *)(ip + 1) > c->end)
		return -1;
	if (ip->version != 4 || ip->ihl < 5)
		return -1;
	hlen = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < hlen)
		return -1;
	if (c->pos + tot > c->end)
		return -1;
	if (c->pos + hlen > c->end)
		return -1;

	c->pos += hlen;
	*l4_len = tot - hlen;
	*out = ip;
	return 0;
}

/*
 * IPv6 fixed header. Checks version and that the payload length fits in the
 * frame. On success the cursor is after the fixed header and *payload_len is
 * the payload length from the header.
 */
static __always_inline int parse_ipv6(struct cursor *c, struct ipv6hdr **out, __u32 *payload_len)
{
	struct ipv6hdr *ip6 = c->pos;
	__u32 plen;

	if ((void *)(ip6 + 1) > c->end)
		return -1;
	if (ip6->version != 6)
		return -1;
	plen = bpf_ntohs(ip6->payload_len);
	if ((void *)(ip6 + 1) + plen > c->end)
		return -1;

	c->pos = ip6 + 1;
	*payload_len = plen;
	*out = ip6;
	return 0;
}

enum ipv6_ext_result {
	IPV6_EXT_UPPER = 0,    /* *nexthdr is the upper-layer protocol */
	IPV6_EXT_FRAGMENT = 1, /* a fragment header was found */
	IPV6_EXT_OTHER = 2,    /* too many headers, or a routing header still to be processed */
};

/*
 * Skip hop-by-hop, routing (with no segments left) and destination options
 * headers, at most SLUICE_MAX_IPV6_EXT of them. Returns an ipv6_ext_result,
 * or -1 if a header is truncated (by the frame or by the payload length).
 */
static __always_inline int ipv6_skip_ext(struct cursor *c, __u8 *nexthdr, __u32 *remaining)
{
	__u8 nh = *nexthdr;
	int i;

#pragma unroll
	for (i = 0; i < SLUICE_MAX_IPV6_EXT; i++) {
		struct ipv6_rt_hdr_min *h;
		__u32 len;

		if (nh == SLUICE_NEXTHDR_FRAGMENT)
			return IPV6_EXT_FRAGMENT;
		if (nh != SLUICE_NEXTHDR_HOP && nh != SLUICE_NEXTHDR_ROUTING && nh != SLUICE_NEXTHDR_DEST)
			break;

		/* Every extension header is at least 8 bytes long. */
		h = c->pos;
		if ((void *)h + 8 > c->end || *remaining < 8)
			return -1;
		len = ((__u32)h->hdrlen + 1) * 8;
		if (len > *remaining || c->pos + len > c->end)
			return -1;
		if (nh == SLUICE_NEXTHDR_ROUTING && h->segments_left != 0)
			return IPV6_EXT_OTHER;

		nh = h->nexthdr;
		c->pos += len;
		*remaining -= len;
	}

	*nexthdr = nh;
	if (nh == SLUICE_NEXTHDR_FRAGMENT)
		return IPV6_EXT_FRAGMENT;
	if (nh == SLUICE_NEXTHDR_HOP || nh == SLUICE_NEXTHDR_ROUTING || nh == SLUICE_NEXTHDR_DEST)
		return IPV6_EXT_OTHER;
	return IPV6_EXT_UPPER;
}

/* ::ffff:a.b.c.d, the form IPv4 addresses take in the maps. */
static __always_inline void ipv4_mapped(__u8 out[16], __be32 addr)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &addr, 4);
}

static __always_inline int mac_is_zero(const __u8 mac[ETH_ALEN])
{
	return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) == 0;
}

static __always_inline int ipv6_addr_is_unspecified(const __u8 a[16])
{
	const __u32 *w = (const __u32 *)a;

	return (w[0] | w[1] | w[2] | w[3]) == 0;
}

#endif /* SLUICE_PARSING_H */
