"""The envelope of an encrypted backup: a fresh data key per backup, wrapped by the user's
key-encryption key (KEK); on read, the KEK unwraps it and the manifest's MAC is checked,
all before anything else of the backup is read or any target is touched."""

from __future__ import annotations

import base64

from .encryption import SCHEME, SEGMENT_SIZE, BackupKeys, KeyEncryptionKey, new_backup_id, new_data_key
from .errors import EncryptionExpected, KeyRequired, KmsError, WrongKey
from .manifest import BackupManifest, EncryptionInfo, KeyInfo, check_authentication


def _context(backup_id: str) -> bytes:
    # the wrapped key opens only as this backup's key: a wrapped key copied into another
    # manifest does not unwrap there
    return b"mongo-backup data key\x00" + backup_id.encode()


def seal_new_backup(kek: KeyEncryptionKey) -> tuple[EncryptionInfo, BackupKeys]:
    """A new backup's keys and what its manifest records of them (only the wrapped key).
    Blocking (a KMS call): run it in a thread."""
    backup_id = new_backup_id()
    data_key = new_data_key()
    wrapped = kek.wrap(data_key, backup_id)
    info = EncryptionInfo(
        scheme=SCHEME,
        segment_size=SEGMENT_SIZE,
        backup_id=backup_id,
        key=KeyInfo(kind=kek.kind, fingerprint=kek.fingerprint, source=kek.source),
        wrapped_key=base64.b64encode(wrapped).decode(),
    )
    return info, BackupKeys.from_data_key(data_key, backup_id)


def open_backup(
    manifest: BackupManifest, raw: bytes, kek: KeyEncryptionKey | None, where: str
) -> BackupKeys | None:
    """The keys of the backup whose manifest is `raw` (None: a plain backup), its manifest
    authenticated. KeyRequired without a key, WrongKey (naming the backup and both
    fingerprints) with another one, ManifestTampered if the manifest was edited,
    EncryptionExpected when a key is given for a plain backup. Blocking (a KMS call): run
    it in a thread."""
    info = manifest.encryption
    if info is None:
        if kek is not None:
            raise EncryptionExpected(
                f"{where}: the backup is not encrypted, but a key ({kek.fingerprint}) was given: "
                "a plain backup where an encrypted one was expected is refused (remove the key to "
                "read it)"
            )
        return None
    recorded = f"key {info.key.fingerprint} ({info.key.kind}, {info.key.source})"
    if kek is None:
        raise KeyRequired(f"{where}: the backup is encrypted with {recorded}: give that key to read it")
    if kek.kind != info.key.kind or (kek.kind == "local" and kek.fingerprint != info.key.fingerprint):
        raise WrongKey(
            f"{where}: the backup is encrypted with {recorded}, not with the key given "
            f"({kek.fingerprint}, {kek.kind})"
        )
    try:
        data_key = kek.unwrap(base64.b64decode(info.wrapped_key), info.backup_id)
    except WrongKey:
        raise WrongKey(
            f"{where}: the key given ({kek.fingerprint}) does not open the data key of this backup, "
            f"which was encrypted with {recorded}"
        ) from None
    except KmsError as exc:  # e.g. access denied: maybe another key, maybe a missing permission
        raise type(exc)(f"{where}: the backup was encrypted with {recorded}; {exc}") from None
    keys = BackupKeys.from_data_key(data_key, info.backup_id)
    check_authentication(manifest, raw, keys, where)
    return keys
