"""Integrations of the trial client with training frameworks (each behind an optional extra).

- :mod:`lionsweep.integrations.hf`: a Hugging Face ``Trainer`` callback (extra ``hf``).
"""
