#!/usr/bin/env python3
"""Sends hand-built VRRPv2 adverts (PASS auth) from 10.77.0.12 to 224.0.0.18 on a schedule.

usage: inject.py <start-delay-s> <at>:<priority> ...   (times relative to the script start)
"""
import socket, struct, sys, time

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def advert(prio, ip_id):
    vips = socket.inet_aton("10.77.0.100")
    body = struct.pack("!BBBBBBH", 0x21, 51, prio, 1, 1, 1, 0) + vips + b"kpa12345"
    body = body[:6] + struct.pack("!H", csum(body)) + body[8:]
    src, dst = socket.inet_aton("10.77.0.12"), socket.inet_aton("224.0.0.18")
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(body), ip_id, 0, 255, 112, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + body

s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"veth-n2")
start = time.monotonic()
for i, item in enumerate(sys.argv[1:], start=1):
    at, prio = item.split(":")
    delay = start + float(at) - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    s.sendto(advert(int(prio), i), ("224.0.0.18", 0))
