"""The world and one run: scenario, channels, network, the Mesa model, metrics, recording.

Data flows one way: scenario → model (+ agents) → recorded tables → analysis. Nothing here imports
:mod:`analysis`.
"""
