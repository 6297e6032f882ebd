"""Settings read from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from elb_log_shipper.config import ENV, MIN_DEADLINE_MARGIN, Settings
from elb_log_shipper.errors import ConfigurationError
from elb_log_shipper.privacy import ClientAddress, QueryRedaction


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


def test_hash_needs_its_key_and_a_long_one() -> None:
    settings = Settings.from_env(
        {ENV.CLIENT_IP: "hash", ENV.CLIENT_IP_HASH_KEY_PARAMETER: "/elb/key"}
    )
    with pytest.raises(ConfigurationError, match="shorter than 16 bytes"):
        settings.privacy_rules(b"short")
    rules = settings.privacy_rules(b"k" * 16)
    assert rules is not None and rules.hash_key == b"k" * 16
    assert "k" * 16 not in repr(rules)
