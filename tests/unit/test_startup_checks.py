"""Start-up warnings: bearer tokens without TLS, and --insecure, are logged at WARNING."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgeq_server.app import ServerConfig
from edgeq_server.startup_checks import insecure_settings, warn_insecure_settings


def test_tokens_without_tls_are_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = ServerConfig(store=tmp_path, host="0.0.0.0", port=8001, token_file=Path("/etc/edgeq/tokens"))
    with caplog.at_level(logging.WARNING, logger="edgeq.server"):
        assert warn_insecure_settings(config) == [
            "bearer tokens from /etc/edgeq/tokens travel in clear text: 0.0.0.0:8001 has no TLS (--tls-cert/--tls-key), "
            "so anyone who can see the traffic can read and reuse them"]
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_insecure_is_a_warning_that_says_what_it_exposes(tmp_path: Path) -> None:
    open_server = ServerConfig(store=tmp_path, host="0.0.0.0", port=8001, insecure=True)
    assert insecure_settings(open_server) == [
        "--insecure: 0.0.0.0:8001 accepts every caller without TLS or tokens: anyone who can reach it can upload "
        "models, run jobs and delete versions"]
    with_tokens = ServerConfig(store=tmp_path, host="0.0.0.0", port=8001, insecure=True, token_file=Path("t"))
    assert len(insecure_settings(with_tokens)) == 2
    assert insecure_settings(with_tokens)[1] == ("--insecure: 0.0.0.0:8001 accepts plaintext connections; requests "
                                                 "and answers are not encrypted")
    with_tls = ServerConfig(store=tmp_path, insecure=True, tls_cert=Path("c.pem"), tls_key=Path("k.pem"))
    assert insecure_settings(with_tls) == ["--insecure is set but has no effect: TLS is on"]


def test_safe_settings_are_quiet(tmp_path: Path) -> None:
    assert insecure_settings(ServerConfig(store=tmp_path)) == []
    assert insecure_settings(ServerConfig(store=tmp_path, host="0.0.0.0", token_file=Path("t"),
                                          tls_cert=Path("c.pem"), tls_key=Path("k.pem"))) == []
