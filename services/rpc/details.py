"""Machine-readable error details (google.rpc.Status in `grpc-status-details-bin`), written by
the server and read by clients, so that neither side parses message text.

Every refusal carries an ErrorInfo whose `reason` says what happened (QUOTA_EXCEEDED,
OVERLOADED, STORE_FULL, KEY_NOT_FOUND, ...; `errors.FAILURES` lists them) in the
`cryptorec.v1` domain; a refusal that can succeed later carries RetryInfo (when), a spent
quota QuotaFailure (whose, which) and bad input BadRequest (which request field).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "cryptorec.v1"


@dataclass(frozen=True)
class ErrorDetails:
    """What a failed call's status says beyond its code and message.

    `reason`: the ErrorInfo reason ("" if the server sent none); `retry_after`: seconds until
    retrying can succeed (None: not retryable, or unknown); `metadata`: ErrorInfo's;
    `fields`: (request field, what is wrong) pairs; `quotas`: (subject, what is spent) pairs.
    """

    reason: str = ""
    retry_after: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    fields: tuple[tuple[str, str], ...] = ()
    quotas: tuple[tuple[str, str], ...] = ()

    def messages(self) -> list[Message]:
        """The google.rpc detail messages this stands for."""
        out: list[Message] = []
        if self.reason:
            info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN)
            info.metadata.update(self.metadata)
            out.append(info)
        if self.retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(max(0.0, self.retry_after) * 1e9))
            out.append(error_details_pb2.RetryInfo(retry_delay=delay))
        if self.quotas:
            quotas = [{"subject": s, "description": d} for s, d in self.quotas]
            out.append(error_details_pb2.QuotaFailure(violations=quotas))
        if self.fields:
            fields = [{"field": f, "description": d} for f, d in self.fields]
            out.append(error_details_pb2.BadRequest(field_violations=fields))
        return out


def status_with(code: grpc.StatusCode, message: str, details: ErrorDetails) -> status_pb2.Status:
    """The google.rpc.Status of a failure: its code, message and packed details."""
    packed = []
    for detail in details.messages():
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    return status_pb2.Status(code=code.value[0], message=message, details=packed)


def read_details(status: status_pb2.Status | None) -> ErrorDetails:
    """The ErrorDetails of a google.rpc.Status (empty for None or a status without any)."""
    reason, retry, metadata = "", None, {}
    fields: list[tuple[str, str]] = []
    quotas: list[tuple[str, str]] = []
    for detail in status.details if status is not None else ():
        info, delay = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        quota, bad = error_details_pb2.QuotaFailure(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(delay):
            retry = float(delay.retry_delay.ToNanoseconds()) / 1e9
        elif detail.Unpack(quota):
            quotas += [(v.subject, v.description) for v in quota.violations]
        elif detail.Unpack(bad):
            fields += [(v.field, v.description) for v in bad.field_violations]
    return ErrorDetails(reason, retry, metadata, tuple(fields), tuple(quotas))


def details_of(error: grpc.Call) -> ErrorDetails:
    """The details a failed call carries (empty if none, or if they do not parse: a status
    whose details disagree with its code is a broken server's, not a reason to crash)."""
    try:
        return read_details(rpc_status.from_call(error))
    except ValueError:
        return ErrorDetails()


def retry_after(error: grpc.Call) -> float | None:
    """Seconds until retrying can succeed, if the status carries google.rpc.RetryInfo."""
    return details_of(error).retry_after


def reason_of(error: grpc.Call) -> str:
    """The ErrorInfo reason of a failed call ("" if it carries none)."""
    return details_of(error).reason
