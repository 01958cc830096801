"""The integration form's "Test filter", "Preview" and "Load sample" buttons: try a content
filter or a payload template against a sample event before saving.

Both ways in answer with the same :class:`Trial`: without the script, the button submits
the whole form to its own page, which shows it again as the admin left it with the answer
under the button (:func:`gateway.web.admin.manage`); with it, the script posts the same
fields to :func:`integration_try` and puts the answer in place. The verdicts are the API's
own functions (:func:`gateway.web.api.filters.filter_matches`,
:func:`gateway.web.api.templates.render_preview`), and the sample event is
:func:`gateway.publish.samples.sample_event`'s, as test events use.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from flask import jsonify, render_template, request
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.errors import ApiError
from gateway.events import UnknownEvent
from gateway.logs import escape_unprintable
from gateway.publish import samples
from gateway.web.admin import sink_form
from gateway.web.admin.blueprint import bp, runtime
from gateway.web.api.filters import filter_matches
from gateway.web.api.templates import TemplateFailed, preview_event, render_preview

BUTTON = "try"
"""The form field the buttons set: ``filter``, ``sample`` or ``preview:<template option>``."""
SAMPLE_FIELD = "sample_event"
SAMPLE_TYPE = "sample_type"
DEFAULT_SAMPLE = "ticket.created"
_NOT_ASCII = re.compile(r"[^\x20-\x7e\n]")


@dataclasses.dataclass
class Trial:
    """The answer to one button, as the form shows it under that button."""

    target: str
    """Where it is shown: ``filter``, ``sample``, or the template option's name."""
    outcome: str
    """``match``, ``no_match``, ``rendered``, ``sample``, ``note`` or ``error``."""
    message: str
    details: list[str] = dataclasses.field(default_factory=list)
    """An invalid filter's messages, each after its path inside the filter."""
    body: str | None = None
    content_type: str | None = None
    sample: str | None = None
    """A sample event loaded into the sample box (``Load sample``)."""

    def to_json(self) -> dict[str, Any]:
        """What the script gets: the fields, and the answer drawn as the page draws it."""
        return {**dataclasses.asdict(self), "html": render_template("admin/_tryout.html", trial=self)}


@dataclasses.dataclass
class Sample:
    """The sample-event box: the event types to pick from, the one picked, the JSON shown."""

    types: list[str]
    chosen: str
    text: str


def sample_text(rt: Any, event_name: str, sink_name: str | None = None) -> str:
    """The sample envelope of ``event_name`` as indented JSON (``sink_name``'s own sample when
    it has one). Every character the console would escape (controls, bidi overrides) is
    written as a JSON ``\\u`` escape, so the text is safe to show and still the same JSON.
    Raises gateway.events.UnknownEvent."""
    sink = sink_name if sink_name in rt.sinks else None
    text = json.dumps(samples.sample_event(rt, event_name, sink).envelope(), indent=2, ensure_ascii=False)

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return f"\\u{ord(char):04x}" if escape_unprintable(char, multiline=True) != char else char

    return _NOT_ASCII.sub(escape, text)


def sample_shown(rt: Any, form: Mapping[str, str] | None, editing: str | None, events: Iterable[str] | None,
                 trial: Trial | None = None) -> Sample:
    """The sample box of the form: what the admin had in it (after a button or a refusal),
    else the sample of the first event the integration subscribes to."""
    types = [event_type.name for event_type in rt.plugins.catalog]
    if trial is not None and trial.sample is not None and form is not None:
        return Sample(types, form.get(SAMPLE_TYPE, ""), trial.sample)
    if form is not None and SAMPLE_FIELD in form:
        # Browsers send a text area's line breaks as CRLF; shown again through `visible`, a
        # CR would become a literal "\r" and break the JSON on the next press.
        return Sample(types, form.get(SAMPLE_TYPE, ""), form[SAMPLE_FIELD].replace("\r\n", "\n"))
    chosen = next((name for name in events or () if name in types), DEFAULT_SAMPLE)
    return Sample(types, chosen, sample_text(rt, chosen, editing))


def run(rt: Any, form: Mapping[str, str], templates: Iterable[str], editing: str | None = None) -> Trial:
    """Answer the button the form was sent with (``templates``: the type's template options,
    the only ones a preview is for). Every problem is a :class:`Trial` with a message, never
    an exception."""
    choice = form.get(BUTTON, "")
    if choice == "sample":
        return _load_sample(rt, form.get(SAMPLE_TYPE, ""), editing)
    if choice == "filter":
        return _test_filter(form)
    name = choice.removeprefix("preview:")
    if choice.startswith("preview:") and name in templates:
        return _preview(form, name, editing)
    return Trial("filter", "error", "This button is not one of this form's; reload the page.")


def _load_sample(rt: Any, event_name: str, editing: str | None) -> Trial:
    try:
        text = sample_text(rt, event_name, editing)
    except UnknownEvent:
        return Trial("sample", "error", "Choose an event from the list.")
    return Trial("sample", "sample", f"Sample {event_name} event loaded.", sample=text)


def _sample_envelope(form: Mapping[str, str], target: str) -> dict[str, Any] | Trial:
    """The sample box's JSON object, or the Trial that says what is wrong with it."""
    text = form.get(SAMPLE_FIELD, "")
    if not text.strip():
        return Trial(target, "error", "The sample event is empty: load a sample, or write an event as JSON.")
    doc, problem = _parse(text)
    if problem:
        return Trial(target, "error", f"The sample event is not valid JSON: {problem}")
    if not isinstance(doc, dict):
        return Trial(target, "error", 'The sample event must be a JSON object: {"event", "timestamp", "data"}.')
    return doc


def _parse(text: str) -> tuple[Any, str]:
    """JSON text -> (value, "") or (None, what is wrong and where)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant), ""
    except json.JSONDecodeError as exc:
        return None, f"line {exc.lineno}, column {exc.colno}: {exc.msg}."
    except (ValueError, RecursionError):
        return None, "NaN and Infinity are not JSON numbers, and JSON may not nest this deep."


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _test_filter(form: Mapping[str, str]) -> Trial:
    event = _sample_envelope(form, "filter")
    if isinstance(event, Trial):
        return event
    text = form.get("filter", "").strip()
    if not text:
        return Trial("filter", "note", "No filter: every event it subscribes to is delivered.")
    spec, problem = _parse(text)
    if problem:
        return Trial("filter", "error", f"The filter is not valid JSON: {problem}")
    try:
        matched = filter_matches(spec, event)
    except ApiError as error:
        details = [f"{path}: {message}" for path, messages in (error.fields or {}).items() for message in messages]
        return Trial("filter", "error", error.message, details)
    if matched:
        return Trial("filter", "match", "Matches: this event would be delivered.")
    return Trial("filter", "no_match", "Does not match: this event would not be delivered.")


def _preview(form: Mapping[str, str], name: str, editing: str | None) -> Trial:
    source = form.get(name, "").replace("\r\n", "\n")  # as saving it would (sink_form.value_of)
    if not source.strip():
        return Trial(name, "note", "No template: the event's envelope is sent as it is.")
    envelope = _sample_envelope(form, name)
    if isinstance(envelope, Trial):
        return envelope
    try:
        rendered = render_preview(source, preview_event(envelope), form.get("content_type") or None, editing)
    except TemplateFailed as failed:
        return Trial(name, "error", failed.error.describe())
    except ApiError as error:  # the sample's fields are not an event's
        details = [f"sample {path}: {message}" for path, messages in (error.fields or {}).items()
                   for message in messages]
        return Trial(name, "error", "The sample event is not an event.", details)
    return Trial(name, "rendered", "Rendered: the body a delivery of this event would send.", body=rendered["body"],
                 content_type=rendered["content_type"])


@bp.route("/integrations/try/<type_name>.json", methods=["POST"])
def integration_try(type_name: str) -> WerkzeugResponse:
    """The form's buttons, for the script: the same fields the form would submit (CSRF token
    included) -> the :class:`Trial` as JSON, with its HTML. ``?sink=`` names the integration
    being edited (its own sample event)."""
    sink_type = runtime().plugins.sink_types.get(type_name)
    if sink_type is None:
        raise ApiError(404, "not_found", "No sink type of that name is installed.")
    templates = [item.name for item in sink_form.option_inputs(sink_type) if item.kind == "template"]
    return jsonify(run(runtime(), request.form, templates, request.args.get("sink") or None).to_json())
