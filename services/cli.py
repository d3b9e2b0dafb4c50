"""`fulfillment`: run the service, play the demo, and operate it."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.logs import configure
from services.settings import Settings

app = typer.Typer(
    help="Event-sourced fulfillment: allocation and backorders per SKU, over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()


def _settings() -> Settings:
    try:
        settings = Settings()
    except Exception as error:  # pydantic's message names the bad variable
        console.print(f"[red]configuration error:[/red] {error}")
        raise typer.Exit(2) from None
    configure(settings.log_level, settings.log_format)
    return settings


@app.command()
def run(
    stage: Annotated[
        list[str] | None,
        typer.Option(help="Run only this stage (repeatable): intake, allocation, relay."),
    ] = None,
) -> None:
    """Run the service: every stage in one process, or the stages named."""
    from services.kafka import ConfigurationError
    from services.runner import STAGES, serve

    settings = _settings()
    stages = stage or list(STAGES)
    unknown = set(stages) - set(STAGES)
    if unknown:
        console.print(f"[red]unknown stage(s) {sorted(unknown)}[/red]; choose from {STAGES}")
        raise typer.Exit(2)
    try:
        asyncio.run(serve(settings, stages))
    except ConfigurationError as error:
        console.print(f"[red]cannot start:[/red] {error}")
        raise typer.Exit(1) from None


@app.command()
def demo(
    run_id: Annotated[str | None, typer.Option(help="Suffix for the demo's ids.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Publish the demo scenario to a running service and show its decisions as they arrive."""
    from services.demo import Observer, play

    settings = _settings()
    table = Table(title="allocation-decisions", show_lines=False)
    for column in ("decision", "order", "line", "qty", "detail"):
        table.add_column(column)

    def on_step(step: object) -> None:
        if not as_json:
            console.print(f"[bold cyan]→[/bold cyan] {getattr(step, 'story', '')}")

    def on_decision(body: dict[str, object]) -> None:
        detail = ""
        if "queue_position" in body:
            detail = f"queue position {body['queue_position']}"
        elif "remaining_backordered" in body:
            detail = f"{body['remaining_backordered']} still owed"
        if not as_json:
            console.print(
                f"   [green]{body['type']}[/green] {body['order_id']} line {body['line_id']}: "
                f"{body['quantity']} {detail}"
            )
        table.add_row(
            str(body["type"]),
            str(body["order_id"]),
            str(body["line_id"]),
            str(body["quantity"]),
            detail,
        )

    def on_dead_letter(body: dict[str, object]) -> None:
        if not as_json:
            console.print(f"   [red]dead-lettered[/red]: {body['error']}")

    try:
        plan, decisions, dead_letters = asyncio.run(
            play(settings, run_id, observer=Observer(on_step, on_decision, on_dead_letter))
        )
    except TimeoutError:
        console.print(
            "[red]no answer in time[/red]: is `fulfillment run` running against "
            f"{settings.kafka_bootstrap_servers}?"
        )
        raise typer.Exit(1) from None
    if as_json:
        json.dump(
            {
                "run_id": plan.run_id,
                "sku": plan.sku,
                "decisions": decisions,
                "dead_letters": dead_letters,
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
