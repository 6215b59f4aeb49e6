#!/usr/bin/env python3
"""Produce Debezium-style change events to Kafka as Avro, framed by Confluent's own
serializer (confluent-kafka's AvroSerializer, which registers each schema through
the registry's REST API and writes magic byte 0 + schema id + Avro).

Needs `pip install 'confluent-kafka[avro]'`. Input: JSON lines, from a file or stdin.

  {"define": "orders_v1", "schema": {...avro schema...}}
      names a schema for later lines (a schema can also be given inline).
  {"topic": "shop.shop.orders",
   "key_schema": "orders_key" | {...}, "key": {...} | null,
   "value_schema": "orders_v1" | {...}, "value": {...envelope...} | null,
   "partition": 0}
      one message. A null (or absent) value is a tombstone; "partition" is optional.

Values are the envelope as plain JSON (before, after, source, op, ts_ms, ...), as
fastavro takes them: unions need no wrapping, ints and longs are numbers (Debezium's
io.debezium.time.* types are plain ints and longs). JSON has no bytes or exact
decimals, so these markers stand for them anywhere in a value:

  {"$decimal": "1234.50"}   a decimal.Decimal (for logicalType decimal)
  {"$hex": "deadbeef"}      bytes
  {"$base64": "3q2+7w=="}   bytes

Each (schema, key-or-value) pair gets its own AvroSerializer, so a schema change
mid-stream registers a new version under the topic's subject ("<topic>-key" /
"<topic>-value", the default TopicNameStrategy). The bytes go out with a plain
Producer (a SerializingProducer has one fixed serializer per key and value, and the
schema varies per message here); they are exactly what the serializer returned.

  avro_produce.py --bootstrap HOST:PORT --registry URL [--registry-auth user:pass] [FILE]
  avro_produce.py --registry URL --dump OUT.jsonl [FILE]
      writes {"topic", "partition", "key", "value"} lines (hex of the framed bytes)
      instead of producing: fixtures for decoder tests, no broker needed.
"""

import argparse
import base64
import decimal
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(v):
    """JSON value -> what fastavro writes (markers become bytes and decimals)."""
    if isinstance(v, dict):
        if len(v) == 1:
            (k, x), = v.items()
            if k == "$decimal":
                return decimal.Decimal(x)
            if k == "$hex":
                return bytes.fromhex(x)
            if k == "$base64":
                return base64.b64decode(x)
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


class Serializers:
    def __init__(self, registry):
        self.registry = registry
        self.named = {}
        self.cache = {}

    def define(self, name, schema):
        self.named[name] = schema

    def get(self, schema, field, line):
        if isinstance(schema, str):
            if schema not in self.named:
                raise SystemExit("line %d: schema %r is not defined by an earlier line" % (line, schema))
            schema = self.named[schema]
        text = json.dumps(schema, separators=(",", ":"))
        key = (text, field)
        if key not in self.cache:
            self.cache[key] = AvroSerializer(
                self.registry, text, conf={"auto.register.schemas": True}
            )
        return self.cache[key]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", nargs="?", default="-", help="JSON-lines file (default stdin)")
    ap.add_argument("--bootstrap", help="Kafka bootstrap servers")
    ap.add_argument("--registry", required=True, help="schema registry URL")
    ap.add_argument("--registry-auth", help="user:password for the registry")
    ap.add_argument("--dump", help="write framed messages to this file instead of Kafka")
    args = ap.parse_args()
    if not args.bootstrap and not args.dump:
        ap.error("give --bootstrap (produce to Kafka) or --dump (write a file)")

    conf = {"url": args.registry}
    if args.registry_auth:
        conf["basic.auth.user.info"] = args.registry_auth
    serializers = Serializers(SchemaRegistryClient(conf))
    producer = Producer({"bootstrap.servers": args.bootstrap}) if args.bootstrap else None
    dump = open(args.dump, "w") if args.dump else None
    failures = []

    def delivered(err, msg):
        if err is not None:
            failures.append(str(err))

    src = sys.stdin if args.input == "-" else open(args.input)
    count = 0
    for n, line in enumerate(src, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        ev = json.loads(line)
        if "define" in ev:
            serializers.define(ev["define"], ev["schema"])
            continue
        topic = ev["topic"]
        key = value = None
        if ev.get("key") is not None:
            ser = serializers.get(ev["key_schema"], "key", n)
            key = ser(plain(ev["key"]), SerializationContext(topic, MessageField.KEY))
        if ev.get("value") is not None:
            ser = serializers.get(ev["value_schema"], "value", n)
            value = ser(plain(ev["value"]), SerializationContext(topic, MessageField.VALUE))
        partition = ev.get("partition")
        if dump:
            dump.write(json.dumps({
                "topic": topic,
                "partition": partition,
                "key": key.hex() if key is not None else None,
                "value": value.hex() if value is not None else None,
            }) + "\n")
        else:
            kw = {"key": key, "value": value, "on_delivery": delivered}
            if partition is not None:
                kw["partition"] = partition
            while True:
                try:
                    producer.produce(topic, **kw)
                    break
                except BufferError:
                    producer.poll(0.5)
            producer.poll(0)
        count += 1
    if producer is not None:
        left = producer.flush(60)
        if left:
            failures.append("%d messages still undelivered after 60 s" % left)
    if dump:
        dump.close()
    if failures:
        sys.exit("avro_produce: %d failures, first: %s" % (len(failures), failures[0]))
    print("produced %d messages" % count)


if __name__ == "__main__":
    main()
