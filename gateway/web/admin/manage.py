"""Settings → Integrations, the changes: add an integration (pick a type, then its generated
form), edit it, disable / enable, delete, rotate its secret.

Every change goes through :mod:`gateway.integrations.store`, the functions ``/api/sinks``
and the CLI use: the same validation (a 422's ``fields`` are shown next to their inputs),
the same audit entries, the same secrets generated and shown once. A secret is only ever in
the answer to the POST that made it (``Cache-Control: no-store``, never in the session
cookie, which is signed but readable).
"""

from __future__ import annotations

import time
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.delivery import delivery_log
from gateway.digits import is_ascii_digits
from gateway.errors import ApiError
from gateway.integrations import store
from gateway.sinks import SinkType
from gateway.web.admin import sink_form, snippets, tryout
from gateway.web.admin.blueprint import bp, runtime
from gateway.web.auth import current_actor

Page = str | tuple[str, int]
OVERLAPS = (("", "24 hours (the default)"), ("3600", "1 hour"), ("604800", "7 days"),
            ("0", "Stop at once (the secret leaked)"))


def sink_types() -> list[SinkType]:
    """Every installed sink type, by name."""
    return sorted(runtime().plugins.sink_types.values(), key=lambda t: t.name)


def _type_or_404(name: str) -> SinkType:
    found = runtime().plugins.sink_types.get(name)
    if found is None:
        abort(404, description="No sink type of that name is installed. Pick one from the list.")
    return found


def _catalogue() -> list[Any]:
    return list(runtime().plugins.catalog)


def _inputs(sink_type: SinkType) -> sink_form.Inputs:
    return sink_form.Inputs(sink_form.option_inputs(sink_type), sink_form.filter_input(),
                            sink_form.advanced_inputs(runtime().settings.delivery, sink_type))


def _render_form(sink_type: SinkType, inputs: sink_form.Inputs, *,
                 editing: str | None = None, values: dict[str, Any] | None = None,
                 errors: dict[str, list[str]] | None = None, etag: str = "", status: int = 200,
                 trial: tryout.Trial | None = None) -> Page:
    shown_type = sink_type.name.replace("_", " ").capitalize()
    form = request.form if request.method == "POST" else None
    page = render_template("admin/integration_form.html",
                           title=f"Edit {editing}" if editing else f"Add a {shown_type} integration",
                           sink_type=sink_type, options=inputs.options, filter_item=inputs.filter,
                           advanced=inputs.advanced, event_types=_catalogue(),
                           editing=editing, values=values or {}, errors=errors or {}, etag=etag,
                           advanced_open=any(i.errors for i in inputs.advanced),
                           sample=tryout.sample_shown(runtime(), form, editing, (values or {}).get("events"), trial),
                           trial=trial)
    return (page, status) if status != 200 else page


def _try(sink_type: SinkType, inputs: sink_form.Inputs, values: dict[str, Any], editing: str | None = None
         ) -> Page:
    """A "Test filter", "Preview" or "Load sample" button pressed without the script: the form
    again as the admin left it, with the answer under the button (nothing is saved)."""
    sink_form.keep_sent(inputs.all, request.form)
    templates = [item.name for item in inputs.options if item.kind == "template"]
    trial = tryout.run(runtime(), request.form, templates, editing)
    return _render_form(sink_type, inputs, editing=editing, values=values, etag=request.form.get("etag", ""),
                        trial=trial)


def _table_from(form: Any, inputs: list[sink_form.Input]) -> dict[str, Any]:
    """The ``[[sinks]]`` keys the inputs stand for (None: left blank)."""
    return {item.name: sink_form.value_of(item, form) for item in inputs}


@bp.route("/integrations/new")
def integration_new() -> str:
    """Step 1: pick a type (every installed sink type, each with its plugin and description)."""
    return render_template("admin/integration_types.html", title="Add an integration", sink_types=sink_types())


@bp.route("/integrations/new/<type_name>", methods=["GET", "POST"])
def integration_create(type_name: str) -> Page | WerkzeugResponse:
    """Step 2: the type's form; on save the sink is stored and its secret shown once."""
    sink_type = _type_or_404(type_name)
    inputs = _inputs(sink_type)
    if request.method == "GET":
        return _render_form(sink_type, inputs, values={"events": ["*"]})
    form = request.form
    values = {"name": form.get("name", "").strip(), "events": sink_form.events_sent(form),
              "enabled": "enabled" in form}
    if form.get(tryout.BUTTON):
        return _try(sink_type, inputs, values)
    try:
        defaults = {item.name: item.default for item in inputs.all}
        # Only what differs from the defaults is stored (and audited), as a hand-written table would be.
        table = {key: value for key, value in _table_from(form, inputs.all).items()
                 if value is not None and value != defaults.get(key)}
        saved = store.create(runtime(), {"name": values["name"], "type": sink_type.name,
                                         "events": values["events"], "enabled": values["enabled"], **table},
                             current_actor())
    except sink_form.FormProblem as problem:
        return _refused(sink_type, inputs, {problem.name: [problem.message]}, values)
    except ApiError as error:
        messages = error.fields or {("name" if error.code == "sink_exists" else sink_form.GENERAL): [error.message]}
        return _refused(sink_type, inputs, messages, values)
    name = saved.config.name
    if saved.secret is None:
        flash(f"{name} added: events it subscribes to are delivered from now on.", "ok")
        return redirect(url_for("admin.integrations", _anchor=f"sink-{name}"))
    return render_template("admin/integration_secret.html", title=f"{name} added", sink=name, secret=saved.secret,
                           created=True, valid_until=None, verifier=snippets.verifiers(saved.secret))


def _refused(sink_type: SinkType, inputs: sink_form.Inputs, messages: dict[str, list[str]],
             values: dict[str, Any], editing: str | None = None, etag: str = "") -> Page:
    sink_form.keep_sent(inputs.all, request.form)
    errors = sink_form.place_errors(messages, inputs.all, extra=("name", "events", "enabled"))
    return _render_form(sink_type, inputs, editing=editing, values=values, errors=errors, etag=etag, status=422)


def _stored_or_refuse(name: str) -> Any:
    """The stored sink, or a clear page: a file sink is changed in the file."""
    try:
        return store.stored(runtime(), name)
    except ApiError as error:
        if error.code == "sink_managed_by_config":
            abort(409, description=f"{name} is defined in the configuration file ({runtime().settings.source}), "
                                   "which is read-only here: change it there and restart the gateway.")
        abort(404, description="No integration of that name exists (it may have been deleted).")


@bp.route("/integrations/<name>/edit", methods=["GET", "POST"])
def integration_edit(name: str) -> Page | WerkzeugResponse:
    """Change an integration: the same form, filled in; secret options left blank are kept."""
    current = _stored_or_refuse(name)
    sink_type = _type_or_404(current.table.get("type", ""))
    inputs = _inputs(sink_type)
    if request.method == "GET":
        sink_form.fill(inputs.all, current.table)
        values = {"name": name, "events": list(current.table.get("events") or []),
                  "enabled": current.table.get("enabled", True)}
        return _render_form(sink_type, inputs, editing=name, values=values, etag=store.etag(current))
    form = request.form
    values = {"name": name, "events": sink_form.events_sent(form), "enabled": current.table.get("enabled", True)}
    if form.get(tryout.BUTTON):
        return _try(sink_type, inputs, values, name)
    try:
        wanted = _table_from(form, inputs.all)
        # A secret option left blank keeps its value: the form never shows one.
        wanted = {k: v for k, v in wanted.items()
                  if not (v in (None, {}) and k in sink_type.secret_options)}
        wanted["events"] = values["events"]
        defaults = {item.name: item.default for item in inputs.all}
        patch = {k: v for k, v in wanted.items() if current.table.get(k, defaults.get(k)) != v}
        saved = store.update(runtime(), name, patch, current_actor(), form.get("etag") or None)
    except sink_form.FormProblem as problem:
        return _refused(sink_type, inputs, {problem.name: [problem.message]}, values, name, form.get("etag", ""))
    except ApiError as error:
        if error.code == "precondition_failed":
            error.fields = {sink_form.GENERAL: ["Someone changed this integration while you were editing it. "
                                                "Reload the page to see their change, then make yours again."]}
        return _refused(sink_type, inputs, error.fields or {sink_form.GENERAL: [error.message]},
                        values, name, form.get("etag", ""))
    flash(f"{name} saved." if saved.changed else f"{name}: nothing was changed.", "ok" if saved.changed else "info")
    return redirect(url_for("admin.integrations", _anchor=f"sink-{name}"))


def _set_enabled(name: str, enabled: bool) -> WerkzeugResponse:
    _stored_or_refuse(name)
    store.set_enabled(runtime(), name, enabled, current_actor())
    if enabled:
        flash(f"{name} enabled: events it subscribes to are delivered again from now on.", "ok")
    else:
        flash(f"{name} disabled: it gets no new deliveries. Those it already had are still sent.", "ok")
    return redirect(url_for("admin.integrations", _anchor=f"sink-{name}"))


@bp.route("/integrations/<name>/disable", methods=["POST"])
def integration_disable(name: str) -> WerkzeugResponse:
    """No new deliveries for it (those it has go on)."""
    return _set_enabled(name, False)


@bp.route("/integrations/<name>/enable", methods=["POST"])
def integration_enable(name: str) -> WerkzeugResponse:
    """Deliveries again from the next event on."""
    return _set_enabled(name, True)


@bp.route("/integrations/<name>/delete", methods=["GET", "POST"])
def integration_delete(name: str) -> str | WerkzeugResponse:
    """Ask first (saying how many deliveries are still waiting and will be cancelled), then
    delete."""
    _stored_or_refuse(name)
    if request.method == "GET":
        waiting, _ = delivery_log.count_by_status(runtime(), name)
        return render_template("admin/integration_delete.html", title=f"Delete {name}", sink=name,
                               waiting=waiting, total=sum(waiting.values()))
    cancelled = store.delete(runtime(), name, current_actor())
    note = f" {cancelled} waiting deliver{'y was' if cancelled == 1 else 'ies were'} cancelled." if cancelled else ""
    flash(f"{name} deleted.{note}", "ok")
    if cancelled:
        return redirect(url_for("admin.deliveries", sink=name, status="cancelled"))
    return redirect(url_for("admin.integrations"))


@bp.route("/integrations/<name>/rotate", methods=["GET", "POST"])
def integration_rotate(name: str) -> Page:
    """Ask how long the old secret keeps signing, then show the new one, once."""
    _stored_or_refuse(name)
    if request.method == "GET":
        return render_template("admin/integration_rotate.html", title=f"Rotate the secret of {name}", sink=name,
                               overlaps=OVERLAPS)
    choice = request.form.get("overlap", "")
    overlap = int(choice) if is_ascii_digits(choice) and int(choice) <= store.MAX_OVERLAP_S else None
    try:
        _, secret, until = store.rotate(runtime(), name, current_actor(), overlap)
    except ApiError as error:
        return render_template("admin/error.html", title="Cannot rotate", message=error.message), error.status
    return render_template("admin/integration_secret.html", title=f"New secret for {name}", sink=name,
                           secret=secret, created=False, valid_until=until,
                           verifier=snippets.verifiers(secret), now=time.time())
