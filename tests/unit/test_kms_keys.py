"""--kms-key names a key of AWS KMS, Google Cloud KMS (gcp-kms://) or Azure Key Vault
(azure-kv://); a malformed one is refused with one line naming it, before any KMS call."""

from __future__ import annotations

import pytest

from mongo_backup.cli import kms_key
from mongo_backup.engine.azure_keyvault import AzureKeyVaultKey
from mongo_backup.engine.errors import InvalidInput, UsageError
from mongo_backup.engine.gcp_kms import GcpKmsKey
from mongo_backup.engine.kms import AwsKmsKey

GCP_KEY = "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k"


def test_each_kind_of_kms_key_is_recognised() -> None:
    gcp = kms_key(f"gcp-kms://{GCP_KEY}")
    assert isinstance(gcp, GcpKmsKey) and gcp.key_name == GCP_KEY and gcp.source == f"gcp-kms:{GCP_KEY}"
    azure = kms_key("azure-kv://v.vault.azure.net/keys/backups")
    assert isinstance(azure, AzureKeyVaultKey) and azure.key_url == "https://v.vault.azure.net/keys/backups"
    for aws in ("alias/backups", "arn:aws:kms:eu-west-1:111122223333:key/1234abcd", "1234abcd-12ab"):
        assert isinstance(kms_key(aws), AwsKmsKey)
    # the fingerprint names the key as given, and differs between kinds' keys
    assert len({gcp.fingerprint, azure.fingerprint, kms_key("alias/backups").fingerprint}) == 3


@pytest.mark.parametrize(
    ("text", "error", "named"),
    [
        ("gcp-kms://projects/p/keyRings/r", InvalidInput, "projects/p/keyRings/r"),
        ("azure-kv://v.vault.azure.net/secrets/s", InvalidInput, "https://v.vault.azure.net/secrets/s"),
        ("gcs://bucket/key", UsageError, "gcs://bucket/key"),
    ],
)
def test_a_malformed_key_is_refused_naming_it(text: str, error: type[Exception], named: str) -> None:
    with pytest.raises(error, match=named) as caught:
        kms_key(text)
    assert "\n" not in str(caught.value)
