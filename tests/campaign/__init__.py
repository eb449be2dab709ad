"""The randomized end-to-end campaign (DESIGN.md: Tests; docs/testing.md).

A seed gives a schedule of steps (``schedule.py``): workload bursts, idle gaps, cron runs,
continuous ``sync`` ended by kill -9 or SIGTERM, ``capture`` and ``apply`` as separate commands,
DDL, server restarts. ``runner.py`` runs it against real throwaway servers with the redoline CLI
in subprocesses; ``oracle.py`` compares both sides through the drivers, sharing no code with
``verify``, and ``redoline verify`` must then agree with it.

``python -m tests.campaign --seeds N --minutes M`` runs a campaign; ``--replay SEED --pair P
--profile X`` repeats one schedule exactly. ``test_campaign.py`` runs CI's fixed seeds.
"""
