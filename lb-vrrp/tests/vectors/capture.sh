#!/bin/bash
# Capture keepalived 2.2.7 VRRPv3 IPv6 adverts in a pair of throwaway network namespaces.
# usage: capture.sh <variant> <conf> <out.pcap>
set -euo pipefail
variant=$1 conf=$2 out=$3
n1=vrrpcap-n1-$$ n2=vrrpcap-n2-$$
work=$(mktemp -d)
cleanup() {
  [[ -n "${ka_pid:-}" ]] && kill "$ka_pid" 2>/dev/null || true
  [[ -n "${td_pid:-}" ]] && kill "$td_pid" 2>/dev/null || true
  sleep 0.3
  ip netns del "$n1" 2>/dev/null || true
  ip netns del "$n2" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$n1"; ip netns add "$n2"
ip link add veth-n1 netns "$n1" address 02:77:00:00:00:11 type veth peer name veth-n2 netns "$n2" address 02:77:00:00:00:12
for ns in "$n1" "$n2"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip -n "$ns" link set lo up
done
ip netns exec "$n1" sysctl -qw net.ipv6.conf.veth-n1.accept_dad=0
ip netns exec "$n2" sysctl -qw net.ipv6.conf.veth-n2.accept_dad=0
ip -n "$n1" link set veth-n1 up
ip -n "$n2" link set veth-n2 up
ip -n "$n1" addr add fd77::11/64 dev veth-n1 nodad
ip -n "$n2" addr add fd77::12/64 dev veth-n2 nodad
ip -n "$n1" addr add 10.77.0.11/24 dev veth-n1
ip -n "$n2" addr add 10.77.0.12/24 dev veth-n2
sleep 1
ip netns exec "$n2" tcpdump -i veth-n2 -s 0 -U -w "$work/cap.pcap" 'ip6 or arp or ip' 2>"$work/tcpdump.log" &
td_pid=$!
sleep 1
ip netns exec "$n1" keepalived -n -l -D -P -f "$conf" -p "$work/ka.pid" -r "$work/vrrp.pid" >"$work/ka.log" 2>&1 &
ka_pid=$!
sleep 6.5
kill -TERM "$ka_pid"; wait "$ka_pid" || true; ka_pid=
sleep 0.5
kill -INT "$td_pid"; wait "$td_pid" || true; td_pid=
cp "$work/cap.pcap" "$out"
cat "$work/ka.log" > "${out%.pcap}.log"
