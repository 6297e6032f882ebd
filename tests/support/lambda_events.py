"""Lambda event shapes that AWS makes and the tests build: one definition of each."""

from __future__ import annotations

from typing import Any


def dead_letter_record(payload: dict[str, Any]) -> dict[str, Any]:
    """What Lambda's on-failure destination sends to the dead-letter queue for an asynchronous
    invocation that failed its attempts: the event it gave up on, as ``requestPayload``."""
    return {
        "version": "1.0",
        "timestamp": "2026-11-28T23:45:00.000Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:elb-log-shipper:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"errorMessage": "Logstash ... failed 3 times"},
    }
