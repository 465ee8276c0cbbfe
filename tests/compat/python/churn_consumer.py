"""One member of the churn test's consumer group, run as its own process so it can be SIGKILLed.

    python churn_consumer.py BOOTSTRAP GROUP TOPIC LOG_PATH

It consumes with confluent-kafka (auto-commit off), and after each poll commits synchronously the
positions it consumed; partitions being revoked are committed in the revoke callback. Every line
of LOG_PATH is written (and flushed to the kernel, which keeps it through SIGKILL) in order:

    C <partition> <offset> <value>      a record was consumed (before its commit)
    K <partition> <offset>              a commit of <offset> (next to read) succeeded
    F <partition> <offset> <error>      a commit failed
    A <p,p,...> / R <p,p,...>           partitions assigned / revoked

SIGTERM closes the consumer gracefully (commit, LeaveGroup) and exits 0.
"""

from __future__ import annotations

import signal
import sys

from confluent_kafka import Consumer, KafkaException

POLL_BATCH = 200
POLL_TIMEOUT_S = 0.2


def main() -> int:
    bootstrap, group, topic, log_path = sys.argv[1:5]
    log = open(log_path, "a", buffering=1)  # line-buffered: each line is one write(2)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 60000,
        }
    )

    def commit() -> None:
        try:
            committed = consumer.commit(asynchronous=False)
        except KafkaException as e:
            # Nothing to commit is not a failure; anything else is logged for the checker.
            if "NO_OFFSET" not in str(e):
                for tp in consumer.assignment():
                    log.write(f"F {tp.partition} -1 {e}\n")
            return
        for tp in committed or []:
            if tp.error is None and tp.offset >= 0:
                log.write(f"K {tp.partition} {tp.offset}\n")
            elif tp.error is not None:
                log.write(f"F {tp.partition} {tp.offset} {tp.error}\n")

    def on_assign(c, partitions):
        log.write("A " + ",".join(str(tp.partition) for tp in partitions) + "\n")

    def on_revoke(c, partitions):
        commit()
        log.write("R " + ",".join(str(tp.partition) for tp in partitions) + "\n")

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stopping:
        messages = consumer.consume(num_messages=POLL_BATCH, timeout=POLL_TIMEOUT_S)
        consumed = False
        for m in messages:
            if m.error():
                continue
            log.write(f"C {m.partition()} {m.offset()} {m.value().decode()}\n")
            consumed = True
        if consumed:
            commit()
    consumer.close()  # revokes (committing in on_revoke) and leaves the group
    log.write("closed\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
