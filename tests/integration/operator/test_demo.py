"""`make demo` (mongo_backup_demo) runs the examples end to end and says the data came back identical."""

from __future__ import annotations

from pathlib import Path

import pytest

from mongo_backup_demo.demo import run_demo


def test_demo_backs_up_and_restores_the_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "shop-backup" in out and "shop-restore" in out
    assert "data: shop -> shop_restored: 3 collections, 4200 documents, identical" in out
    assert (tmp_path / "backups" / "shop-backup" / "manifest.json").is_file()
    # the schedule: its immediate backup, then the next run, and retention deleted the first
    assert "applied examples/schedule.yaml" in out and "retention deleted shop-nightly-" in out
    scheduled = sorted(p.name for p in (tmp_path / "backups").glob("shop-nightly-*") if any(p.iterdir()))
    assert len(scheduled) == 1 and (tmp_path / "backups" / scheduled[0] / "manifest.json").is_file()
