"""engine=avalanche: the lab's experiments through Avalanche's strategies (avalanche-lib).

Import lab.avalanche.engine only when that engine runs: importing Avalanche takes seconds.
"""
