"""Stopping a session remotely: `POST /api/v1/stations/<identity>/commands/remote-stop/`, one of the
version-neutral operations of stations/api/operations.py. It lives here because a session id resolves to
its transaction id through the sessions app, which the stations app must not import."""

from cpms.ocpp_wire import operations as builders
from sessions.selectors import session_transaction_id
from stations.api.operations import OperationApi, operation_schema
from stations.api.operations_serializers import RemoteStopInputSerializer


@operation_schema(
    operation_id="stations_commands_remote_stop",
    summary="Stop a charging session remotely",
    description="By our session id (a session of this station) or the transaction id on the wire: 1.6 "
    "RemoteStopTransaction {transactionId: integer}; 2.0.1 RequestStopTransaction {transactionId: string}.",
)
class RemoteStopApi(OperationApi):
    input_serializer_class = RemoteStopInputSerializer

    def build(self, *, station, version, data, user):
        transaction_id = data.get("transaction_id")
        if transaction_id is None:
            transaction_id = session_transaction_id(user=user, station=station, session_id=data["session_id"])
        return builders.remote_stop(version, transaction_id=transaction_id)
