"""Sinks stored through the API: a process that builds its view from them hides every one of
their secrets in its logs, and registers them in one go (each registration recompiles the
pattern of every known secret: one per sink made a start with N stored sinks O(N^2))."""

from __future__ import annotations

import secrets as token_source

from gateway import redact
from gateway.integrations import store


def test_a_runtime_built_from_stored_sinks_hides_each_ones_secret_and_compiles_once(
        make_runtime, redis_url, tmp_path, monkeypatch) -> None:
    config = {"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data")},
              "delivery": {"allow_private_networks": True}}
    writer = make_runtime(config)
    given = [f"whsecstored{index}x{token_source.token_hex(12)}" for index in range(5)]
    for index, secret in enumerate(given):
        store.create(writer, {"name": f"crm{index}", "type": "generic_webhook", "url": "http://127.0.0.1:9/hook",
                              "events": ["ticket.created"], "secret": secret}, "tester")

    compiled: list[str] = []
    real_compile = redact.re.compile

    def counting_compile(pattern, *args, **kwargs):
        if any(secret in str(pattern) for secret in given):
            compiled.append(pattern)
        return real_compile(pattern, *args, **kwargs)

    monkeypatch.setattr(redact.re, "compile", counting_compile)
    # Forget what the writer's process registered, as a new process would start.
    monkeypatch.setattr(redact, "_known_secrets", set())
    monkeypatch.setattr(redact, "_known_pattern", None)
    reader = make_runtime(config)
    assert set(reader.integrations.configs) >= {f"crm{index}" for index in range(5)}
    for secret in given:
        assert secret not in redact.redact(f"signing with {secret} now")
    assert len(compiled) == 1
