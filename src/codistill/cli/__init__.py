"""The ``codistill`` command line: one module per subcommand, registered by ``cli.main``.

Every start builds every subcommand's parser, so whatever a subcommand module imports at its top
is paid by ``codistill --help`` and by every other subcommand. A module therefore imports at its
top only what ``register`` and its error handling need (and what the start has loaded anyway);
the code that runs the command is imported inside its run function, marked ``# lazy: <cost>``:
torch/transformers, numpy or matplotlib where it pulls them, ``run-time only`` where it is a few
ms of our own code that only this command uses.
"""
