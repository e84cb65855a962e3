"""Secret references resolve from the environment without a value ever reaching a repr or a message."""

from __future__ import annotations

import logging

import pytest

from metric_platform.errors import InvalidRequestError, SourceError
from metric_platform.secrets import (
    EnvSecretsProvider,
    ISecretsProvider,
    SecretNotSetError,
    SecretRef,
    SecretValues,
)

VALUE = "s3cr3t-v4lue"


def test_resolves_refs_by_name_from_the_environment() -> None:
    provider = EnvSecretsProvider(environ={"DB_PASSWORD": VALUE, "API_TOKEN": "tok"})
    values = provider.resolve(
        [SecretRef("DB_PASSWORD"), SecretRef("API_TOKEN")], tenant_id="t1", environment_id="prod"
    )
    assert values == {"DB_PASSWORD": VALUE, "API_TOKEN": "tok"}


def test_reads_the_process_environment_at_resolve_time(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = EnvSecretsProvider()
    monkeypatch.setenv("MP_TEST_SECRET_LATE", VALUE)
    assert provider.resolve([SecretRef("MP_TEST_SECRET_LATE")], tenant_id="t", environment_id="e") == {
        "MP_TEST_SECRET_LATE": VALUE
    }


def test_a_tenant_prefix_selects_the_tenants_variables() -> None:
    environ = {"ACME_DB_PASSWORD": "acme-pw", "GLOBEX_DB_PASSWORD": "globex-pw", "DB_PASSWORD": "shared"}
    provider = EnvSecretsProvider(prefixes={"acme": "ACME_", "globex": "GLOBEX_"}, environ=environ)
    ref = SecretRef("DB_PASSWORD")
    assert provider.resolve([ref], tenant_id="acme", environment_id="e") == {"DB_PASSWORD": "acme-pw"}
    assert provider.resolve([ref], tenant_id="globex", environment_id="e") == {"DB_PASSWORD": "globex-pw"}


def test_an_unmapped_tenant_is_refused_once_prefixes_are_configured() -> None:
    provider = EnvSecretsProvider(prefixes={"acme": "ACME_"}, environ={"DB_PASSWORD": "shared"})
    with pytest.raises(SecretNotSetError, match=r"tenant 'initech' has no secret prefix.*acme"):
        provider.resolve([SecretRef("DB_PASSWORD")], tenant_id="initech", environment_id="e")


def test_unset_and_empty_variables_are_all_named_with_how_to_set_them() -> None:
    provider = EnvSecretsProvider(prefixes={"acme": "ACME_"}, environ={"ACME_EMPTY": "", "ACME_OK": VALUE})
    refs = [SecretRef("MISSING"), SecretRef("EMPTY"), SecretRef("OK"), SecretRef("MISSING")]
    with pytest.raises(SecretNotSetError) as caught:
        provider.resolve(refs, tenant_id="acme", environment_id="staging")
    message = str(caught.value)
    assert "ACME_MISSING, ACME_EMPTY unset or empty" in message
    assert "'acme'" in message and "'staging'" in message
    assert "export ACME_MISSING=" in message
    assert VALUE not in message
    assert isinstance(caught.value, SourceError)


@pytest.mark.parametrize("name", ["1ABC", "A-B", "", "A B", "ÄBC"])
def test_invalid_names_are_rejected_when_the_ref_is_made(name: str) -> None:
    with pytest.raises(InvalidRequestError, match="use letters, digits and underscores"):
        SecretRef(name)


def test_lower_case_variable_names_are_valid_refs() -> None:
    assert SecretRef("retail_pg_url").name == "retail_pg_url"


def test_invalid_prefixes_and_providers_are_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="prefix 'acme-'"):
        EnvSecretsProvider(prefixes={"acme": "acme-"})
    with pytest.raises(InvalidRequestError, match="names no provider"):
        SecretRef("X", provider="")
    with pytest.raises(InvalidRequestError, match="refs use vault"):
        EnvSecretsProvider(environ={"X": "1"}).resolve(
            [SecretRef("X"), SecretRef("Y", provider="vault")], tenant_id="t", environment_id="e"
        )


def test_values_never_appear_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    provider: ISecretsProvider = EnvSecretsProvider(environ={"DB_PASSWORD": VALUE})
    with caplog.at_level(logging.DEBUG):
        values = provider.resolve([SecretRef("DB_PASSWORD")], tenant_id="t", environment_id="e")
    assert isinstance(values, SecretValues)
    for text in (repr(values), str(values), f"{values}", f"{values!r}", repr(values.copy()), repr([values])):
        assert VALUE not in text
        assert "DB_PASSWORD" in text
    assert values["DB_PASSWORD"] == VALUE
    assert VALUE not in caplog.text
    assert repr(SecretRef("DB_PASSWORD")) == "SecretRef(name='DB_PASSWORD', provider='env')"
