"""The broker transport (tasks/worker/broker.py): kombu's Redis channel with one client per connection pool."""

from __future__ import annotations

from pathlib import Path

from kombu import Connection, Exchange, Queue

from tasks.worker import broker


def test_a_channel_keeps_one_client_per_pool_and_messages_still_flow(data_dir: Path, redis_server) -> None:
    broker.install()
    with Connection(redis_server.url) as conn:
        channel = conn.channel()
        assert isinstance(channel, broker.Channel)
        first = channel._create_client()
        assert channel._create_client() is first  # no new client per command
        assert channel._create_client(asynchronous=True) is not first  # the poller's client is its own

        queue = Queue("recplay-broker-test", Exchange("recplay-broker-test"), "k")
        with conn.Producer(channel) as producer:
            for n in range(3):
                producer.publish({"n": n}, exchange=queue.exchange, routing_key="k", declare=[queue])
        got = []
        for _ in range(3):
            message = queue(channel).get(no_ack=False)
            assert message is not None
            got.append(message.payload["n"])
            message.ack()
        assert sorted(got) == [0, 1, 2]
        assert queue(channel).get() is None  # acknowledged: nothing left

        # A new pool (the channel reconnected) gets a new client: none outlives the pool it was built on.
        channel._pool.disconnect()
        channel._pool = None
        second = channel._create_client()
        assert second is not first
        assert second.connection_pool is channel.pool
        assert second.ping()
        channel.close()
