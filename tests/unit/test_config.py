"""Settings read from the environment."""

from __future__ import annotations

from elb_log_shipper.config import ENV, Settings


def test_deployment_environment_is_read() -> None:
    settings = Settings.from_env({ENV.LOGSTASH_HOST: "h", ENV.DEPLOYMENT_ENVIRONMENT: " green "})
    assert settings.environment == "green"
    assert Settings.from_env({ENV.LOGSTASH_HOST: "h"}).environment is None
