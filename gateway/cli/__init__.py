"""The ``gateway`` command line (click): one module per group of commands.

serve (``run``, ``web``; the supervisor of ``run`` in :mod:`~gateway.cli.supervisor`),
worker, deliveries (``deliveries``, ``delivery show``, ``replay``), sinks (``sinks`` and its
subcommands, ``send-test``), audit,
info (``plugins``, ``events``, ``config check``, ``sign``), metrics (``metrics-server``) and
scaffold (``new-plugin``). Third-party plugins add commands through the
``register_commands(cli)`` hook; plugins are loaded the first time a command is looked up
that the core does not have (or when the commands are listed, as ``--help`` does), so a
plugin that fails to load is reported on stderr instead of breaking the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import click

from gateway import environment, logs
from gateway.cli import audit, deliveries, info, metrics, scaffold, serve, sinks, worker
from gateway.cli.context import PLUGINS_META, _load_plugins_safely, config_option

# -- the group ---------------------------------------------------------------------------------

class GatewayCLI(click.Group):
    """The ``gateway`` group: core commands, plus plugin commands added on first lookup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands_added = False
        self._adding_for: str | None = None

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if self._adding_for is not None and name in self.commands:
            # click would silently replace it: a plugin must not take over `run` or another plugin's command.
            click.echo(f"warning: plugin {self._adding_for} tried to add a command {name!r} that already "
                       "exists; ignored", err=True)
            return
        super().add_command(cmd, name)

    def add_plugin_commands(self) -> None:
        """Call every plugin's ``register_commands(cli=self)`` once. A plugin whose hook
        raises is reported and skipped; the others still add their commands."""
        if self._plugin_commands_added:
            return
        self._plugin_commands_added = True
        ctx = click.get_current_context(silent=True)
        plugins = ctx.meta.get(PLUGINS_META) if ctx is not None else None
        if plugins is None:
            plugins = _load_plugins_safely()
            if ctx is not None:
                ctx.meta[PLUGINS_META] = plugins
        for impl in plugins.pm.hook.register_commands.get_hookimpls():
            name = plugins.pm.get_name(impl.plugin)
            self._adding_for = name
            try:
                impl.function(cli=self)
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the CLI down
                click.echo(f"warning: plugin {name} could not add its commands: {type(exc).__name__}: {exc}",
                           err=True)
            finally:
                self._adding_for = None

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self.add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(cls=GatewayCLI, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@config_option
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", envvar=environment.LOG_FORMAT,
              show_default=True, help="Log lines as text or one JSON object per line (level: $GATEWAY_LOG_LEVEL).")
def cli(log_format: str) -> None:
    """Ticket event gateway: receive signed tickets, publish events, deliver them to sinks."""
    logs.configure(log_format, environment.log_level())
    os.environ[environment.LOG_FORMAT] = log_format  # processes that `gateway run` starts log the same way


for _command in (serve.run, serve.web, info.plugins_command, info.events_command, info.config_group, info.sign,
                 worker.worker_command, *deliveries.COMMANDS, *sinks.COMMANDS, *audit.COMMANDS,
                 metrics.metrics_server_command, scaffold.new_plugin_command):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``gateway``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="gateway")


if __name__ == "__main__":  # pragma: no cover
    main()
