"""Tests for spark.session: clear errors when Java or pyspark is missing; settings parsed."""

from __future__ import annotations

import sys

import pytest

from churnguard.cli import main
from churnguard.spark.session import SparkUnavailableError, check_spark, parse_conf


def test_missing_java_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java here
    with pytest.raises(SparkUnavailableError, match="openjdk-17-jre-headless") as caught:
        check_spark()
    assert "scripts/java.sh" in str(caught.value) and "JAVA_HOME" in str(caught.value)


def test_missing_pyspark_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import fails as if not installed
    with pytest.raises(SparkUnavailableError, match=r"churnguard\[spark\]"):
        check_spark()


def test_spark_settings_are_key_value_pairs() -> None:
    assert parse_conf(["spark.executor.memory=4g", " a = b=c "]) == {
        "spark.executor.memory": "4g",
        "a": "b=c",
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_conf(["spark.executor.memory"])


def test_scoring_on_spark_needs_an_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--engine", "spark", "--data", "crm/"]) == 2
    assert "--engine spark needs --out" in capsys.readouterr().err
