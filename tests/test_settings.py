"""Settings: OLLAMA_HOST as Ollama reads it, precedence, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_gateway.settings import (
    Settings,
    SettingsError,
    TimeoutSettings,
    parse_ollama_host,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        (":1234", ("0.0.0.0", 1234)),  # empty host: every interface, as Ollama
        ("example.com", ("example.com", 11434)),
        ("http://[::1]:5", ("::1", 5)),
        ("https://h", ("h", 443)),
        ("http://h", ("h", 80)),
        ("https://h:8443", ("h", 8443)),
        ("[::1]", ("::1", 11434)),
        ("::1", ("::1", 11434)),
        ("[::]:11434", ("::", 11434)),
        ("http://example.com:8080/some/path", ("example.com", 8080)),
        ("  10.0.0.1  ", ("10.0.0.1", 11434)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_parse_ollama_host(value, expected):
    assert parse_ollama_host(value) == expected


@pytest.mark.parametrize("value", ["a:b", "h:99999", "http://h:-1", "1.2.3.4:12ab"])
def test_parse_ollama_host_rejects_bad_ports(value):
    with pytest.raises(SettingsError, match="^OLLAMA_HOST: invalid port"):
        parse_ollama_host(value)


def test_defaults_without_any_configuration():
    settings = Settings.load({})
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 11434)
    assert settings.log_level == "INFO"
    assert [b.name for b in settings.backends] == ["demo"]
    assert settings.backends[0].demo
    assert settings.uses_demo_only


def test_environment_is_read():
    env = {
        "OLLAMA_HOST": "0.0.0.0:8080",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_API_KEY": "sk-x",
        "LOG_LEVEL": "debug",
        "OLLAMA_KEEP_ALIVE": "10m",
        "OLLAMA_ORIGINS": "http://a.example, http://b.example",
    }
    settings = Settings.load(env)
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8080)
    assert settings.log_level == "DEBUG"
    [backend] = settings.backends
    assert (backend.name, backend.base_url, backend.api_key) == (
        "openai",
        "http://127.0.0.1:9/v1",
        "sk-x",
    )
    assert settings.server.default_keep_alive == "10m"
    assert settings.server.cors_origins == ["http://a.example", "http://b.example"]
    assert not settings.uses_demo_only


def test_ollama_variables_are_read_without_their_quotes():
    # Ollama's envconfig trims spaces and quotes around its variables (as
    # Windows' `setx` or a quoted unit file leaves them); these stopped the
    # start with "invalid port" and "invalid duration".
    env = {
        "OLLAMA_HOST": " '0.0.0.0:8080' ",
        "OLLAMA_KEEP_ALIVE": '"10m"',
        "OLLAMA_ORIGINS": "'http://a.example,http://b.example'",
    }
    settings = Settings.load(env)
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8080)
    assert settings.server.default_keep_alive == "10m"
    assert settings.server.cors_origins == ["http://a.example", "http://b.example"]


def test_api_keys_made_of_separators_stop_the_start(tmp_path: Path):
    # `OLLAMA_GATEWAY_API_KEYS="$KEY1,$KEY2"` with both unset replaced the
    # file's keys with none: authentication off, silently.
    config = tmp_path / "auth.toml"
    config.write_text('[auth]\napi_keys = ["from-the-file"]\n')
    env = {"OLLAMA_GATEWAY_CONFIG": str(config), "OLLAMA_GATEWAY_API_KEYS": " , "}
    assert _error(env) == (
        "OLLAMA_GATEWAY_API_KEYS: holds no key, only commas and spaces"
    )
    env["OLLAMA_GATEWAY_API_KEYS"] = ",k1,"
    assert Settings.load(env).auth.api_keys == ["k1"]


def test_flags_override_env_and_env_overrides_toml(tmp_path: Path):
    config = tmp_path / "g.toml"
    config.write_text('log_level = "ERROR"\n[server]\nhost = "10.1.1.1"\nport = 1000\n')
    env = {"OLLAMA_GATEWAY_CONFIG": str(config)}
    from_toml = Settings.load(env)
    assert (from_toml.server.host, from_toml.server.port) == ("10.1.1.1", 1000)
    assert from_toml.log_level == "ERROR"
    env |= {"OLLAMA_HOST": "10.2.2.2:2000", "LOG_LEVEL": "WARNING"}
    from_env = Settings.load(env)
    assert (from_env.server.host, from_env.server.port) == ("10.2.2.2", 2000)
    assert from_env.log_level == "WARNING"
    flagged = Settings.load(env, host="127.0.0.1", port=3000, log_level="debug")
    assert (flagged.server.host, flagged.server.port) == ("127.0.0.1", 3000)
    assert flagged.log_level == "DEBUG"


def test_config_flag_beats_the_variable(tmp_path: Path):
    flag = tmp_path / "flag.toml"
    flag.write_text("[server]\nport = 1111\n")
    env = {"OLLAMA_GATEWAY_CONFIG": str(tmp_path / "missing.toml")}
    assert Settings.load(env, config_path=str(flag)).server.port == 1111


def test_base_url_env_fills_a_configured_openai_backend(tmp_path: Path):
    config = tmp_path / "g.toml"
    config.write_text('[[backends]]\nname = "openai"\nmodels = ["gpt-4o"]\n')
    env = {"OLLAMA_GATEWAY_CONFIG": str(config), "OPENAI_BASE_URL": "https://x/v1"}
    [backend] = Settings.load(env).backends
    assert backend.base_url == "https://x/v1" and backend.models == ["gpt-4o"]


def test_toml_timeouts_and_models(tmp_path: Path):
    config = tmp_path / "g.toml"
    config.write_text(
        '[timeouts]\nfirst_token = 0.2\nidle = 5\n[models."gpt-4o"]\n'
        'capabilities = ["completion", "insert"]\n'
    )
    settings = Settings.load({"OLLAMA_GATEWAY_CONFIG": str(config)})
    assert settings.timeouts.first_token == 0.2 and settings.timeouts.idle == 5.0
    assert settings.models["gpt-4o"].capabilities == ["completion", "insert"]


def _error(env: dict[str, str], **kwargs: object) -> str:
    with pytest.raises(SettingsError) as info:
        Settings.load(env, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_log_level():
    assert _error({"LOG_LEVEL": "loud"}).startswith("LOG_LEVEL: 'loud'")


def test_a_bad_log_level_names_where_it_was_set(tmp_path: Path):
    # A file's bad level was reported as the variable LOG_LEVEL, unset.
    config = tmp_path / "level.toml"
    config.write_text('log_level = "LOUD"\n')
    env = {"OLLAMA_GATEWAY_CONFIG": str(config)}
    assert _error(env).startswith("log_level: 'LOUD' is not one of DEBUG, INFO")
    assert _error(env, log_level="x").startswith("--log-level: 'x'")


@pytest.mark.parametrize(
    "setting",
    [
        "timeouts.idle",
        "timeouts.connect",
        "server.shutdown_grace",
        "server.backlog",
        "server.busy_poll_us",
        "limits.max_messages",
        "limits.max_concurrent_upstream",
        "catalogue.ttl",
    ],
)
def test_a_negative_number_is_refused(tmp_path: Path, setting: str):
    # Taken as it was: a negative timeout fired at once, failing every
    # request; a negative cap refused every request with a puzzling message.
    section, name = setting.split(".")
    config = tmp_path / "neg.toml"
    config.write_text(f"[{section}]\n{name} = -1\n")
    message = _error({"OLLAMA_GATEWAY_CONFIG": str(config)})
    assert message == f"{setting}: must be 0 or more, not -1"


def test_a_busy_poll_longer_than_a_millisecond_is_refused(tmp_path: Path):
    # With so long a spin every wait counts as short: the loop would never sleep.
    config = tmp_path / "spin.toml"
    config.write_text("[server]\nbusy_poll_us = 1001\n")
    message = _error({"OLLAMA_GATEWAY_CONFIG": str(config)})
    assert message == "server.busy_poll_us: at most 1000, not 1001"
    config.write_text("[server]\nbusy_poll_us = 1000\n")
    assert (
        Settings.load({"OLLAMA_GATEWAY_CONFIG": str(config)}).server.busy_poll_us
        == 1000
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1/v1", "Invalid IPv6 URL"),
        ("http://127.0.0.1:99999/v1", "Port out of range 0-65535"),
        ("http://user:secret@host:12a/v1", "Port could not be cast"),
        ("http:///v1", "it names no host"),
        ("http://host:0/v1", "port 0"),
        ("http://exa mple.com/v1", "it contains a space"),
    ],
)
def test_a_base_url_the_transport_cannot_use_stops_the_start(url: str, why: str):
    # It started, then failed every request with the URL, credentials and
    # all, in each error body and warning.
    message = _error({"OPENAI_BASE_URL": url})
    assert message.startswith("backends.openai.OPENAI_BASE_URL: not a valid URL: ")
    assert why in message
    assert "secret" not in message


def test_bad_base_url():
    message = _error({"OPENAI_BASE_URL": "ftp://x"})
    assert "OPENAI_BASE_URL" in message and "http://" in message


def test_bad_ollama_host():
    assert _error({"OLLAMA_HOST": "a:b"}).startswith("OLLAMA_HOST: ")


def test_missing_config_file_names_its_source(tmp_path: Path):
    missing = str(tmp_path / "nope.toml")
    assert _error({"OLLAMA_GATEWAY_CONFIG": missing}).startswith(
        "OLLAMA_GATEWAY_CONFIG: no such file"
    )
    assert _error({}, config_path=missing).startswith("--config: no such file")


def test_a_file_not_in_utf_8_is_named_not_a_traceback(tmp_path: Path):
    config = tmp_path / "latin1.toml"
    config.write_bytes('[server]\nenvironment = "café"\n'.encode("latin-1"))
    message = _error({}, config_path=str(config))
    assert message == (
        f"--config: {config}: not UTF-8, as TOML must be (byte 0xe9 at offset 27)"
    )


def test_a_byte_order_mark_is_skipped(tmp_path: Path):
    # As some Windows editors save UTF-8; tomllib alone refused the first line.
    config = tmp_path / "bom.toml"
    config.write_bytes('[server]\nenvironment = "café"\n'.encode("utf-8-sig"))
    settings = Settings.load({}, config_path=str(config))
    assert settings.server.environment == "café"


def test_toml_syntax_error(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text("x = [\n")
    message = _error({"OLLAMA_GATEWAY_CONFIG": str(config)})
    assert message.startswith(f"OLLAMA_GATEWAY_CONFIG: {config}: ")


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[server]\nbogus = 1\n", "bogus"),
        ("bogus = 1\n", "bogus"),
        ("[timeouts]\nfirst_tokn = 1\n", "first_tokn"),
        ("[server]\nport = 'x'\n", "server.port"),
        ("[timeouts]\nidle = 'soon'\n", "timeouts.idle"),
    ],
)
def test_toml_unknown_keys_and_wrong_types(tmp_path: Path, toml, named):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    message = _error({"OLLAMA_GATEWAY_CONFIG": str(config)})
    assert message.startswith("invalid setting: ")
    assert named in message


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[server]\nport = 70000\n", "server.port"),
        ("[server]\nollama_version = '0.5.0'\n", "server.ollama_version"),
        ("[server]\nollama_version = 'latest'\n", "server.ollama_version"),
    ],
)
def test_out_of_range_values(tmp_path: Path, toml, named):
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    assert _error({"OLLAMA_GATEWAY_CONFIG": str(config)}).startswith(named)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[models.m]\ncapabilities = ["completion", "tool"]\n',
            "models.m.capabilities: 'tool' is not one of completion, tools, ",
        ),
        (
            '[models.m]\ntarget = "gpt-4o"\nbackend = "vlm"\n',
            "models.m.backend: no backend is named 'vlm' (backends: openai)",
        ),
    ],
)
def test_a_typo_in_a_model_table_stops_the_start(tmp_path: Path, toml, message):
    # Both did silently nothing: "tool" was reported as written, which no
    # client reads (and tools were refused), and the alias was "not found".
    config = tmp_path / "models.toml"
    config.write_text(toml)
    env = {"OLLAMA_GATEWAY_CONFIG": str(config), "OPENAI_BASE_URL": "http://h/v1"}
    assert _error(env).startswith(message)
    config.write_text('[models.m]\nbackend = "openai"\ncapabilities = ["tools"]\n')
    assert Settings.load(env).models["m"].backend == "openai"


def test_a_bad_keep_alive_default_names_where_it_was_set(tmp_path: Path):
    # A file's bad value was reported as the variable OLLAMA_KEEP_ALIVE.
    message = _error({"OLLAMA_KEEP_ALIVE": "10x"})
    assert message.startswith("OLLAMA_KEEP_ALIVE: time: unknown unit")
    config = tmp_path / "keep.toml"
    config.write_text('[server]\ndefault_keep_alive = "xyz"\n')
    message = _error({"OLLAMA_GATEWAY_CONFIG": str(config)})
    assert message == 'server.default_keep_alive: time: invalid duration "xyz"'


def test_credentials_in_the_url_and_an_api_key_are_refused():
    env = {"OPENAI_BASE_URL": "https://user:pw@example.com/v1", "OPENAI_API_KEY": "k"}
    with pytest.raises(
        SettingsError, match="backends.openai.base_url: has credentials"
    ):
        Settings.load(env)
    alone = Settings.load({"OPENAI_BASE_URL": "https://user:pw@example.com/v1"})
    assert alone.backends[0].base_url == "https://user:pw@example.com/v1"


@pytest.mark.parametrize(
    ("first_token", "total", "expected"),
    [(600, 0, 600), (600, 5, 5), (5, 600, 5), (0, 7, 7), (0, 0, None)],
)
def test_the_wait_for_an_answer_to_start_is_bounded_by_total_too(
    first_token, total, expected
):
    timeouts = TimeoutSettings(first_token=first_token, total=total)
    assert timeouts.first_wait == expected
