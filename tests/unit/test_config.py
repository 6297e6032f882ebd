"""Every setting read from the environment: its default, a good value, and each way to get it
wrong, with the one-sentence message that names the variable."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from elb_log_shipper.config import (
    DEFAULT_BEATS_BATCH_BYTES,
    DEFAULT_MAX_EVENT_BYTES,
    ENV,
    MIN_DEADLINE_MARGIN,
    Settings,
)
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.privacy import ClientAddress, QueryRedaction
from tests.support.docs import table_names

# (variable, field, good text, parsed value, [(bad text, part of the message)])
TABLE: list[tuple[str, str, str, Any, list[tuple[str, str]]]] = [
    (
        ENV.LOGSTASH_HOST,
        "host",
        " logstash.internal ",
        "logstash.internal",
        [
            ("logstash.internal:5044", "is not a host name or an IP address: give the port in"),
            ("tcp://10.0.0.5:5044", "is not a host name"),
            ("[fd00::5]", "an IPv6 address without brackets"),
            ("log stash", "is not a host name"),
        ],
    ),
    (
        ENV.LOGSTASH_PORT,
        "port",
        "5000",
        5000,
        [
            ("http", "is not an integer"),
            ("0", "out of range: use 1 to 65535"),
            ("65536", "range"),
            # What a CloudFormation Number takes (the template's pattern refuses them now).
            ("5044.5", "is not an integer"),
            ("5e3", "is not an integer"),
        ],
    ),
    (ENV.LOGSTASH_TLS, "tls", "yes", True, [("maybe", "is not a boolean: use true or false")]),
    (
        ENV.LOGSTASH_POOL_SIZE,
        "pool_size",
        "8",
        8,
        [("0", "out of range: use 1 to 64"), ("65", "out of range"), ("4.5", "not an integer")],
    ),
    (
        ENV.LOGSTASH_CONNECT_TIMEOUT,
        "connect_timeout",
        "2.5",
        2.5,
        [("0", "out of range"), ("soon", "is not a number of seconds")],
    ),
    (ENV.LOGSTASH_STALL_TIMEOUT, "stall_timeout", "30", 30.0, [("601", "out of range")]),
    (
        ENV.LOGSTASH_BATCH_BYTES,
        "batch_bytes",
        "65536",
        65536,
        [("1023", "out of range: use 1024 to 16777216")],
    ),
    (
        ENV.DEADLINE_MARGIN_SECONDS,
        "deadline_margin",
        "45",
        45.0,
        [
            ("901", "is out of range: use 0 to 900"),
            ("5", "is too small: use at least 10 s"),
            ("nan", "is not a number of seconds"),
        ],
    ),
    (ENV.CONTINUATION_QUEUE_URL, "continuation_queue_url", "https://q", "https://q", []),
    (ENV.DEAD_LETTER_QUEUE_URL, "dead_letter_queue_url", "https://d", "https://d", []),
    (ENV.MAX_HOPS, "max_hops", "5", 5, [("0", "out of range: use 1 to 10000")]),
    (
        ENV.LOG_PREFIX,
        "log_prefix",
        "prod alb/AWSLogs/",
        "prod alb/AWSLogs/",
        [
            ("é" * 513, "is 1026 bytes long: S3 keys are at most 1024, so it matches no object"),
            ("/AWSLogs/", "starts with '/', which no key ELB writes does"),
        ],
    ),
    (
        ENV.LOG_BUCKET,
        "log_bucket",
        " elb-logs ",
        "elb-logs",
        [
            ("s3://elb-logs", "is no bucket name"),
            ("elb-logs/AWSLogs", "is no bucket name"),
            ("elb-logs:x", "is no bucket name"),
        ],
    ),
    (ENV.KEEP_ORIGINAL, "keep_original", "false", False, [("nope", "is not a boolean")]),
    (
        ENV.MAX_EVENT_BYTES,
        "max_event_bytes",
        "8191",
        8191,
        [
            ("1000", "out of range: use 4096 to 67108864"),
            ("big", "is not an integer"),
            ("61440.0", "is not an integer"),
        ],
    ),
    (ENV.DEPLOYMENT_ENVIRONMENT, "environment", " green ", "green", []),
    (ENV.LOGSTASH_PROTOCOL, "protocol", "Beats", "beats", [("lumberjack", "is not valid")]),
    (
        ENV.LOGSTASH_BEATS_WINDOW_MAX,
        "beats_window_max",
        "512",
        512,
        [("0", "out of range: use 1 to 65536")],
    ),
    (ENV.LOGSTASH_BEATS_COMPRESSION, "beats_compression", "0", 0, [("10", "out of range")]),
    (
        ENV.REDACT_QUERY,
        "redact_query",
        "Values",
        QueryRedaction.VALUES,
        [("some", "is not valid: use one of none, values, all")],
    ),
    (ENV.CLIENT_IP, "client_ip", "truncate", ClientAddress.TRUNCATE, [("mask", "is not valid")]),
    (
        ENV.DROP_USER_AGENT_PREFIXES,
        "drop_user_agent_prefixes",
        " ELB-HealthChecker/ ,, kube-probe/",
        ("ELB-HealthChecker/", "kube-probe/"),
        [],
    ),
    (ENV.DROP_METHODS, "drop_methods", "OPTIONS,HEAD", ("OPTIONS", "HEAD"), [("GET!", "method")]),
    (ENV.DROP_STATUS, "drop_status", "2xx,304", ("2xx", "304"), [("2xy", "neither a status")]),
    (ENV.DROP_PATH_PREFIXES, "drop_path_prefixes", "/static/", ("/static/",), [("x/", "path")]),
    (ENV.DROP_PATH_SUFFIXES, "drop_path_suffixes", ".png,.css", (".png", ".css"), []),
]


def test_the_table_covers_every_variable() -> None:
    variables = {value for name, value in vars(ENV).items() if name.isupper()}
    files = {ENV.LOGSTASH_CA_FILE, ENV.LOGSTASH_CLIENT_CERT_FILE, ENV.LOGSTASH_CLIENT_KEY_FILE}
    # Valid only beside another (CLIENT_IP): test_the_hash_key_parameter_goes_with_hash.
    apart = {ENV.CLIENT_IP_HASH_KEY_PARAMETER}
    assert variables - files - apart == {row[0] for row in TABLE}


@pytest.mark.parametrize(("variable", "name", "text", "value", "bad"), TABLE)
def test_each_setting_is_read_and_validated(
    variable: str, name: str, text: str, value: Any, bad: list[tuple[str, str]]
) -> None:
    assert getattr(Settings.from_env({variable: text}), name) == value
    # Unset and empty mean the default.
    assert getattr(Settings.from_env({}), name) == getattr(Settings.from_env({variable: ""}), name)
    for wrong, message in bad:
        with pytest.raises(ConfigurationError) as raised:
            Settings.from_env({variable: wrong})
        assert variable in str(raised.value)
        assert message in str(raised.value)


@pytest.mark.parametrize(
    "host", ["10.0.0.5", "fd00::5", "::ffff:10.0.0.5", "fe80::1%eth0", "logstash_1.internal"]
)
def test_a_host_is_a_name_or_an_address(host: str) -> None:
    assert Settings.from_env({ENV.LOGSTASH_HOST: host}).host == host


@pytest.mark.parametrize("blank", ["", " "])
def test_a_blank_batch_size_is_the_protocol_default_as_if_unset(blank: str) -> None:
    """Blank was taken as set: beats then sent 256 KiB windows instead of its 1 MiB default."""
    beats = {ENV.LOGSTASH_PROTOCOL: "beats"}
    unset = Settings.from_env(beats).batch_bytes
    assert Settings.from_env({**beats, ENV.LOGSTASH_BATCH_BYTES: blank}).batch_bytes == unset
    assert unset == DEFAULT_BEATS_BATCH_BYTES


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.host is None
    assert settings.max_event_bytes == DEFAULT_MAX_EVENT_BYTES
    assert settings.keep_original is True
    # Every variable unset gives the default the class declares (and the README's table names).
    assert settings == Settings()


# (variable, the lowest and highest values taken): each taken, and each just beyond refused.
BOUNDS = [
    (ENV.LOGSTASH_PORT, "1", "65535", "0", "65536"),
    (ENV.LOGSTASH_POOL_SIZE, "1", "64", "0", "65"),
    (ENV.LOGSTASH_CONNECT_TIMEOUT, "0.1", "60", "0.09", "60.1"),
    (ENV.LOGSTASH_STALL_TIMEOUT, "0.1", "600", "0.09", "600.1"),
    (ENV.LOGSTASH_BATCH_BYTES, "1024", "16777216", "1023", "16777217"),
    (ENV.DEADLINE_MARGIN_SECONDS, str(MIN_DEADLINE_MARGIN), "900", "9.9", "900.1"),
    (ENV.MAX_HOPS, "1", "10000", "0", "10001"),
    (ENV.MAX_EVENT_BYTES, "4096", "67108864", "4095", "67108865"),
    (ENV.LOGSTASH_BEATS_WINDOW_MAX, "1", "65536", "0", "65537"),
    (ENV.LOGSTASH_BEATS_COMPRESSION, "0", "9", "-1", "10"),
]


@pytest.mark.parametrize(("variable", "low", "high", "below", "above"), BOUNDS)
def test_each_range_is_taken_to_its_ends_and_no_further(
    variable: str, low: str, high: str, below: str, above: str
) -> None:
    for taken in (low, high):
        Settings.from_env({variable: taken})
    for refused in (below, above):
        with pytest.raises(ConfigurationError, match=f"{variable}.*(out of range|too small)"):
            Settings.from_env({variable: refused})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {ENV.LOGSTASH_CLIENT_CERT_FILE: "/etc/hosts"},
            "set both .* \\(--client-cert and --client-key on the command line\\)",
        ),
        ({ENV.LOGSTASH_CA_FILE: "/etc/hosts"}, f"need {ENV.LOGSTASH_TLS}=true"),
        (
            {ENV.LOGSTASH_TLS: "true", ENV.LOGSTASH_CA_FILE: "/nonexistent/ca.pem"},
            f"{ENV.LOGSTASH_CA_FILE}=/nonexistent/ca.pem is not a readable file \\(on the "
            "command line: --ca-file\\)",
        ),
    ],
)
def test_settings_that_conflict(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(environ)


def test_a_destination_is_required_where_one_is_needed() -> None:
    with pytest.raises(ConfigurationError, match=f"{ENV.LOGSTASH_HOST} is not set"):
        Settings.from_env({}).require_destination()


def test_deployment_environment_is_read() -> None:
    settings = Settings.from_env({ENV.LOGSTASH_HOST: "h", ENV.DEPLOYMENT_ENVIRONMENT: " green "})
    assert settings.environment == "green"
    assert Settings.from_env({ENV.LOGSTASH_HOST: "h"}).environment is None


@pytest.mark.parametrize("margin", ["0", "5", "9.9"])
def test_a_deadline_margin_too_small_to_hand_off_is_refused_with_the_reason(margin: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({ENV.LOGSTASH_HOST: "h", ENV.DEADLINE_MARGIN_SECONDS: margin})
    assert str(caught.value) == (
        f"DEADLINE_MARGIN_SECONDS={float(margin):g} is too small: use at least 10 s, 5 s to send "
        "the hand-off and 5 s to confirm what was sent, or large objects time out instead of "
        "being handed off"
    )
    with pytest.raises(ConfigurationError, match="DEADLINE_MARGIN_SECONDS"):
        Settings(deadline_margin=float(margin)).with_changes(pool_size=2)


@pytest.mark.parametrize(("margin", "seconds"), [("10", 10.0), ("30", 30.0), (" 240 ", 240.0)])
def test_a_deadline_margin_that_can_work_is_taken(margin: str, seconds: float) -> None:
    settings = Settings.from_env({ENV.LOGSTASH_HOST: "h", ENV.DEADLINE_MARGIN_SECONDS: margin})
    assert settings.deadline_margin == seconds >= MIN_DEADLINE_MARGIN


def test_every_variable_read_is_in_the_readme_settings_table() -> None:
    """The README's Settings table is the one list users have of what the environment can set."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    documented = table_names(readme, "Settings", r"[A-Z][A-Z0-9_]+")
    read = {value for name, value in vars(ENV).items() if name.isupper()}
    assert (read - documented, documented - read) == (set(), set())


def test_the_template_minimum_is_the_settings_minimum() -> None:
    template = (Path(__file__).resolve().parents[2] / "template.yaml").read_text()
    block = template[template.index("  DeadlineMarginSeconds:") :].split("\n  Keep", 1)[0]
    assert f"MinValue: {MIN_DEADLINE_MARGIN:g}\n" in block


def test_privacy_settings_default_to_changing_nothing() -> None:
    settings = Settings.from_env({})
    assert settings.privacy_rules() is None


def test_privacy_settings_are_read_and_compiled() -> None:
    settings = Settings.from_env(
        {
            ENV.REDACT_QUERY: " Values ",
            ENV.CLIENT_IP: "truncate",
            ENV.DROP_USER_AGENT_PREFIXES: "ELB-HealthChecker/, kube-probe/,",
            ENV.DROP_METHODS: "options,HEAD",
            ENV.DROP_STATUS: "2xx, 304",
            ENV.DROP_PATH_PREFIXES: "/static/",
            ENV.DROP_PATH_SUFFIXES: ".png,.css",
        }
    )
    rules = settings.privacy_rules()
    assert rules is not None
    assert rules.redact_query is QueryRedaction.VALUES
    assert rules.client_ip is ClientAddress.TRUNCATE
    assert rules.drop.user_agent_prefixes == ("ELB-HealthChecker/", "kube-probe/")
    assert rules.drop.methods == {"OPTIONS", "HEAD"}
    assert "204" in rules.drop.status and "304" in rules.drop.status
    assert "305" not in rules.drop.status
    assert rules.drop.path_prefixes == ("/static/",)
    assert rules.drop.path_suffixes == (".png", ".css")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({ENV.REDACT_QUERY: "some"}, "REDACT_QUERY='some' is not valid: use one of none, values"),
        ({ENV.CLIENT_IP: "mask"}, "CLIENT_IP='mask' is not valid: use one of keep, truncate"),
        ({ENV.CLIENT_IP: "hash"}, "CLIENT_IP=hash needs CLIENT_IP_HASH_KEY_PARAMETER"),
        ({ENV.DROP_STATUS: "2xx,6xx"}, "DROP_STATUS: '6xx' is neither a status code"),
        ({ENV.DROP_METHODS: "GET /"}, "DROP_METHODS: 'GET /' is not an HTTP method"),
        ({ENV.DROP_PATH_PREFIXES: "static"}, "DROP_PATH_PREFIXES: 'static' is not a path"),
    ],
)
def test_invalid_privacy_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(environ)
    assert str(raised.value).startswith(message)


def test_the_hash_key_parameter_goes_with_hash() -> None:
    """Set without CLIENT_IP=hash, the parameter said "hash the addresses" and they shipped in
    full: refused with keep; with truncate, unused (nothing ships in full)."""
    hashed = Settings.from_env({ENV.CLIENT_IP: "hash", ENV.CLIENT_IP_HASH_KEY_PARAMETER: "/k"})
    assert hashed.client_ip_hash_key_parameter == "/k"
    assert Settings.from_env({ENV.CLIENT_IP_HASH_KEY_PARAMETER: ""}).client_ip is ClientAddress.KEEP
    for keep in ({}, {ENV.CLIENT_IP: "keep"}):
        with pytest.raises(ConfigurationError) as raised:
            Settings.from_env({**keep, ENV.CLIENT_IP_HASH_KEY_PARAMETER: "/k"})
        assert str(raised.value).startswith(
            "CLIENT_IP_HASH_KEY_PARAMETER is set but CLIENT_IP is keep, so client addresses ship "
            "in full"
        )
    truncated = {ENV.CLIENT_IP: "truncate", ENV.CLIENT_IP_HASH_KEY_PARAMETER: "/k"}
    assert Settings.from_env(truncated).client_ip is ClientAddress.TRUNCATE


def test_hash_needs_its_key_and_a_long_one() -> None:
    settings = Settings.from_env(
        {ENV.CLIENT_IP: "hash", ENV.CLIENT_IP_HASH_KEY_PARAMETER: "/elb/key"}
    )
    with pytest.raises(ConfigurationError, match="shorter than 16 bytes"):
        settings.privacy_rules(b"short")
    rules = settings.privacy_rules(b"k" * 16)
    assert rules is not None and rules.hash_key == b"k" * 16
    assert "k" * 16 not in repr(rules)


# The README's words for a setting with no value, and the settings whose field is not named after
# the variable (the others: the name in lower case, less LOGSTASH_).
NO_VALUE = ("none", "empty", "system trust store", "(required by the function)")
FIELD_OF = {
    ENV.DEADLINE_MARGIN_SECONDS: "deadline_margin",
    ENV.DEPLOYMENT_ENVIRONMENT: "environment",
}
UNITS = {"s": 1, "KiB": 1024, "MiB": 1024 * 1024}


def documented_value(text: str) -> Any:
    """A default as the README's Settings table writes it (``5 s``, ``256 KiB``, ``true``)."""
    number = re.fullmatch(r"(\d+) (s|KiB|MiB)", text)
    if number:
        return int(number[1]) * UNITS[number[2]]
    return {"true": True, "false": False}.get(text, int(text) if text.isdigit() else text)


def readme_defaults() -> list[tuple[str, str]]:
    """(variable, default) for each variable of the README's Settings table."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [row.split(" | ") for row in section.splitlines() if row.startswith("| `")]
    return [
        (variable, row[1].strip())
        for row in rows
        for variable in re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0])
    ]


@pytest.mark.parametrize(("variable", "documented"), readme_defaults())
def test_the_readme_settings_table_gives_each_default_the_code_takes(
    variable: str, documented: str
) -> None:
    field = FIELD_OF.get(variable, variable.lower().removeprefix("logstash_"))
    default = getattr(Settings.from_env({}), field)
    if isinstance(default, StrEnum):
        assert documented == default.value
        return
    if documented.startswith(NO_VALUE):
        assert default in (None, ())
        return
    # `256 KiB (beats: 1 MiB)`: the default of each protocol.
    text, _, beats = documented.partition(" (beats: ")
    assert documented_value(text) == default
    if beats:
        beats_default = getattr(Settings.from_env({ENV.LOGSTASH_PROTOCOL: "beats"}), field)
        assert documented_value(beats.removesuffix(")")) == beats_default


def test_overrides_name_settings_and_none_leaves_the_environments_value() -> None:
    # The command passes each of its flags as an override, None for a flag not given.
    environ = {ENV.LOGSTASH_HOST: "h", ENV.LOGSTASH_POOL_SIZE: "3"}
    assert Settings.from_env(environ, pool_size=None).pool_size == 3
    assert Settings.from_env(environ, pool_size=2).pool_size == 2
    with pytest.raises(TypeError, match="unknown setting 'pool_sise'"):
        Settings.from_env(environ, pool_sise=2)


def test_a_protocol_given_in_code_is_checked_as_the_environments_is() -> None:
    with pytest.raises(
        ConfigurationError, match="LOGSTASH_PROTOCOL='udp' is unknown: use json_lines or beats"
    ):
        Settings().with_changes(protocol="udp")
