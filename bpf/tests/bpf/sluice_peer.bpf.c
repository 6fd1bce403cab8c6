// SPDX-License-Identifier: Apache-2.0
/* The topology's XDP_PASS placeholder under its real name (sluice-bench
 * builds the same program): the chaos tests check that it is put back. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int sluice_peer(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
