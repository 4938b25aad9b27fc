#!/usr/bin/env python3
"""Delay, jitter and random loss for packets of netfilter queues (NFQUEUE).

The lab's stand-in for `tc qdisc ... netem` where the kernel has no netem
(CONFIG_NET_SCH_NETEM unset, as on the machines these tests were written on).
Used by netns.mjs (`client.shape`): iptables sends one direction's packets of
a client namespace to a queue of this process, which gives each packet its
verdict later (accept after the delay) or drops it at random. Python's
standard library only: raw netlink (nfnetlink_queue), no libnetfilter_queue.

    impair.py QUEUE:DELAY_MS:JITTER_MS:LOSS_PCT [QUEUE:...]

Prints "ready" once every queue is bound. Runs at a real-time priority
(SCHED_FIFO 10) where allowed, so a busy machine does not add delay. Packets keep their order (jitter
never reorders, as netem with a rate does not). On SIGTERM or SIGINT every
packet still held is accepted at once, and one line per queue says how many
packets it saw and dropped ("queue 0: 1234 packets, 61 dropped").
"""
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_DROP = 0
NF_ACCEPT = 1
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_RCVBUFFORCE = 33


def attr(kind, payload):
    length = 4 + len(payload)
    return struct.pack('=HH', length, kind) + payload + b'\0' * ((4 - length % 4) % 4)


def message(msg_type, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack('=BBH', socket.AF_UNSPEC, 0, socket.htons(queue)) + b''.join(attrs)
    return struct.pack('=IHHII', 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def config(sock, queue, seq):
    """Binds `queue`, asks for metadata only (no payload), room for 4096 packets."""
    for attrs in ([attr(NFQA_CFG_CMD, struct.pack('=BBH', NFQNL_CFG_CMD_BIND, 0, 0))],
                  [attr(NFQA_CFG_PARAMS, struct.pack('>IB', 0, NFQNL_COPY_META)),
                   attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack('>I', 4096))]):
        seq += 1
        sock.send(message(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
        while True:
            data = sock.recv(65536)
            length, kind, _, got_seq, _ = struct.unpack_from('=IHHII', data)
            if kind == NLMSG_ERROR and got_seq == seq:
                (err,) = struct.unpack_from('=i', data, 16)
                if err != 0:
                    raise OSError(-err, f'nfqueue config of queue {queue}: {os.strerror(-err)}')
                break
    return seq


def packets(data):
    """(queue, packet id) of each packet message in a netlink datagram."""
    off = 0
    while off + 16 <= len(data):
        length, kind, _, _, _ = struct.unpack_from('=IHHII', data, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            (res_id,) = struct.unpack_from('>H', data, off + 18)
            a = off + 20
            while a + 4 <= off + length:
                alen, akind = struct.unpack_from('=HH', data, a)
                if alen < 4:
                    break
                if akind & 0x7fff == NFQA_PACKET_HDR:
                    (pid,) = struct.unpack_from('>I', data, a + 4)
                    yield res_id, pid
                a += (alen + 3) & ~3
        off += (length + 3) & ~3


def main():
    queues = {}
    for spec in sys.argv[1:]:
        q, delay, jitter, loss = spec.split(':')
        queues[int(q)] = {'delay': float(delay) / 1000, 'jitter': float(jitter) / 1000,
                          'loss': float(loss) / 100, 'seen': 0, 'dropped': 0, 'last_due': 0.0}
    if not queues:
        sys.exit(__doc__)
    # Held packets must leave on time even when browsers keep every core
    # busy: a real-time priority (this process only sleeps in select).
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (AttributeError, OSError):
        try:
            os.nice(-10)
        except OSError:
            pass
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    seq = 0
    for q in queues:
        seq = config(sock, q, seq)
    held = []  # (due, order, queue, packet id)
    order = 0
    stopping = []
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stopping.append(True))

    def verdict(queue, pid, v):
        try:
            sock.send(message(NFQNL_MSG_VERDICT, queue, [attr(NFQA_VERDICT_HDR, struct.pack('>II', v, pid))]))
        except OSError:
            pass  # the packet is gone already (its queue was flushed)

    print('ready', flush=True)
    while not stopping:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, q, pid = heapq.heappop(held)
            verdict(q, pid, NF_ACCEPT)
        timeout = max(0.0, held[0][0] - now) if held else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            data = sock.recv(1 << 20)
        except InterruptedError:
            continue
        now = time.monotonic()
        for q, pid in packets(data):
            cfg = queues.get(q)
            if cfg is None:
                verdict(q, pid, NF_ACCEPT)
                continue
            cfg['seen'] += 1
            if cfg['loss'] > 0 and random.random() < cfg['loss']:
                cfg['dropped'] += 1
                verdict(q, pid, NF_DROP)
                continue
            if cfg['delay'] <= 0 and cfg['jitter'] <= 0:
                verdict(q, pid, NF_ACCEPT)
                continue
            due = now + cfg['delay'] + random.uniform(-cfg['jitter'], cfg['jitter'])
            due = max(due, cfg['last_due'])  # keep the order
            cfg['last_due'] = due
            order += 1
            heapq.heappush(held, (due, order, q, pid))
    for _, _, q, pid in held:
        verdict(q, pid, NF_ACCEPT)
    for q, cfg in queues.items():
        print(f"queue {q}: {cfg['seen']} packets, {cfg['dropped']} dropped", flush=True)


if __name__ == '__main__':
    main()
