"""Prompts, versions, labels and rollout, feedback, scorecards and the canary guard.

Public functions are re-exported by ``agents.services``.
"""
