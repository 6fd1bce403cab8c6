/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Neighbour responder of the gateway: ARP requests and IPv6 neighbour
 * solicitations for VIPs with SLUICE_VIP_ANSWER_NEIGH are answered in place
 * and sent back with XDP_TX, so VIPs need not be configured on the interface.
 * VLAN tags stay as they were.
 */
#ifndef SLUICE_NEIGH_H
#define SLUICE_NEIGH_H

#include "parsing.h"
#include "csum.h"
#include "gateway_maps.h"

#define SLUICE_ND_NS 135
#define SLUICE_ND_NA 136
#define SLUICE_ND_OPT_SLLA 1
#define SLUICE_ND_OPT_TLLA 2
#define SLUICE_ND_NA_FLAGS 0x60000000 /* Solicited | Override */
#define SLUICE_ND_MAX_NS_LEN 64       /* NS + options we check; longer ones go to the kernel */
#define SLUICE_ND_MAX_OPTS 5

/* The config entry, if the responder is enabled (a non-zero MAC is set). */
static __always_inline struct sluice_config *neigh_config(void)
{
	__u32 zero = 0;
	struct sluice_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || mac_is_zero(cfg->mac))
		return NULL;
	return cfg;
}

static __always_inline int is_answered_vip(const __u8 addr[16])
{
	struct sluice_vip_key key;
	struct sluice_vip_value *vip;

	__builtin_memcpy(key.addr, addr, 16);
	vip = bpf_map_lookup_elem(&vips, &key);
	return vip && (vip->flags & SLUICE_VIP_ANSWER_NEIGH);
}

/* ARP: the cursor is at the ARP header. */
static __always_inline enum sluice_xdp_counter answer_arp(struct cursor *c, struct l2_info *l2)
{
	struct arp_eth_ipv4 *arp = c->pos;
	struct sluice_config *cfg;
	__u8 sha[ETH_ALEN], spa[4], tpa[4];
	__u8 addr[16];
	__be32 tip;

	if ((void *)(arp + 1) > c->end)
		return SLUICE_DROP_MALFORMED_ARP;
	/* What the kernel's arp_rcv() accepts on an Ethernet device. */
	if (arp->hdr.ar_hln != ETH_ALEN || arp->hdr.ar_pln != 4 ||
	    arp->hdr.ar_pro != bpf_htons(ETH_P_IP) ||
	    (arp->hdr.ar_hrd != bpf_htons(ARPHRD_ETHER) &&
	     arp->hdr.ar_hrd != bpf_htons(ARPHRD_IEEE802)))
		return SLUICE_DROP_MALFORMED_ARP;
	if (arp->hdr.ar_op != bpf_htons(ARPOP_REQUEST))
		return SLUICE_PASS_NEIGH_OTHER;

	__builtin_memcpy(&tip, arp->tpa, 4);
	ipv4_mapped(addr, tip);
	if (!is_answered_vip(addr))
		return SLUICE_PASS_NEIGH_OTHER;
	cfg = neigh_config();
	if (!cfg)
		return SLUICE_PASS_NEIGH_OTHER;

	__builtin_memcpy(sha, arp->sha, ETH_ALEN);
	__builtin_memcpy(spa, arp->spa, 4);
	__builtin_memcpy(tpa, arp->tpa, 4);

	/* Like the kernel's reply: to the requester's hardware address. */
	arp->hdr.ar_op = bpf_htons(ARPOP_REPLY);
	__builtin_memcpy(arp->tha, sha, ETH_ALEN);
	__builtin_memcpy(arp->tpa, spa, 4);
	__builtin_memcpy(arp->sha, cfg->mac, ETH_ALEN);
	__builtin_memcpy(arp->spa, tpa, 4);
	__builtin_memcpy(l2->eth->h_dest, sha, ETH_ALEN);
	__builtin_memcpy(l2->eth->h_source, cfg->mac, ETH_ALEN);
	return SLUICE_TX_ARP_REPLY;
}

/* Pseudo-header and message of the advertisement, summed in one go. */
struct na_csum_buf {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__be32 nexthdr;
	struct nd_msg_hdr msg;
	struct nd_opt_lladdr tlla;
};

/* Pseudo-header of a received ICMPv6 message and up to 64 bytes of it. */
struct ns_csum_buf {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__be32 nexthdr;
	__u8 msg[SLUICE_ND_MAX_NS_LEN];
};

/*
 * The NS (at `ns_off` from the start of the frame, `plen` bytes long) is
 * valid: checksum right and every option with a non-zero length (RFC 4861
 * 7.1.1). Copies it to `buf`, which the caller uses afterwards.
 */
static __always_inline int ns_is_valid(struct xdp_md *ctx, struct ipv6hdr *ip6, __u32 ns_off,
				       __u32 plen, struct ns_csum_buf *buf)
{
	__u32 off = sizeof(struct nd_msg_hdr);
	__s64 sum;
	int i;

	if (plen < sizeof(struct nd_msg_hdr) || plen > SLUICE_ND_MAX_NS_LEN)
		return 0;
	__builtin_memset(buf, 0, sizeof(*buf));
	__builtin_memcpy(buf->saddr, &ip6->saddr, 16);
	__builtin_memcpy(buf->daddr, &ip6->daddr, 16);
	buf->len = bpf_htonl(plen);
	buf->nexthdr = bpf_htonl(IPPROTO_ICMPV6);
	if (bpf_xdp_load_bytes(ctx, ns_off, buf->msg, plen) < 0)
		return 0;
	/* The zeroes after the message do not change the sum. */
	sum = bpf_csum_diff(NULL, 0, (__be32 *)buf, sizeof(*buf), 0);
	if (sum < 0 || csum_fold32((__u32)sum) != 0)
		return 0;

	for (i = 0; i < SLUICE_ND_MAX_OPTS; i++) {
		__u8 len;

		if (off + 2 > plen)
			break;
		len = buf->msg[(off + 1) & (SLUICE_ND_MAX_NS_LEN - 1)];
		if (len == 0)
			return 0;
		off += (__u32)len * 8;
	}
	return 1;
}

/*
 * IPv6 neighbour solicitation for a VIP: answer with a solicited, override
 * advertisement carrying a target link-layer address option, in place. The
 * frame is resized to exactly the advertisement (grown by 8 bytes when the
 * NS had no source link-layer address option). The cursor is at ICMPv6.
 */
static __always_inline enum sluice_xdp_counter answer_ns(struct xdp_md *ctx, struct l2_info *l2,
							 struct ipv6hdr *ip6, struct cursor *c,
							 __u32 plen)
{
	struct nd_msg_hdr *ns = c->pos;
	struct sluice_config *cfg;
	struct ns_csum_buf nsb;
	struct na_csum_buf na;
	__u8 dst_mac[ETH_ALEN];
	__u32 l3_off = l2->l3_off;
	void *data, *end;
	__s64 sum;
	int delta;

	if ((void *)(ns + 1) > c->end || plen < sizeof(*ns))
		return SLUICE_PASS_NEIGH_OTHER;
	/* RFC 4861 7.1.1: hop limit 255 and code 0, or the kernel discards it. */
	if (ip6->hop_limit != 255 || ns->code != 0)
		return SLUICE_PASS_NEIGH_OTHER;
	if (!is_answered_vip(ns->target))
		return SLUICE_PASS_NEIGH_OTHER;
	cfg = neigh_config();
	if (!cfg)
		return SLUICE_PASS_NEIGH_OTHER;
	if (!ns_is_valid(ctx, ip6, l3_off + sizeof(*ip6), plen, &nsb))
		return SLUICE_PASS_NEIGH_OTHER;
	/* DAD (unspecified source) and multicast sources are left to the kernel. */
	if (ipv6_addr_is_unspecified(nsb.saddr) || nsb.saddr[0] == 0xff)
		return SLUICE_PASS_NEIGH_OTHER;

	__builtin_memcpy(dst_mac, l2->eth->h_source, ETH_ALEN);

	/* The advertisement, with its checksum, built on the stack. */
	__builtin_memcpy(na.saddr, nsb.msg + 8, 16); /* the target */
	__builtin_memcpy(na.daddr, nsb.saddr, 16);
	na.len = bpf_htonl(sizeof(na.msg) + sizeof(na.tlla));
	na.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
	na.msg.type = SLUICE_ND_NA;
	na.msg.code = 0;
	na.msg.csum = 0;
	na.msg.flags = bpf_htonl(SLUICE_ND_NA_FLAGS);
	__builtin_memcpy(na.msg.target, nsb.msg + 8, 16);
	na.tlla.type = SLUICE_ND_OPT_TLLA;
	na.tlla.len = 1;
	__builtin_memcpy(na.tlla.addr, cfg->mac, ETH_ALEN);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&na, sizeof(na), 0);
	if (sum < 0)
		return SLUICE_ABORTED_INTERNAL;
	na.msg.csum = csum_fold32((__u32)sum);

	/* Resize the frame to L2 + IPv6 header + NA + TLLA option. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	delta = (int)(l3_off + sizeof(struct ipv6hdr) + sizeof(na.msg) + sizeof(na.tlla)) -
		(int)(end - data);
	if (delta != 0 && bpf_xdp_adjust_tail(ctx, delta) < 0)
		return SLUICE_ABORTED_INTERNAL;

	/* Every packet pointer is stale after adjust_tail: derive them again. */
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (l3_off > sizeof(struct ethhdr) + SLUICE_MAX_VLAN_TAGS * sizeof(struct vlan_hdr))
		return SLUICE_ABORTED_INTERNAL;
	{
		struct ethhdr *eth = data;
		struct ipv6hdr *out = data + l3_off;
		void *icmp = out + 1;

		if (icmp + sizeof(na.msg) + sizeof(na.tlla) > end)
			return SLUICE_ABORTED_INTERNAL;

		__builtin_memcpy(eth->h_dest, dst_mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, cfg->mac, ETH_ALEN);

		*(__be32 *)out = bpf_htonl(0x60000000); /* version 6, no class, no flow label */
		out->payload_len = bpf_htons(sizeof(na.msg) + sizeof(na.tlla));
		out->nexthdr = IPPROTO_ICMPV6;
		out->hop_limit = 255;
		__builtin_memcpy(&out->saddr, na.saddr, 16);
		__builtin_memcpy(&out->daddr, na.daddr, 16);
		__builtin_memcpy(icmp, &na.msg, sizeof(na.msg));
		__builtin_memcpy(icmp + sizeof(na.msg), &na.tlla, sizeof(na.tlla));
	}
	return SLUICE_TX_NEIGH_ADVERT;
}

#endif /* SLUICE_NEIGH_H */
