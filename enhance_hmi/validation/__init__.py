"""Validation of enhanced HMI images: metrics, baselines, Hinode comparison, reports.

Must not import drms.

References
----------
.. [1] Díaz Baso, C. J. & Asensio Ramos, A. (2018), A&A 614, A5, Sect. 4.
"""
