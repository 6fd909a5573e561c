"""``ConfigPanel``: an ipywidgets form generated from ``ExperimentConfig``'s JSON schema.

One accordion page per config section; each field gets a widget chosen by
:mod:`fedjax_grid.widgets.fields` and, to its right, an HTML label where the
one-line ``UserError`` of validating the config (or of reading the field's text)
is shown -- beside the field named by the error's ``path``. A choice backed by a
registry (model, data source, distribution, forming strategy, aggregator, server
optimizer, attack) is a dropdown of ``Registry.names()`` with the chosen
component's parameters below it, built from ``Registry.schema(name)`` and rebuilt
when the dropdown changes (a new component starts from its own defaults; a model's
``kwargs`` / a source's ``options`` keep only the parameters set).
``panel.config`` is the same validated ``ExperimentConfig`` the CLI builds, so
``panel.save('x.json')`` followed by ``fedjax-grid run --config x.json --out DIR
[--resume]`` continues a run started from the panel, and ``panel.load('x.json')`` /
``set_config`` go the other way.
"""
from __future__ import annotations

import html
import pathlib
import re
from typing import Optional

import ipywidgets as W

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import ExperimentConfig, get_preset, list_presets
from fedjax_grid.widgets import fields as F

ERROR_STYLE = "color:#b00020;font-size:90%"
OK_STYLE = "color:#1b7f3b;font-size:90%"
#: Labels are whole words (``fields.label``): the longest, 'bn calibration examples', fits.
_DESC_STYLE = {"description_width": "190px"}
_LAYOUT = {"width": "420px"}


def _message_html(text: str, style: str = ERROR_STYLE) -> str:
    return f'<span style="{style}">{html.escape(text)}</span>' if text else ""


class ConfigPanel:
    """Edit an ``ExperimentConfig`` with widgets; ``display(panel)`` shows it.

    config: the initial config (default: the ``quickstart`` preset).
    Attributes: ``widgets`` (key -> input widget, component parameters included as
    ``partition.distribution.share`` / ``model.kwargs.width``), ``messages`` (key ->
    HTML label next to it), ``rows`` (key -> the row, hidden when irrelevant),
    ``specs`` (key -> FieldSpec), ``status`` (overall message), ``path`` (file box).
    """

    def __init__(self, config: Optional[ExperimentConfig] = None, *,
                 path: str = "runs/experiment.json"):
        self.specs: dict[str, F.FieldSpec] = {}
        #: called (no arguments) after every edit is validated, e.g. by a RunPanel
        self.change_callbacks: list = []
        self.widgets: dict[str, W.Widget] = {}
        self.messages: dict[str, W.HTML] = {}
        self.rows: dict[str, W.Box] = {}
        self.param_boxes: dict[str, W.VBox] = {}   # component key -> its parameters' rows
        self._given: dict[str, set] = {k: set() for k in F.PARTIAL}
        self._loading = False
        self._config: Optional[ExperimentConfig] = None
        self._error: Optional[str] = None
        self._error_key: Optional[str] = None
        pages = {s: [] for s in F.SECTIONS}
        for spec in F.field_specs():
            pages[spec.section].append(self._add_row(spec))
            if spec.kind == "component":
                box = W.VBox(layout={"margin": "0 0 0 24px"})
                self.param_boxes[spec.key] = box
                pages[spec.section].append(box)
                self._build_params(spec.key, spec.choices[0], {})
        self.status = W.HTML()
        self.preset = W.Dropdown(options=["(keep)"] + list(list_presets()), value="(keep)",
                                 description="preset", style=_DESC_STYLE, layout=_LAYOUT)
        self.preset.observe(self._on_preset, names="value")
        self.path = W.Text(value=str(path), description="file", style=_DESC_STYLE,
                           layout=_LAYOUT)
        self.save_button = W.Button(description="Save JSON", icon="save")
        self.load_button = W.Button(description="Load", icon="folder-open")
        self.save_button.on_click(lambda _: self._guard(lambda: self.save()))
        self.load_button.on_click(lambda _: self._guard(lambda: self.load()))
        self.accordion = W.Accordion(children=[W.VBox(pages[s]) for s in F.SECTIONS],
                                     titles=tuple(F.SECTIONS))
        self.accordion.selected_index = 0
        self.box = W.VBox([self.preset, self.accordion,
                           W.HBox([self.path, self.save_button, self.load_button]),
                           self.status])
        self.set_config(config if config is not None else get_preset("quickstart"))

    # -- widgets ----------------------------------------------------------------
    def _add_row(self, spec: F.FieldSpec) -> W.HBox:
        w = self._make_widget(spec)
        msg = W.HTML(layout={"width": "auto"})
        self.specs[spec.key], self.widgets[spec.key], self.messages[spec.key] = spec, w, msg
        self.rows[spec.key] = W.HBox([w, msg])
        if spec.kind == "component":
            w.observe(lambda ch, key=spec.key: self._on_component(key, ch), names="value")
        else:
            w.observe(lambda ch, key=spec.key: self._on_change(key), names="value")
        return self.rows[spec.key]

    @staticmethod
    def _make_widget(spec: F.FieldSpec) -> W.Widget:
        common = dict(description=F.label(spec), style=_DESC_STYLE, layout=_LAYOUT,
                      tooltip=f"{spec.key}: {spec.help}" if spec.help else spec.key)
        if spec.kind in ("component", "choice"):
            options = [("null" if c is None else str(c), c) for c in spec.choices]
            return W.Dropdown(options=options, **common)
        if spec.kind == "bool":
            return W.Checkbox(indent=False, description=F.label(spec),
                              tooltip=f"{spec.key}: {spec.help}" if spec.help else spec.key)
        if spec.kind == "int":
            return W.IntText(**common)
        if spec.kind in ("float", "fraction"):
            # a box, not a slider: a slider clamps an out-of-range value without a word;
            # here the config's validation refuses it, naming the range beside the field
            return W.FloatText(**common)
        placeholder = "null" if spec.optional else ""
        if spec.kind == "mapping":
            placeholder = "{width: 0.25, norm: batch}"
        elif spec.kind == "list":
            placeholder = "[0, 90]"
        elif spec.param and spec.default is not None:
            placeholder = str(spec.default)
        return W.Text(placeholder=placeholder, continuous_update=False, **common)

    def _build_params(self, key: str, name, values: dict) -> None:
        """(Re)build the parameter rows of the component ``name`` chosen at ``key``."""
        prefix = F.params_key(key) + "."
        for old in [k for k in self.specs if k.startswith(prefix) and self.specs[k].param]:
            for d in (self.specs, self.widgets, self.messages, self.rows):
                d.pop(old, None)
        rows = []
        if name in F.REGISTRIES[key]:
            loading, self._loading = self._loading, True
            try:
                for spec in F.param_specs(key, name):
                    rows.append(self._add_row(spec))
                    self._set_widget(spec, values.get(spec.name, spec.default))
            finally:
                self._loading = loading
        self.param_boxes[key].children = rows

    def _set_widget(self, spec: F.FieldSpec, value) -> None:
        w = self.widgets[spec.key]
        if spec.kind in F.TEXT_KINDS:
            w.value = F.format_value(spec, value)
        elif spec.kind in ("component", "choice") and value not in spec.choices:
            w.options = list(w.options) + [(str(value), value)]  # shown, then reported invalid
            w.value = value
        else:
            w.value = value

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)

    # -- values -------------------------------------------------------------------
    def _value(self, key: str):
        spec, value = self.specs[key], self.widgets[key].value
        return F.parse_text(spec, value) if spec.kind in F.TEXT_KINDS else value

    def values(self) -> dict:
        """The nested dict the widgets describe (text fields parsed; may be invalid)."""
        d: dict = {}
        for key, spec in self.specs.items():
            if spec.param:
                continue
            value = self._value(key)
            if spec.kind == "component":
                params = self._params(key)
                if key in F.PARTIAL:
                    d.setdefault(spec.section, {})[F.params_key(key).split(".")[1]] = params
                else:
                    value = {"name": value, **params}
            if spec.section == "experiment":
                d[key] = value
            else:
                d.setdefault(spec.section, {})[spec.name] = value
        return d

    def _params(self, key: str) -> dict:
        prefix = F.params_key(key)
        out = {}
        for k, spec in self.specs.items():
            if spec.param and k.startswith(prefix + "."):
                if key in F.PARTIAL and spec.name not in self._given[key]:
                    continue
                out[spec.name] = self._value(k)
        return out

    def set_config(self, cfg: ExperimentConfig) -> None:
        """Show ``cfg`` in the widgets (every field and parameter), then validate."""
        if not isinstance(cfg, ExperimentConfig):
            raise UserError(f"set_config needs an ExperimentConfig, got {type(cfg).__name__}")
        d = cfg.to_dict()
        self._loading = True
        try:
            for key, spec in list(self.specs.items()):
                if spec.param:
                    continue
                value = d[key] if spec.section == "experiment" else d[spec.section][spec.name]
                if spec.kind == "component":
                    params = d[spec.section][F.params_key(key).split(".")[1]] \
                        if key in F.PARTIAL else {k: v for k, v in value.items() if k != "name"}
                    value = value if key in F.PARTIAL else value["name"]
                    if key in F.PARTIAL:
                        self._given[key] = set(params)
                    self._set_widget(spec, value)
                    self._build_params(key, value, params)
                else:
                    self._set_widget(spec, value)
        finally:
            self._loading = False
        self.update()

    def update(self) -> Optional[str]:
        """Re-read the widgets, validate, show/hide fields and messages; return the error."""
        for msg in self.messages.values():
            msg.value = ""
        self._config, self._error, self._error_key = None, None, None
        try:
            self._config = ExperimentConfig.from_dict(self.values()).validate()
        except UserError as e:
            self._show_error(e)
        self._apply_visibility()
        if self._error is None:
            self.status.value = _message_html("configuration is valid", OK_STYLE)
        for fn in list(self.change_callbacks):
            fn()
        return self._error

    def _show_error(self, e: UserError) -> None:
        self._error = str(e)
        path = e.path
        if path is None:   # e.g. a loaded file's unknown key: the first dotted key it names
            found = re.search(r"'([a-z_]+(?:\.[A-Za-z0-9_]+)+)'", self._error)
            path = found.group(1) if found else None
        self._error_key = F.field_for(path, self.specs)
        if self._error_key is not None:
            self.messages[self._error_key].value = _message_html(self._error)
            self._open_section(self.specs[self._error_key].section)
        self.status.value = _message_html(self._error)

    def _apply_visibility(self) -> None:
        for key, (ctrl, pred) in F.VISIBLE_WHEN.items():
            try:
                shown = bool(pred(self.widgets[ctrl].value))
            except Exception:  # noqa: BLE001 - an unreadable controller shows the field
                shown = True
            if key == self._error_key:
                shown = True  # never hide the culprit
            self.rows[key].layout.display = None if shown else "none"
            if key in self.param_boxes:
                self.param_boxes[key].layout.display = None if shown else "none"
        if self._error_key is not None:
            self.rows[self._error_key].layout.display = None
            for key, box in self.param_boxes.items():
                if self._error_key.startswith(F.params_key(key) + "."):
                    box.layout.display = None

    def _open_section(self, section: str) -> None:
        self.accordion.selected_index = F.SECTIONS.index(section)

    def _on_change(self, key: str) -> None:
        if self._loading:
            return
        spec = self.specs.get(key)
        if spec is not None and spec.param:
            for choice in F.PARTIAL:
                if key.startswith(F.params_key(choice) + "."):
                    self._given[choice].add(spec.name)
        self.update()

    def _on_component(self, key: str, change) -> None:
        if self._loading:
            return
        if key in F.PARTIAL:  # keep the parameters set that the new component also has
            kept = {k: v for k, v in self._params(key).items()}
            self._build_params(key, change["new"], kept)
            names = {s.name for s in self.specs.values()
                     if s.param and s.key.startswith(F.params_key(key) + ".")}
            self._given[key] &= names
        else:                 # a new component starts from its own defaults
            self._build_params(key, change["new"], {})
        self.update()

    def _on_preset(self, change) -> None:
        if change["new"] != "(keep)":
            self.set_config(get_preset(change["new"]))

    # -- results ------------------------------------------------------------------------
    @property
    def error(self) -> Optional[str]:
        """The current validation message (None when the config is valid)."""
        return self._error

    @property
    def error_field(self) -> Optional[str]:
        """Dotted key of the field the message is shown next to (None: only in status)."""
        return self._error_key

    @property
    def valid(self) -> bool:
        return self._error is None

    @property
    def config(self) -> ExperimentConfig:
        """The validated ``ExperimentConfig``; raises the shown ``UserError`` if invalid."""
        self.update()
        if self._error is not None:
            raise UserError(self._error)
        return self._config

    # -- files ----------------------------------------------------------------------------
    def save(self, path=None) -> pathlib.Path:
        """Write the config as JSON (or YAML by suffix) for ``fedjax-grid run --config``."""
        path = pathlib.Path(path or self.path.value)
        out = self.config.save(path)
        self.status.value = _message_html(f"saved {out}", OK_STYLE)
        return out

    def load(self, path=None) -> ExperimentConfig:
        """Read a JSON/YAML config (e.g. ``runs/NAME/config.json``) into the widgets."""
        path = pathlib.Path(path or self.path.value)
        cfg = ExperimentConfig.load(path)
        self.set_config(cfg)
        if self._error is None:
            self.status.value = _message_html(f"loaded {path}", OK_STYLE)
        return cfg

    def _guard(self, action) -> None:
        try:
            action()
        except UserError as e:
            for msg in self.messages.values():
                msg.value = ""
            self._show_error(e)
