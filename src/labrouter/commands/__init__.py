"""The command groups of the `labrouter` CLI, one module each.

Each module defines ``register(sub)``, which adds its subcommands to the argparse
subparsers and sets ``handler`` on each: ``handler(args, ctx) -> int``. Modules import
what their commands need inside the handler, so `labrouter --help` stays fast and a
headless server never imports a desktop package.
"""

COMMAND_MODULES = (
    "config",
    "routing",
    "stats",
    "cluster",
    "daemon",
    "autostart",
    "desktop",
)
