"""``modelroll-operator``: load configuration, set up logging, run kopf."""

from __future__ import annotations

import sys


def main() -> None:
    from .settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"modelroll-operator: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None

    import kopf

    from . import handlers
    from .logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    handlers.configure(settings)
    kopf.run(
        clusterwide=settings.clusterwide,
        namespaces=list(settings.namespaces),
        standalone=True,
    )


if __name__ == "__main__":
    main()
