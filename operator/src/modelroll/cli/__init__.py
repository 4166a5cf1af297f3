"""The ``kubectl modelroll`` plugin."""
