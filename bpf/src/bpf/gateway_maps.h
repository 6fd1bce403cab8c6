/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Maps of the gateway program. Userspace (bpf/src/gateway.rs) pins each of
 * them under the pin directory by the name it has here.
 */
#ifndef SLUICE_GATEWAY_MAPS_H
#define SLUICE_GATEWAY_MAPS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sluice_abi.h"

/* AF_XDP socket of each receive queue; key = rx_queue_index. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, SLUICE_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* Addresses the gateway owns, with SLUICE_VIP_* flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_VIPS);
	__type(key, struct sluice_vip_key);
	__type(value, struct sluice_vip_value);
} vips SEC(".maps");

/* (VIP, protocol, port) served by the dataplane. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_LISTENERS);
	__type(key, struct sluice_listener_key);
	__type(value, struct sluice_listener_value);
} listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_config);
} config SEC(".maps");

/* One counter per verdict reason, indexed by enum sluice_xdp_counter. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_XDP_COUNTER_MAX);
	__type(key, __u32);
	__type(value, struct sluice_counter);
} counters SEC(".maps");

/*
 * Routing/health words shared with userspace through mmap (layout in
 * sluice_abi.h). The program reads only SLUICE_HEALTH_FLAGS.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLUICE_HEALTH_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} health SEC(".maps");

/* The flags word of `health` (0 if the lookup failed, which it cannot). */
static __always_inline __u64 health_flags(void)
{
	__u32 key = SLUICE_HEALTH_FLAGS;
	__u64 *w = bpf_map_lookup_elem(&health, &key);

	/* One aligned 64-bit load: userspace stores the word whole. */
	return w ? *(volatile __u64 *)w : 0;
}

static __always_inline void count(enum sluice_xdp_counter c, __u64 bytes)
{
	__u32 key = c;
	struct sluice_counter *v = bpf_map_lookup_elem(&counters, &key);

	if (v) {
		v->packets += 1;
		v->bytes += bytes;
	}
}

#endif /* SLUICE_GATEWAY_MAPS_H */
