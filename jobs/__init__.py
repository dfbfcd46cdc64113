# jobs/ holds entrypoints for `ray job submit`, not a library (like torchtune's recipes/):
# run them as scripts; import reusable code from the `sentiment` package instead.
raise ModuleNotFoundError(
    "jobs/ is not a package: run `python jobs/train.py ...` or `python jobs/score.py ...` "
    "(usually via `ray job submit`), and import from `sentiment` for reusable code"
)
