"""Integrations managed at runtime: the sinks API's store, its audit log and the receive secret.

Sinks come from the config file (read-only while the gateway runs) and from this store in
Redis, written by ``/api/sinks`` and ``gateway sinks add|edit|rm|...``. Every change is
validated as a ``[[sinks]]`` table would be (same schemas, same messages), written with its
audit entry and a bump of the integrations version in one MULTI/EXEC, and answered only
then; every process routes by the new version from the next publish on (see
:mod:`gateway.runtime`).

* :mod:`~gateway.integrations.store`: create, edit, enable/disable, delete (its waiting
  deliveries cancelled), rotate a sink's secret;
* :mod:`~gateway.integrations.validation`: the checks, including the SSRF policy at save time;
* :mod:`~gateway.integrations.secrets`: generated secrets;
* :mod:`~gateway.integrations.receive_secret`: the receive endpoint's secret and its rotation;
* :mod:`~gateway.integrations.audit`: who changed what, secrets never in it;
* :mod:`~gateway.integrations.export`: the stored sinks as TOML, secrets as ``${ENV}``.
"""
