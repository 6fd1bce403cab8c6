// SPDX-License-Identifier: Apache-2.0
/* A program sluice did not write: the attach tests put it on an interface
 * through netlink and expect sluice to refuse to replace it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int foreign_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
