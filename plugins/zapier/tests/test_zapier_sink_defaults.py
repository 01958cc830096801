"""A Zapier sink built from options that leave ``enabled`` and ``create_tickets`` out is
enabled and lets its keys create tickets: both default to true, as documented in
docs/zapier.md (the config loader fills them in; a plugin or tool that builds the sink with
the factory the core uses, ``factory(name, options, context)``, may not)."""

from gateway_zapier.sink import ZapierSink

KEY = {"label": "zaps", "key": "zapier-api-key-0123456789-abcdef"}


def test_left_out_enabled_and_create_tickets_default_to_true(make_runtime):
    runtime = make_runtime({"sinks": [{"name": "zapier", "type": "zapier", "events": ["*"], "api_keys": [KEY]}]})
    loaded = runtime.sinks["zapier"]
    assert loaded.enabled and loaded.creates_tickets  # as the config loader fills them in

    bare = ZapierSink("zapier", {"type": "zapier", "events": ["*"], "api_keys": [KEY]}, loaded.context)
    assert bare.enabled is True
    assert bare.creates_tickets is True


def test_set_to_false_they_are_false(make_runtime):
    runtime = make_runtime({"sinks": [{"name": "zapier", "type": "zapier", "events": ["*"], "api_keys": [KEY],
                                       "enabled": False, "create_tickets": False}]})
    sink = runtime.sinks["zapier"]
    assert sink.enabled is False and sink.creates_tickets is False
