"""Configuration: defaults, files, environment and the documented default file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from dispatcher.settings import BUILT_IN_RATE_LIMITS, Settings

CONFIG = Path(__file__).parents[2] / "config"


def test_default_file_states_the_code_defaults(monkeypatch):
    """config/default.yaml lists every setting with exactly the default the code uses."""
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    documented = yaml.safe_load((CONFIG / "default.yaml").read_text())
    defaults = Settings().model_dump(mode="json")
    defaults["amqp_url"] = Settings().amqp_url.get_secret_value()
    defaults["aws_region"] = None
    assert documented == defaults


@pytest.mark.parametrize("name", ["default.yaml", "example.yaml"])
def test_config_files_load(monkeypatch, name):
    """Each shipped settings file loads through DISPATCHER_CONFIG."""
    monkeypatch.setenv("DISPATCHER_CONFIG", str(CONFIG / name))
    assert Settings().concurrency >= 1


def test_environment_overrides_the_file(monkeypatch, tmp_path):
    """DISPATCHER_* variables win over the file, and JSON values parse."""
    config = tmp_path / "c.yaml"
    config.write_text("concurrency: 7\nretry_delays: [1]\n")
    monkeypatch.setenv("DISPATCHER_CONFIG", str(config))
    monkeypatch.setenv("DISPATCHER_RETRY_DELAYS", "[1, 2, 3]")
    monkeypatch.setenv("DISPATCHER_RATE_LIMITS", '{"m2.StartBatchJob": {"rate": 9, "burst": 3}}')
    settings = Settings()
    assert settings.concurrency == 7
    assert settings.retry_delays == [1, 2, 3]
    assert settings.attempts == 4
    assert settings.rate_limit_for("m2.StartBatchJob").rate == 9


def test_rate_limits_fall_back_to_built_ins_then_default():
    """An unlisted operation gets its built-in limit; an explicit default replaces the built-ins."""
    assert (
        Settings().rate_limit_for("datazone.StartDataSourceRun").rate
        == BUILT_IN_RATE_LIMITS["datazone.StartDataSourceRun"]["rate"]
    )
    explicit = Settings(default_rate_limit={"rate": 50, "burst": 5})
    assert explicit.rate_limit_for("datazone.StartDataSourceRun").rate == 50


def test_unknown_setting_is_an_error(monkeypatch, tmp_path):
    """A misspelt key in the file fails loudly instead of being ignored."""
    config = tmp_path / "c.yaml"
    config.write_text("concurency: 7\n")
    monkeypatch.setenv("DISPATCHER_CONFIG", str(config))
    with pytest.raises(ValidationError):
        Settings()


def test_password_never_in_repr():
    """The broker URL is a secret: repr and str hide it."""
    settings = Settings(amqp_url="amqp://u:hunter2@h/")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)
