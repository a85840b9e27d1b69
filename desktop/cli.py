"""The `easel` console script: no arguments opens the app; a subcommand runs headless."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from engine.cli import SUBCOMMANDS

    if argv and argv[0] in SUBCOMMANDS or argv[:1] in (["-h"], ["--help"]):
        from desktop.emoji_render import prepare_for_cli
        from engine.cli import main as cli_main
        from engine.errors import EaselError

        try:
            prepare_for_cli(argv)  # the built-in emoji set is rendered with Qt, before the engine
        except EaselError as exc:
            print(f"easel: {exc}", file=sys.stderr)
            return exc.exit_code

        return cli_main(argv)
    from desktop.app import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
