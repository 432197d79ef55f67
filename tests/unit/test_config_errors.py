"""Configuration mistakes end in one sentence naming the variable or file, never pydantic's internals."""

from __future__ import annotations

import pytest

from dispatcher.settings import ConfigError, Settings, load_settings


def refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The sentence `load_settings` refuses this environment with."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert "\n" not in text
    assert "EnvSettingsSource" not in text
    assert "error parsing value" not in text
    return text


def test_missing_config_file_is_refused(monkeypatch, tmp_path):
    """A DISPATCHER_CONFIG naming no file does not run on defaults."""
    missing = tmp_path / "nope.yaml"
    assert refusal(monkeypatch, DISPATCHER_CONFIG=str(missing)) == f"DISPATCHER_CONFIG={missing}: no such file"


def test_directory_as_config_file_is_refused(monkeypatch, tmp_path):
    """A directory is not a config file."""
    assert "not a file" in refusal(monkeypatch, DISPATCHER_CONFIG=str(tmp_path))


def test_unknown_variable_suggests_the_closest_setting(monkeypatch):
    """A misspelt DISPATCHER_* variable is an error with the name it probably meant."""
    text = refusal(monkeypatch, DISPATCHER_CONCURENCY="4")
    assert text == "DISPATCHER_CONCURENCY is not a setting; did you mean DISPATCHER_CONCURRENCY?"


def test_variables_read_elsewhere_are_not_unknown(monkeypatch):
    """DISPATCHER_CONFIG and the dlq progress interval are known names."""
    monkeypatch.setenv("DISPATCHER_DLQ_PROGRESS_EVERY_S", "5")
    assert load_settings().concurrency >= 1


def test_rate_limit_for_no_operation_is_refused(monkeypatch):
    """A rate limit whose key is no routing key would never apply."""
    text = refusal(monkeypatch, DISPATCHER_RATE_LIMITS='{"s3.PutObject": {"rate": 1, "burst": 1}}')
    assert text.startswith("DISPATCHER_RATE_LIMITS: 's3.PutObject' names no operation")
    assert "m2.StartBatchJob" in text


def test_misspelt_operation_in_a_file_gets_a_suggestion(monkeypatch, tmp_path):
    """In a file, the error names the file and the key, and suggests the operation meant."""
    config = tmp_path / "c.yaml"
    config.write_text("rate_limits:\n  m2.StartBatchJbo: {rate: 1, burst: 1}\n")
    text = refusal(monkeypatch, DISPATCHER_CONFIG=str(config))
    assert text.startswith(f"{config}: rate_limits: ")
    assert "did you mean m2.StartBatchJob?" in text


def test_lists_and_maps_as_people_type_them(monkeypatch):
    """Comma-separated lists and rate/burst maps are read, as well as JSON."""
    monkeypatch.setenv("DISPATCHER_RETRY_DELAYS", "1,2,5")
    monkeypatch.setenv("DISPATCHER_AWS_REGIONS", "us-east-1, eu-west-1")
    monkeypatch.setenv("DISPATCHER_RATE_LIMITS", "m2.StartBatchJob=5/10,datazone.StartDataSourceRun=2/4")
    monkeypatch.setenv("DISPATCHER_DEFAULT_RATE_LIMIT", "3/6")
    settings = load_settings()
    assert settings.retry_delays == [1, 2, 5]
    assert settings.aws_regions == ["us-east-1", "eu-west-1"]
    assert settings.rate_limit_for("m2.StartBatchJob").burst == 10
    assert settings.rate_limit_for("datazone.StartDataSourceRun").rate == 2
    assert settings.default_rate_limit.rate == 3


def test_json_lists_still_work(monkeypatch):
    """JSON stays accepted."""
    monkeypatch.setenv("DISPATCHER_AWS_REGIONS", '["eu-west-1"]')
    assert load_settings().aws_regions == ["eu-west-1"]


@pytest.mark.parametrize(
    ("name", "value", "example"),
    [
        ("DISPATCHER_RETRY_DELAYS", "1,x", "DISPATCHER_RETRY_DELAYS=1,5,30"),
        ("DISPATCHER_RETRY_DELAYS", "[1,", "DISPATCHER_RETRY_DELAYS=1,5,30"),
        ("DISPATCHER_RATE_LIMITS", "m2.StartBatchJob", "DISPATCHER_RATE_LIMITS=m2.StartBatchJob=5/10"),
        ("DISPATCHER_DEFAULT_RATE_LIMIT", "fast", "DISPATCHER_DEFAULT_RATE_LIMIT=5/10"),
    ],
)
def test_bad_list_or_map_names_the_variable_and_shows_an_example(monkeypatch, name, value, example):
    """The error says which variable and how it is written."""
    text = refusal(monkeypatch, **{name: value})
    assert text.startswith(f"{name}")
    assert f"e.g. {example}" in text


@pytest.mark.parametrize(
    ("suffix", "text", "line"),
    [
        (".yaml", "concurrency: 4\nretry_delays: [1, 2\nlog_level: info\n", 3),
        (".json", '{\n  "concurrency": 4,\n  "retry_delays": [1, 2,]\n}\n', 3),
        (".toml", "concurrency = 4\n\nretry_delays = = 1\n", 3),
        (".toml", "concurrency = 4\nretry_delays = [1, 2\n", 2),
    ],
)
def test_config_syntax_error_names_file_and_line(monkeypatch, tmp_path, suffix, text, line):
    """A syntax error in the file is one sentence with the file and the line."""
    config = tmp_path / f"c{suffix}"
    config.write_text(text)
    sentence = refusal(monkeypatch, DISPATCHER_CONFIG=str(config))
    assert sentence.startswith(str(config))
    assert f"line {line}" in sentence


def test_toml_file_loads(monkeypatch, tmp_path):
    """A .toml file is read as TOML."""
    config = tmp_path / "c.toml"
    config.write_text('concurrency = 5\naws_regions = ["eu-west-1"]\n')
    monkeypatch.setenv("DISPATCHER_CONFIG", str(config))
    assert load_settings().concurrency == 5


def test_http_broker_url_is_refused(monkeypatch):
    """An http:// URL for the broker gets one clear sentence, not aiormq's internals."""
    text = refusal(monkeypatch, DISPATCHER_AMQP_URL="http://guest:guest@localhost:15672/")
    assert text.startswith("DISPATCHER_AMQP_URL: http:// is not a broker URL: use amqp:// or amqps://")


@pytest.mark.parametrize("field", ["amqp_url", "redis_url"])
def test_cut_password_is_refused_by_the_settings_themselves(field):
    """The worker gets the percent-encoding check however it is started, not only through the CLI."""
    scheme = "amqp" if field == "amqp_url" else "redis"
    with pytest.raises(ValueError, match="must be percent-encoded") as caught:
        Settings(**{field: f"{scheme}://u:Kq7#Zx9@h:1/"})
    assert "Zx9" not in str(caught.value)
