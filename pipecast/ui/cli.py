"""The ``pipecast ui`` command; the server is imported when it runs, not when ``pipecast --help`` loads."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Only this machine by default: the page has no login.")
@click.option("--port", type=int, default=0, show_default=True, help="Port to listen on (0: a free one).")
@click.option("--no-browser", is_flag=True, help="Do not open the page in a browser.")
@click.option("--config", "-c", "config", multiple=True, metavar="KEY=VALUE",
              help="Connection setting for refreshing runs not made on a stack, as for `pipecast runs wait`.")
@click.option("--refresh-every", type=float, default=10.0, show_default=True,
              help="Seconds between two status requests to an engine for one unfinished run.")
def ui(host: str, port: int, no_browser: bool, config: Sequence[str], refresh_every: float) -> None:
    """Serve a local page listing every recorded run: status, parameters, DAG, artifacts, logs (docs/ui.md)."""
    from pipecast.cli import _setting_values
    from pipecast.errors import PipecastError
    from pipecast.runs.store import RunStore
    from pipecast.ui.refresh import Refresher
    from pipecast.ui.server import UiApp, make_server

    try:
        settings = _setting_values(config)
    except PipecastError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    store = RunStore.default()
    app = UiApp(store, settings, refresher=Refresher(store, settings, interval=refresh_every))
    try:
        server = make_server(app, host, port)
    except OSError as err:
        click.echo(f"error: cannot listen on {host}:{port}: {err.strerror or err}", err=True)
        sys.exit(2)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    url = f"http://{bound_host}:{bound_port}/"
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach it can read every run's record", err=True)
    click.echo(f"pipecast ui: {url} (run store {store.path}); Ctrl-C stops it", err=True)
    click.echo(url)
    sys.stdout.flush()
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
