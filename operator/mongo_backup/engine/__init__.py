"""Backup, restore and verify of MongoDB as streamed raw BSON. No Kubernetes in here.

Public entry points (all async):
    run_backup(client, storage, options, progress=None) -> BackupResult
    run_restore(client, storage, options, progress=None) -> RestoreResult
    verify_backup(storage, progress=None) -> VerifyResult
    list_backups(storage) -> list[BackupListing]
`storage` is the backup's own root (e.g. `open_storage(url).child(name)`), except for
`list_backups`, which takes the parent location.
"""
