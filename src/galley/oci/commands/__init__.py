"""galley-runc's commands, one module per group; `galley.oci.cli` imports the one it runs.

    lifecycle  create start run delete kill      (launch, hooks, teardown)
    query      state list ps events              (read-only)
    control    pause resume update exec          (act on a live container)
    bundle     spec features                     (no container involved)

Each module has `add_arguments(command, parser)` and `run(command, ctx, args) -> exit status`.
"""
