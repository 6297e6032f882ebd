"""Pure ELB log parsing: one line of text in, one ECS event (a dict) out. No I/O.

>>> parse_line('2015-05-13T23:39:43.945958Z my-lb 192.168.131.39:2817 - -1 -1 -1 504 - 0 0 '
...            '"GET http://example.com:80/ HTTP/1.1" "curl/7.38.0" - -')["http"]["response"]
{'status_code': 504, 'body': {'bytes': 0}}
"""

from __future__ import annotations

from elb_log_shipper.formats.event import (
    PARSE_FAILURE_TAG,
    TIMESTAMP_FORMAT,
    EventBuilder,
    detect_format,
    parse_line,
)

__all__ = ["PARSE_FAILURE_TAG", "TIMESTAMP_FORMAT", "EventBuilder", "detect_format", "parse_line"]
