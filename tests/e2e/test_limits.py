"""Connection limits against a real Daphne process (docs/reliability.md cases 12 and 6)."""

import asyncio
import base64

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stations.models import ChargingStation
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def _auth(identity: str) -> dict:
    token = base64.b64encode(f"{identity}:{DEFAULT_STATION_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _open(server, identity: str):
    return await connect(
        f"{server.ws_url}/{identity}",
        subprotocols=["ocpp1.6"],
        additional_headers=_auth(identity),
        max_size=None,
        open_timeout=10,
    )


def test_rel_12_oversized_frame_closes_with_1009_and_others_unaffected(cpms_server, settings):
    ChargingStationFactory(identity="BIG-1")
    ChargingStationFactory(identity="SMALL-1")

    async def scenario():
        big = await _open(cpms_server, "BIG-1")
        small = await _open(cpms_server, "SMALL-1")
        huge = (
            '[2,"x","DataTransfer",{"vendorId":"v","data":"'
            + "A" * (settings.OCPP_MAX_FRAME_BYTES + 1024)
            + '"}]'
        )
        await big.send(huge)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(big.recv(), timeout=10)
        await small.send('[2,"h","Heartbeat",{}]')
        answer = await asyncio.wait_for(small.recv(), timeout=10)
        await small.close()
        return closed.value.rcvd.code if closed.value.rcvd else None, answer

    code, answer = asyncio.run(scenario())
    assert code == 1009
    assert answer.startswith('[3,"h",')


def test_rel_06_reconnect_replaces_old_connection_across_real_server(cpms_server):
    ChargingStationFactory(identity="RE-1")

    async def scenario():
        old = await _open(cpms_server, "RE-1")
        new = await _open(cpms_server, "RE-1")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(old.recv(), timeout=10)
        await new.send('[2,"h","Heartbeat",{}]')
        answer = await asyncio.wait_for(new.recv(), timeout=10)
        connected = await asyncio.to_thread(
            lambda: ChargingStation.objects.values_list("is_connected", flat=True).get(identity="RE-1")
        )
        await new.close()
        return answer, connected

    answer, connected = asyncio.run(scenario())
    assert answer.startswith('[3,"h",')
    assert connected is True
