#!/bin/bash
# keepalived 2.2.7 (n1) against injected VRRPv2 adverts from n2: lower priority, higher
# priority, then priority 0. usage: capture-interaction.sh <conf> <out.pcap>
set -euo pipefail
conf=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
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
ip -n "$n1" link set lo up; ip -n "$n2" link set lo up
ip -n "$n1" link set veth-n1 up; ip -n "$n2" link set veth-n2 up
ip -n "$n1" addr add 10.77.0.11/24 dev veth-n1
ip -n "$n2" addr add 10.77.0.12/24 dev veth-n2
sleep 0.5
ip netns exec "$n2" tcpdump -i veth-n2 -s 0 -U -w "$work/cap.pcap" 'arp or (ip proto 112)' 2>"$work/tcpdump.log" &
td_pid=$!
sleep 1
ip netns exec "$n1" keepalived -n -l -D -P -f "$conf" -p "$work/ka.pid" -r "$work/vrrp.pid" >"$work/ka.log" 2>&1 &
ka_pid=$!
# n1 (priority 150) is master after 3 + 106/256 s. Then: lower (100), higher (200) x4,
# priority 0, silence.
ip netns exec "$n2" python3 "$here/inject.py" 5.0:100 6.5:200 7.5:200 8.5:200 9.5:200 10.0:0
sleep 7.5
kill -TERM "$ka_pid"; wait "$ka_pid" || true; ka_pid=
sleep 0.5
kill -INT "$td_pid"; wait "$td_pid" || true; td_pid=
cp "$work/cap.pcap" "$out"
cp "$work/ka.log" "${out%.pcap}.log"
