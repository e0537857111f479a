"""The values handed to the application: publish results and the ending inbox."""

from __future__ import annotations

import asyncio

from qosinspect.client.messages import Inbox, PendingPublish
from qosinspect.mqtt.packets import Publish
from qosinspect.mqtt.qos import Completed

from ._util import run


def _result(qos: int, final: int, pubrec: int | None) -> tuple[int, int | None]:
    async def main() -> tuple[int, int | None]:
        publish = Publish("t", b"", qos, packet_id=7)
        handle = PendingPublish(publish, asyncio.get_running_loop().create_future())
        handle._complete(Completed(publish, final, 10, 25, 2), pubrec)
        result = await handle
        assert (result.packet_id, result.latency_ns, result.sends) == (7, 15, 2)
        return result.reason_code, result.pubrec_reason_code
    return run(main())


def test_reason_code_is_the_informative_one() -> None:
    assert _result(1, 0x10, None) == (0x10, None)          # QoS 1: the PUBACK's
    assert _result(2, 0x00, 0x10) == (0x10, 0x10)          # QoS 2: PUBREC says more
    assert _result(2, 0x92, 0x00) == (0x92, 0x00)          # ...unless PUBCOMP is an error
    assert _result(2, 0x87, 0x87) == (0x87, 0x87)          # refused at PUBREC


def test_inbox_pushes_back_when_full_and_ends() -> None:
    async def main() -> list[int | None]:
        inbox: Inbox[int] = Inbox(2)
        await inbox.put(1)
        await inbox.put(2)
        blocked = asyncio.get_running_loop().create_task(inbox.put(3))
        await asyncio.sleep(0.01)
        assert not blocked.done()                # full: the producer waits
        got = [await inbox.get()]
        await blocked
        inbox.end()
        got += [await inbox.get(), await inbox.get(), await inbox.get()]
        inbox.put_nowait(4)
        inbox.put_nowait(5)
        inbox.put_nowait(6)                      # put_nowait drops the oldest instead
        return [*got, await inbox.get(), await inbox.get()]
    assert run(main()) == [1, 2, 3, None, 5, 6]
