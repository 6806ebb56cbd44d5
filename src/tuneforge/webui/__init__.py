"""`tuneforge webui`: train, watch, compare, evaluate, chat and export from the browser.

The form is generated from the config schema (`form.py`) and placed by one layout table
(`layout.py`); the labels live in `i18n.yaml` (English and Chinese). A training run is a detached
`tuneforge train` process started on a YAML the UI writes into the run's output_dir (`runs.py`);
the UI only reads the files the run writes. Gradio is imported by `app.py` and the tabs only, so
importing this package stays light.
"""
