#!/usr/bin/env python3
"""Measures what two hostile clients cost a durin server.

    bench/hostile-clients.py [--bin target/release/durin] [--pings 1000000]

ping-flood: one chat WebSocket sends --pings 125-byte pings and reads
nothing; the server's RSS is sampled while it does, and the peak growth
over the idle server is printed.

fd-storm: the server runs with RLIMIT_NOFILE 256 on one shard; its soft
limit is then lowered to its lowest free descriptor (as if something else
took them), and 400 connections arrive while it is stopped (SIGSTOP). The
CPU the server uses over the next 3 seconds, out of descriptors, is
printed (100% = one core spinning).

Each scenario starts its own server on a free loopback port with a
temporary data directory, and prints one line of results.
"""

import argparse
import os
import resource
import signal
import socket
import subprocess
import tempfile
import time


def start(binary, data_dir, fd_limit=None):
    def limit():
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--rpc-listen", "127.0.0.1:0",
         "--data-dir", data_dir, "--cores", "1", "--no-pin"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=limit, text=True)
    for line in proc.stdout:
        if line.startswith("durin listening on http://"):
            host, port = line.strip().rsplit("/", 1)[1].split(":")
            return proc, (host, int(port))
    raise SystemExit("the server did not start")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def websocket(addr, path):
    sock = socket.create_connection(addr)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def ping_frame():
    payload = b"p" * 125
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b"\x89" + bytes([0x80 | 125]) + mask + masked


def ping_flood(binary, pings):
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start(binary, os.path.join(tmp, "data"))
        try:
            sock = websocket(addr, "/chat/flood/websocket?name=f")
            time.sleep(0.5)
            idle = rss_bytes(proc.pid)
            peak = idle
            batch = ping_frame() * 500
            sent = 0
            while sent < pings:
                sock.sendall(batch)
                sent += 500
                if sent % 50_000 == 0:
                    peak = max(peak, rss_bytes(proc.pid))
            time.sleep(1)
            peak = max(peak, rss_bytes(proc.pid))
            print(f"ping-flood pings={sent} idle_rss_mib={idle / 2**20:.1f} "
                  f"peak_rss_mib={peak / 2**20:.1f} growth_mib={(peak - idle) / 2**20:.1f}")
        finally:
            proc.kill()
            proc.wait()


def lowest_free_fd(pid):
    taken = {int(n) for n in os.listdir(f"/proc/{pid}/fd")}
    n = 0
    while n in taken:
        n += 1
    return n


def fd_storm(binary):
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start(binary, os.path.join(tmp, "data"), fd_limit=256)
        try:
            resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (lowest_free_fd(proc.pid), 256))
            os.kill(proc.pid, signal.SIGSTOP)
            storm = [socket.create_connection(addr) for _ in range(400)]
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(1)
            before = cpu_ticks(proc.pid)
            time.sleep(3)
            used = cpu_ticks(proc.pid) - before
            per_s = os.sysconf("SC_CLK_TCK")
            print(f"fd-storm cpu_percent_of_one_core={100 * used / (3 * per_s):.0f}")
            for s in storm:
                s.close()
        finally:
            proc.kill()
            proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default="target/release/durin")
    parser.add_argument("--pings", type=int, default=1_000_000)
    args = parser.parse_args()
    ping_flood(args.bin, args.pings)
    fd_storm(args.bin)


if __name__ == "__main__":
    main()
