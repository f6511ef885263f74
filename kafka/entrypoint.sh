#!/usr/bin/env bash
# Entrypoint of the `kafka` service (apache/kafka image, KRaft mode): starts
# the broker, waits until it answers, then creates the checkout topics with
# 3 partitions, idempotently (--if-not-exists), as the seed document says.
# (The seed's snippet defines CHECKOUT_TOPICS but loops over $TOPICS, which
# creates nothing; this one loops over what it defines.) Once they exist it
# writes $READY, which the compose healthcheck looks for.
#
# Its own settings are CHECKOUT_*, never KAFKA_*: the image turns every
# KAFKA_* variable into a broker property.
set -euo pipefail

BIN=/opt/kafka/bin
BOOTSTRAP="${CHECKOUT_BOOTSTRAP_SERVERS:-localhost:9092}"
PARTITIONS="${CHECKOUT_TOPIC_PARTITIONS:-3}"
REPLICATION="${CHECKOUT_TOPIC_REPLICATION_FACTOR:-1}"
READY=/tmp/checkout-topics-ready

# A restarted container keeps its /tmp: not ready until the topics are checked again.
rm -f "$READY"

# Checkout topics (and their dead-letter topics)
CHECKOUT_TOPICS="checkout.requests checkout.finished checkout.requests.dlq checkout.finished.dlq"

/etc/kafka/docker/run &
broker=$!
trap 'kill -TERM "$broker" 2>/dev/null; wait "$broker"' TERM INT

until "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; do
  if ! kill -0 "$broker" 2>/dev/null; then
    echo "kafka exited before it was ready" >&2
    exit 1
  fi
  sleep 1
done

for TOPIC in $CHECKOUT_TOPICS; do
  "$BIN/kafka-topics.sh" --create \
    --bootstrap-server "$BOOTSTRAP" \
    --topic "$TOPIC" \
    --partitions "$PARTITIONS" \
    --replication-factor "$REPLICATION" \
    --if-not-exists
done
echo "checkout topics ready: $CHECKOUT_TOPICS"
touch "$READY"

wait "$broker"
