import socket

from demo.mosquitto import Mosquitto


def test_broker_listens_on_loopback_and_stops(broker: Mosquitto) -> None:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=1):
        pass
    pid = broker.proc.pid
    broker.stop()
    assert broker.proc is None
    try:
        socket.create_connection(("127.0.0.1", broker.port), timeout=0.5).close()
        raise AssertionError("broker still listening after stop")
    except OSError:
        pass
    assert pid > 0
