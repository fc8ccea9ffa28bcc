"""The `paglets` command: root options, the command groups, and the one place where
failures become a line on stderr and an exit code (cli.md section 0).

Command groups are loaded lazily: `_GROUPS` names the module of each, and a group appears
only when its module exists, so `paglets --version` imports neither the runtime nor any
group, and `paglets host` imports only `paglets.cli.host`. A group module defines `app`
(a `typer.Typer`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from paglets.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    print_error,
    set_debug,
)
from paglets.cli.fastparams import speed_up

__all__ = ["app", "main", "run"]

# name → module that defines `app`, in the order `paglets --help` lists them (cli.md 0.1).
_GROUPS: dict[str, str] = {
    "host": "paglets.cli.host",
    "agents": "paglets.cli.agents",
    "mesh": "paglets.cli.mesh",
    "jobs": "paglets.cli.jobs",
    "sys": "paglets.cli.sys",
    "artifacts": "paglets.cli.artifacts",
    "search": "paglets.cli.search",
    "examples": "paglets.cli.examples",
    "events": "paglets.cli.events",
    "doctor": "paglets.cli.doctor",
    "demo": "paglets.cli.demo",
    "certs": "paglets.cli.certs",
}


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class LazyGroup(TyperGroup):
    """The root group: eager commands as usual, plus the groups of `_GROUPS`, each imported
    the first time it is asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(super().list_commands(ctx))
        names += [n for n, m in _GROUPS.items() if n not in names and _module_exists(m)]
        return names

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in _GROUPS:
            return command
        module_name = _GROUPS[cmd_name]
        if not _module_exists(module_name):
            return None
        module = importlib.import_module(module_name)
        sub_app = getattr(module, "app", None)
        if not isinstance(sub_app, typer.Typer):
            return None
        command = typer.main.get_command(sub_app)
        command.name = cmd_name
        speed_up(command)
        self.commands[cmd_name] = command  # cache: later look-ups are a dict hit
        return command


app = typer.Typer(
    cls=LazyGroup,
    name="paglets",
    help="paglets: mobile agents for Python. Run a host, move paglets, submit jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["--help", "-h"]},
)


def _print_version(value: bool) -> None:
    if value:
        from paglets import __version__

        print(f"paglets {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the paglets version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours or styling (also NO_COLOR).")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks on errors (also PAGLETS_DEBUG=1).")
    ] = False,
) -> None:
    """paglets: mobile agents for Python."""
    if no_color:
        from paglets.cli.output import set_color

        set_color(False)
    if debug:
        set_debug(True)


# -- running and failing ---------------------------------------------------------------


def _command_path(root_command: Any, args: Sequence[str]) -> str:
    """The command the arguments name (`paglets jobs status`), for error prefixes: follow
    the leading non-option words while they name subcommands."""
    parts = ["paglets"]
    command = root_command
    for token in args:
        if token == "--":
            break
        if token.startswith("-"):
            continue
        get = getattr(command, "get_command", None)
        try:
            sub = get(None, token) if get is not None else None
        except Exception:  # a group that fails to load: the prefix stops here
            sub = None
        if sub is None:
            break
        parts.append(token)
        command = sub
    return " ".join(parts)


def _option_name(exc: Any) -> str | None:
    """The long spelling of the option a bad-parameter error is about (`--port`)."""
    param = getattr(exc, "param", None)
    if param is None:
        hint = getattr(exc, "param_hint", None)
        return hint if isinstance(hint, str) else None
    opts = [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]
    longs = [o for o in opts if o.startswith("--")]
    if longs:
        return longs[0]
    if opts:
        return opts[0]
    return (getattr(param, "human_readable_name", None) or param.name or "").upper() or None


def _usage_line(exc: Any) -> tuple[str, str | None]:
    """A click usage error as (message, hint) in the CLI's style."""
    from typer._click import exceptions as click_exc

    if isinstance(exc, click_exc.BadParameter):
        name = _option_name(exc)
        message = exc.message
        if isinstance(exc, click_exc.MissingParameter):
            message = exc.format_message()
            return message, None
        return (f"{name}: {message}" if name else message), None
    message = exc.format_message()
    return message, None


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (default: `sys.argv[1:]`) and return the exit code."""
    from typer._click import exceptions as click_exc

    args = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args[: _first_command_index(args)]:
        set_debug(True)  # before parsing, so parse-time failures get their traceback too
    command = typer.main.get_command(app)
    speed_up(command)
    try:
        result = command.main(args=args, prog_name="paglets", standalone_mode=False)
    except CliError as exc:
        print_error(_command_path(command, args), exc.message, exc.hint, exc=exc)
        return exc.code
    except click_exc.NoArgsIsHelpError as exc:
        exc.show()
        return EXIT_USAGE
    except click_exc.UsageError as exc:
        ctx = getattr(exc, "ctx", None)
        prefix = ctx.command_path if ctx is not None else _command_path(command, args)
        message, hint = _usage_line(exc)
        if hint is None and not isinstance(exc, click_exc.BadParameter):
            hint = f'see "{prefix} --help"'
        print_error(prefix, message, hint)
        return EXIT_USAGE
    except click_exc.ClickException as exc:
        print_error(_command_path(command, args), exc.format_message())
        return exc.exit_code
    except typer.Abort:
        print_error(_command_path(command, args), "aborted")
        return EXIT_FAILED
    except KeyboardInterrupt:
        print_error(_command_path(command, args), "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILED
    except Exception as exc:  # the last line of defence: never a bare traceback
        from paglets.core.errors import PagletError

        if isinstance(exc, PagletError):
            print_error(_command_path(command, args), f"{type(exc).__name__}: {exc}", exc=exc)
            return EXIT_FAILED
        print_error(
            _command_path(command, args),
            f"internal error: {type(exc).__name__}: {exc}",
            "run again with --debug for the traceback, and report it",
            exc=exc,
        )
        return EXIT_FAILED
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    return EXIT_OK


def _first_command_index(args: Sequence[str]) -> int:
    for index, token in enumerate(args):
        if not token.startswith("-"):
            return index
    return len(args)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (`paglets = "paglets.cli.main:main"`)."""
    sys.exit(run(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
