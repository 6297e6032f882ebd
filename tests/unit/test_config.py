"""Settings read from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from elb_log_shipper.config import ENV, MIN_DEADLINE_MARGIN, Settings
from elb_log_shipper.errors import ConfigurationError


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
