"""Reading a Prometheus text exposition as a test would look at it: by metric name and labels."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, metric: str, /, **labels: str) -> float | None:
        """The value of the one sample of `name` whose labels include `labels` (None: absent)."""
        found = self.all(metric, **labels)
        if len(found) > 1:
            raise AssertionError(f"{metric} {labels}: {len(found)} samples match: {found}")
        return next(iter(found.values()), None)

    def all(self, metric: str, /, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {
            tuple(sorted(sample_labels.items())): value
            for sample_name, sample_labels, value in self.samples
            if sample_name == metric and _includes(sample_labels, labels)
        }

    def names_with(self, **labels: str) -> set[str]:
        """Names of every sample that carries `labels`."""
        return {name for name, sample_labels, _ in self.samples if _includes(sample_labels, labels)}


def scrape_url(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, response.status
        return Scrape(response.read().decode())


def _includes(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in wanted.items())
