#!/usr/bin/env python3
"""Does a Kafka-protocol broker keep every produced message, once, in order?

    scripts/kafka-order-check.py BOOTSTRAP [--topics N] [--partitions P] [--messages M] [--rounds R]

N idempotent producers run at once, each on a topic of its own with P partitions,
sending M messages in chunks of 200 (as the stream tests' `produce` does). Each
value carries its partition's sequence number. Then each topic is read from the
start and checked: per partition, sequence numbers 0..count-1 in order, each once,
offsets without gaps. Exits 1 and prints what differs on the first anomaly. First it checks that a
consumer resuming at an offset inside a record batch gets that offset next
(tansu 0.6.0 does not: it skips to the next batch).

This pins down broker behaviour (tansu) apart from tidemark: if it fails, a test
that loses or doubles a change may be seeing the broker, not the landing.
"""
import argparse
import sys
import threading
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def produce(bootstrap, topic, partitions, messages, errors):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "message.timeout.ms": 30000,
    })
    seq = [0] * partitions
    failed = []

    def report(err, msg):
        if err is not None:
            failed.append(str(err))

    sent = 0
    while sent < messages:
        for _ in range(min(200, messages - sent)):
            part = sent % partitions
            p.produce(topic, key=str(sent).encode(), value=f"{part}:{seq[part]}".encode(),
                      partition=part, on_delivery=report)
            seq[part] += 1
            sent += 1
        p.flush(60)
    if failed:
        errors.append(f"{topic}: {len(failed)} deliveries failed, first: {failed[0]}")
    return seq


def check(bootstrap, topic, expected):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"check-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(len(expected))])
    seen = {p: [] for p in range(len(expected))}
    total = sum(expected)
    got = 0
    idle = 0
    while got < total and idle < 20:
        m = c.poll(0.5)
        if m is None:
            idle += 1
            continue
        if m.error():
            continue
        idle = 0
        part, n = m.value().decode().split(":")
        seen[m.partition()].append((m.offset(), int(part), int(n)))
        got += 1
    c.close()
    problems = []
    for p, rows in seen.items():
        nums = [n for (_, _, n) in rows]
        if nums != list(range(expected[p])):
            missing = sorted(set(range(expected[p])) - set(nums))
            doubled = sorted({n for n in nums if nums.count(n) > 1})
            order = next((i for i in range(1, len(nums)) if nums[i] < nums[i - 1]), None)
            problems.append(
                f"{topic}/{p}: read {len(nums)} of {expected[p]}; missing {missing[:10]}, "
                f"doubled {doubled[:10]}, first out-of-order index {order}"
            )
        offsets = [o for (o, _, _) in rows]
        gaps = [(a, b) for a, b in zip(offsets, offsets[1:]) if b != a + 1]
        if gaps:
            problems.append(f"{topic}/{p}: offset gaps {gaps[:5]}")
        wrong = [(o, q) for (o, q, _) in rows if q != p]
        if wrong:
            problems.append(f"{topic}/{p}: messages of another partition {wrong[:5]}")
    return problems


def resume_mid_batch(bootstrap):
    """A consumer resuming at an offset inside a record batch (as after a restart
    from a committed offset) must get that offset next. Returns problems."""
    topic = f"midbatch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result()
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 50})
    for i in range(100):
        p.produce(topic, value=str(i).encode(), partition=0)
    p.flush(60)
    problems = []
    for start in (0, 37, 99):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, start)])
        first = None
        for _ in range(10):
            m = c.poll(0.5)
            if m is not None and not m.error():
                first = m.offset()
                break
        c.close()
        if first != start:
            problems.append(f"{topic}/0: fetching from offset {start} (inside a batch) "
                            f"returned offset {first} first")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("--topics", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    mid = resume_mid_batch(a.bootstrap)
    print(f"resume inside a record batch: {'OK' if not mid else 'PROBLEMS'}", flush=True)
    if mid:
        print("\n".join(mid))
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for r in range(a.rounds):
        topics = [f"ordercheck-{uuid.uuid4().hex[:8]}" for _ in range(a.topics)]
        for f in admin.create_topics([NewTopic(t, a.partitions, 1) for t in topics]).values():
            f.result()
        errors, counts = [], {}

        def run(t):
            counts[t] = produce(a.bootstrap, t, a.partitions, a.messages, errors)

        threads = [threading.Thread(target=run, args=(t,)) for t in topics]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        problems = list(errors)
        for t in topics:
            problems += check(a.bootstrap, t, counts[t])
        print(f"round {r + 1}: {a.topics} topics x {a.messages} messages: "
              f"{'OK' if not problems else 'PROBLEMS'}", flush=True)
        if problems:
            print("\n".join(problems))
            sys.exit(1)
    if mid:
        sys.exit(1)


if __name__ == "__main__":
    main()
