"""Settings come from DAGSTER_SLURM_* variables; bad values name the variable."""

import os
from pathlib import Path

import pytest

from dagster_slurm_launcher import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DAGSTER_SLURM_"):
            monkeypatch.delenv(name)


def test_settings_are_read_from_dagster_slurm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_HOST", "login1")
    monkeypatch.setenv("DAGSTER_SLURM_PORT", "2222")
    monkeypatch.setenv("DAGSTER_SLURM_KEY_FILE", "/keys/id")
    monkeypatch.setenv("DAGSTER_SLURM_POLL_INTERVAL", "2.5")
    settings = load_settings()
    assert (settings.host, settings.port, settings.key_file, settings.poll_interval) == (
        "login1",
        2222,
        Path("/keys/id"),
        2.5,
    )
    assert settings.ssh_control_dir == Path("~/.ssh/dagster-slurm")


def test_explicit_values_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_HOST", "login1")
    assert load_settings(host="login2").host == "login2"


def test_an_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_HOST", "login1")
    monkeypatch.setenv("DAGSTER_SLURM_PORT", "twenty-two")
    with pytest.raises(SettingsError, match=r"DAGSTER_SLURM_PORT.*twenty-two"):
        load_settings()


def test_an_unknown_transport_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_TRANSPORT", "rsh")
    with pytest.raises(SettingsError, match=r"DAGSTER_SLURM_TRANSPORT.*'ssh', 'openssh' or 'local'"):
        load_settings()


def test_ssh_transport_requires_a_host() -> None:
    with pytest.raises(SettingsError, match="DAGSTER_SLURM_HOST is required"):
        load_settings()


def test_local_transport_needs_no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_TRANSPORT", "local")
    assert load_settings().host is None


def test_the_password_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_HOST", "login1")
    monkeypatch.setenv("DAGSTER_SLURM_PASSWORD", "hunter2")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert settings.password is not None and settings.password.get_secret_value() == "hunter2"


def test_the_poll_interval_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_HOST", "login1")
    monkeypatch.setenv("DAGSTER_SLURM_POLL_INTERVAL", "0")
    with pytest.raises(SettingsError, match="DAGSTER_SLURM_POLL_INTERVAL"):
        load_settings()


def test_the_openssh_transport_requires_the_master_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_SLURM_TRANSPORT", "openssh")
    monkeypatch.setenv("DAGSTER_SLURM_HOST", "login.example.org")
    with pytest.raises(SettingsError, match=r"DAGSTER_SLURM_CONTROL_PATH is required .*`ssh -fNM -S"):
        load_settings()
