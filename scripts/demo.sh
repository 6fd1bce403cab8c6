#!/usr/bin/env bash
# The README's demo: sluice echoing under load and serving HTTP on the
# namespace topology, with live counters, as a new user would try it.
#
#   sudo scripts/demo.sh            # about a minute after the build
#
# Installs what is missing, builds, brings up the one-arm topology (prefix
# "sldemo", 2 queues), starts sluice-dataplane in the gateway namespace on
# both queues, then from the client namespace: ping, a UDP client, curl and
# wrk over the userspace TCP stack, TLS 1.3 and HTTP/2 (curl, h2load, a
# resumed session, a certificate reload), the AF_XDP generator with live
# progress, a burst of malformed frames; then SIGTERM,
# the final counters, and proof that nothing is left attached or pinned.
# Everything it starts is stopped by PID and the topology is removed on
# exit, also on failure or Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
source "$here/lib.sh"
cd "$here/.."

require_root "it attaches XDP programs and creates network namespaces"
scripts/install-deps.sh
require_cmd cargo

log "building (release)"
cargo build --release --workspace --bins
B=$PWD/target/release
P=${SLUICE_DEMO_PREFIX:-sldemo}
GW=$P-gw
CLIENT=$P-client
VIP4=198.18.0.100
VIP6=2001:2::100
PIN=/run/sluice/bpffs/$P/gw0

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
# Stop a process we started, if it still runs.
stop_pid() { if kill -0 "$1" 2>/dev/null; then kill "$1"; fi; }

step "topology: namespaces $P-{client,gw,backend,br,rgen,rdut}, 2 queues per veth"
on_exit "$B/sluice-bench" topo down --prefix "$P"
"$B/sluice-bench" topo up --prefix "$P" --queues 2

step "a test CA and an ECDSA P-256 certificate for sluice.test (openssl)"
PKI=$(mktemp -d)
on_exit rm -rf "$PKI"
(
	cd "$PKI"
	openssl ecparam -name prime256v1 -genkey -noout -out ca.key
	openssl req -x509 -new -key ca.key -subj /CN=sluice-demo-ca -days 1 -out ca.pem \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
	openssl ecparam -name prime256v1 -genkey -noout -out server.key
	openssl req -new -key server.key -subj /CN=sluice.test -out server.csr
	printf 'subjectAltName=DNS:sluice.test\nextendedKeyUsage=serverAuth\n' >server.ext
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
		-out server.pem -extfile server.ext 2>/dev/null
)
ls "$PKI"

step "two backends in $P-backend (sluice's test backend) on 198.18.0.3:8080 and :8081"
for port in 8080 8081; do
	ip netns exec "$P-backend" "$B/sluice-test-backend" --listen "198.18.0.3:$port" \
		--name "backend-$port" >/dev/null &
	BACKEND=$!
	on_exit stop_pid "$BACKEND"
done

step "sluice-dataplane on $GW/gw0, queues 0-1: UDP echo on :7, HTTP/1.1 and h2c on :80, TLS (h2, HTTP/1.1) on :443 of $VIP4 and [$VIP6], /app/ proxied to the backends"
DP_LOG=$(mktemp)
on_exit rm -f "$DP_LOG"
ip netns exec "$GW" "$B/sluice-dataplane" --iface gw0 --queues 0-1 \
	--udp-echo "$VIP4:7" --udp-echo "[$VIP6]:7" --pin-dir "$PIN" \
	--http "$VIP4:80" --http "[$VIP6]:80" --tls "$VIP4:443" --tls "[$VIP6]:443" \
	--tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" \
	--tls-ticket-keys "$PKI/ticket.keys" --stats-interval 2 \
	--proxy '/app/=http://198.18.0.3:8080,198.18.0.3:8081' >"$DP_LOG" 2>&1 &
DP=$!
on_exit stop_pid "$DP"
tail -f "$DP_LOG" --pid "$DP" | sed -u 's/^/  [gateway] /' &
TAIL=$!
on_exit stop_pid "$TAIL"
for _ in $(seq 100); do
	grep -q serving "$DP_LOG" && break
	kill -0 "$DP" 2>/dev/null || die "sluice-dataplane exited during start-up"
	sleep 0.1
done
grep -q serving "$DP_LOG" || die "sluice-dataplane did not start"

step "the XDP program is attached, its maps pinned in $PIN"
ip -n "$GW" -d link show gw0 | grep -o 'prog/xdp id [0-9]* name [a-z_]*' || true
ls "$PIN"

step "ping the VIPs from the client (ARP/ND answered in XDP, echo in the poll loop)"
ip netns exec "$CLIENT" ping -c 3 -i 0.2 "$VIP4"
ip netns exec "$CLIENT" ping -6 -c 3 -i 0.2 "$VIP6"

step "a kernel UDP client: nc"
echo "hello from the Linux stack" | ip netns exec "$CLIENT" nc -u -w 1 "$VIP4" 7

step "HTTP/1.1 over sluice's userspace TCP: curl (both families), a 100 MB download, wrk"
ip netns exec "$CLIENT" curl -sS --fail "http://$VIP4/health"
ip netns exec "$CLIENT" curl -sS --fail -6 "http://[$VIP6]/health"
ip netns exec "$CLIENT" sh -c "curl -sS --fail http://$VIP4/bytes/100000000 | wc -c"
ip netns exec "$CLIENT" wrk -t1 -c32 -d3s "http://$VIP4/bytes/64"

step "TLS 1.3 and HTTP/2 terminated in the poll loop: curl over h2, HTTP/1.1 and h2c, h2load, a resumed session"
CURL_TLS=(curl -sS --fail --cacert "$PKI/ca.pem" --resolve "sluice.test:443:$VIP4" --resolve "v6.sluice.test:443:[$VIP6]")
ip netns exec "$CLIENT" "${CURL_TLS[@]}" -w '  <- %{http_version} over TLS, IPv4\n' https://sluice.test/health
ip netns exec "$CLIENT" "${CURL_TLS[@]}" --http1.1 -w '  <- HTTP/%{http_version} over TLS\n' https://sluice.test/health
ip netns exec "$CLIENT" curl -sS --fail --http2-prior-knowledge -w '  <- %{http_version} cleartext (h2c)\n' "http://$VIP4/health"
ip netns exec "$CLIENT" sh -c "$(printf '%q ' "${CURL_TLS[@]}") https://sluice.test/bytes/100000000 | wc -c"
ip netns exec "$CLIENT" h2load -n 50000 -c 16 -m 16 "https://$VIP4/health" | grep -E 'TLS Protocol|Application protocol|finished in|requests:'
SESS=$PKI/session.pem
REQ='GET /health HTTP/1.1\r\nHost: sluice.test\r\nConnection: close\r\n\r\n'
printf "$REQ" | ip netns exec "$CLIENT" openssl s_client -connect "$VIP4:443" -servername sluice.test \
	-CAfile "$PKI/ca.pem" -sess_out "$SESS" -ign_eof 2>/dev/null | grep -E '^(New|Reused),'
printf "$REQ" | ip netns exec "$CLIENT" openssl s_client -connect "$VIP4:443" -servername sluice.test \
	-CAfile "$PKI/ca.pem" -sess_in "$SESS" -ign_eof 2>/dev/null | grep -E '^(New|Reused),'

step "SIGHUP: reload the certificate and ticket keys without dropping a connection"
kill -HUP "$DP"
sleep 0.5
grep -E 'SIGHUP' "$DP_LOG" | tail -1
ip netns exec "$CLIENT" "${CURL_TLS[@]}" -w '  <- still served after the reload\n' https://sluice.test/health

# On this 2-core machine the generator's and the gateway's loops share the
# cores, and on veth each side's receive path runs on the other's core:
# 100k pps is sustained without loss here; raise --rate to see the limit
# (the gateway's kernel_rx_ring_full counter says where frames are lost).
step "the AF_XDP generator: 2 queues, 64 flows, mixed sizes, 100k pps for 8 s, payload verified"
ip netns exec "$CLIENT" "$B/sluice-bench" gen --iface client0 --dst "$VIP4:7" \
	--queues 0-1 --flows 64 --size 60,512,1514 --rate 100000 --duration 8

step "malformed frames from scapy: bad checksums, fragments, truncated headers"
ip netns exec "$CLIENT" /usr/bin/python3 - <<EOF
from scapy.all import *
conf.verb = 0
eth = Ether(dst=getmacbyip("$VIP4"))
for p in [IP(dst="$VIP4")/UDP(dport=7, chksum=0x1234)/Raw(b"x"*20),
          IP(dst="$VIP4", flags="MF")/UDP(dport=7)/Raw(b"x"*20),
          IP(dst="$VIP4", len=400)/UDP(dport=7)/Raw(b"x"*20),
          IP(dst="$VIP4", proto=17)/Raw(b"\x00\x07")]:
    sendp(eth/p, iface="client0", count=10)
print("sent 40 malformed frames")
EOF
sleep 2.5

step "the reverse proxy: /app/ over the loops' own upstream connections (round robin, reused)"
ip netns exec "$CLIENT" curl -sS "http://$VIP4/app/headers" -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' |
	python3 -c 'import json,sys; h=json.load(sys.stdin)["headers"]; [print("  backend saw", k + ":", h[k][0]) for k in ("x-forwarded-for","x-forwarded-proto","traceparent","x-request-id") if k in h]'
# Four requests on one client connection: one loop, its round robin.
ip netns exec "$CLIENT" curl -sS -D - -o /dev/null "http://$VIP4/app/1" "http://$VIP4/app/2" \
	"http://$VIP4/app/3" "http://$VIP4/app/4" | grep -i '^x-backend'
ip netns exec "$CLIENT" wrk -t2 -c64 -d3s "http://$VIP4/app/" | grep -E 'Requests/sec|requests in|Non-2xx' || true
ip netns exec "$CLIENT" h2load -n 20000 -c 4 -m 16 "https://$VIP4/app/" | grep -E 'Application protocol|finished in|requests:'
echo "upstream connections kept by the kernel's managed neighbour entry and the pool:" >&2
ip netns exec "$GW" ip neigh show | grep managed || true

step "SIGTERM: loops stop, program detached, pins removed, final counters"
kill -TERM "$DP"
wait "$DP" && echo "sluice-dataplane exited 0" >&2
sleep 0.3
if ip -n "$GW" -d link show gw0 | grep -q prog/xdp; then
	die "an XDP program is still attached to gw0"
fi
[[ -e $PIN ]] && die "pins left in $PIN"
if ip -n "$GW" neigh show | grep -q managed; then
	die "a managed neighbour entry is left in $GW"
fi
echo "nothing attached to gw0, nothing pinned in $PIN, no managed neighbour left" >&2
step "done; the topology is removed on exit"
