"""Subcommands of the ``dyn-dnn-ros`` tool, one module each.

Every module here exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so
``dyn-dnn-ros --help`` stays fast even though most commands import torch.
"""
