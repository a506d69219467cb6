"""The lab's Hydra sweeper: Optuna's TPE search over a multirun (`lab-run -m +hpo=NAME`).

Hydra finds it as a plugin: `hydra_plugins` is a namespace package (no __init__.py of its
own), and every module below it is imported when Hydra scans for plugins, which registers
`hydra/sweeper=lab_hpo` in the ConfigStore (config.py). The search itself: sweeper.py.
"""
